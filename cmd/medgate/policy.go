package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/cases"
	"medgate/gateway"
	"medgate/plugins/modbuild"
)

func init() {
	register(command{name: "policy", summary: "for regions: build, sign, check, test, upload, list, rollback, shadow policy versions", run: policyCmd})
}

const policyUsage = `medgate policy: manage a region's policy modules

  medgate policy build    --region R --version V [--pkg DIR] [-o FILE]   build a module from the Go SDK (GOOS=wasip1)
  medgate policy check    --module FILE --cases FILE [--region R --version V]
                                                                    run the gateway's own check locally
  medgate policy test     --module FILE --cases FILE                 run the example cases, one line each
  medgate policy sign     --region R --version V --effective DATE --module FILE --cases FILE
                          (--key FILE | --demo-key) [-o FILE]        write a signed upload
  medgate policy upload   --gateway URL --token T --region R --file UPLOAD
  medgate policy list     --gateway URL --token T --region R
  medgate policy rollback --gateway URL --token T --region R --version V
  medgate policy shadow   --gateway URL --token T --region R --version V --from DATE --to DATE [--top N]

A key file holds the region's ed25519 seed in hex (64 digits). --demo-key uses
the reference world's demo key of the region: sha256("demo-region-key-<region>").
The token may also come from $MEDGATE_TOKEN, the gateway from $MEDGATE_GATEWAY. --module, --cases and --file "-"
read standard input; -o - writes standard output. Exit codes: 0 ok, 1 failed
(a check, a case, an HTTP error), 2 usage or an unreadable file.
`

func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, policyUsage)
		return exitOK
	}
	sub, args := args[0], args[1:]
	fl := flag.NewFlagSet("policy "+sub, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	region := fl.String("region", "", "region code")
	version := fl.String("version", "", "version name")
	module := fl.String("module", "", "module file (.wasm)")
	casesFile := fl.String("cases", "", "example cases (JSON)")
	effective := fl.String("effective", "", "effective date YYYY-MM-DD")
	key := fl.String("key", "", "file with the region's ed25519 seed in hex")
	demoKey := fl.Bool("demo-key", false, "sign with the reference world's demo key of --region")
	out := fl.String("o", "", "output file (default: stdout, or build/policies/R/V.wasm for build)")
	pkg := fl.String("pkg", "", "Go package of the module (default ./plugins/regions/R/V)")
	gw := fl.String("gateway", or(os.Getenv("MEDGATE_GATEWAY"), "http://127.0.0.1:8080"), "gateway base URL")
	token := fl.String("token", os.Getenv("MEDGATE_TOKEN"), "region bearer token")
	file := fl.String("file", "", "signed upload (from policy sign)")
	from := fl.String("from", "", "shadow: first settlement date")
	to := fl.String("to", "", "shadow: last settlement date")
	top := fl.Int("top", 10, "shadow: how many of the largest changes to list")
	if err := fl.Parse(args); err != nil {
		return exitUsage
	}
	// Every value is a flag's, and flag stops at the first argument that is
	// not one: an argument would otherwise be dropped with every flag after it.
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "medgate policy %s: unexpected argument %q (every value is given by a flag; flags after it were not read)\n", sub, fl.Arg(0))
		return exitUsage
	}
	base, err := gatewayBase(*gw)
	if err != nil && (sub == "upload" || sub == "list" || sub == "rollback" || sub == "shadow") {
		name := "--gateway"
		if gatewayFromEnv := os.Getenv("MEDGATE_GATEWAY") != ""; gatewayFromEnv && !flagSet(fl, "gateway") {
			name = "MEDGATE_GATEWAY"
		}
		fmt.Fprintf(stderr, "medgate policy %s: %s: %v\n", sub, name, err)
		return exitUsage
	}
	need := func(names ...string) bool {
		vals := map[string]string{"region": *region, "version": *version, "module": *module, "cases": *casesFile,
			"effective": *effective, "token": *token, "file": *file, "from": *from, "to": *to}
		ok := true
		for _, n := range names {
			if vals[n] == "" {
				fmt.Fprintf(stderr, "medgate policy %s: --%s is required\n", sub, n)
				ok = false
			}
		}
		return ok
	}
	switch sub {
	case "build":
		if !need("region", "version") {
			return exitUsage
		}
		if *pkg == "" {
			*pkg = "./plugins/regions/" + *region + "/" + *version
		}
		if *out == "" {
			*out = "build/policies/" + *region + "/" + *version + ".wasm"
		}
		cmd := modbuild.Command(".", *pkg, *out)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(stderr, "medgate policy build: %v\n", err)
			return exitFailure
		}
		fmt.Fprintln(stdout, *out)
		return exitOK
	case "check", "test":
		if !need("module", "cases") {
			return exitUsage
		}
		return policyCheck(sub, *region, *version, *module, *casesFile, stdout, stderr)
	case "sign":
		if !need("region", "version", "effective", "module", "cases") {
			return exitUsage
		}
		return policySign(*region, *version, *effective, *module, *casesFile, *key, *demoKey, *out, stdout, stderr)
	case "upload":
		if !need("token", "region", "file") {
			return exitUsage
		}
		body, err := readInput(*file)
		if err != nil {
			fmt.Fprintf(stderr, "medgate policy upload: --file: %v\n", err)
			return exitUsage
		}
		return call(stdout, stderr, sub, "POST", base+"/v1/regions/"+*region+"/policies", *token, body)
	case "list":
		if !need("token", "region") {
			return exitUsage
		}
		return call(stdout, stderr, sub, "GET", base+"/v1/regions/"+*region+"/policies", *token, nil)
	case "rollback":
		if !need("token", "region", "version") {
			return exitUsage
		}
		return call(stdout, stderr, sub, "POST", base+"/v1/regions/"+*region+"/policies/"+*version+"/withdraw", *token, nil)
	case "shadow":
		if !need("token", "region", "version", "from", "to") {
			return exitUsage
		}
		body, _ := json.Marshal(map[string]any{"version": *version, "from": *from, "to": *to, "top": *top})
		return call(stdout, stderr, sub, "POST", base+"/v1/regions/"+*region+"/shadow", *token, body)
	}
	fmt.Fprintf(stderr, "medgate policy: unknown subcommand %q\n\n%s", sub, policyUsage)
	return exitUsage
}

func policyCheck(sub, region, version, module, casesFile string, stdout, stderr io.Writer) int {
	// An unreadable input is a usage error (2), as in every command: 1
	// says the module failed its check or a case.
	wasm, err := readInput(module)
	if err != nil {
		fmt.Fprintf(stderr, "medgate policy %s: --module: %v\n", sub, err)
		return exitUsage
	}
	cb, err := readInput(casesFile)
	if err != nil {
		fmt.Fprintf(stderr, "medgate policy %s: --cases: %v\n", sub, err)
		return exitUsage
	}
	cs, err := cases.Parse(cb)
	if err != nil {
		fmt.Fprintf(stderr, "medgate policy %s: --cases %s: %v\n", sub, casesFile, err)
		return exitFailure
	}
	if region == "" {
		region = "000000"
	}
	if version == "" {
		version = "candidate"
	}
	ctx := context.Background()
	eng, err := engine.New(ctx, engine.Config{Logger: zerolog.Nop()})
	if err != nil {
		fmt.Fprintf(stderr, "medgate policy %s: %v\n", sub, err)
		return exitFailure
	}
	defer eng.Close(ctx)
	m, rep := gateway.CheckVersion(ctx, eng, region, version, wasm, cs)
	if m != nil {
		defer m.Close(ctx)
	}
	if sub == "test" {
		failed := map[string]cases.Failure{}
		for _, f := range rep.Cases {
			failed[f.Case] = f
		}
		for _, c := range rep.Checks {
			fmt.Fprintf(stdout, "FAIL check %s: %s\n", c.Check, c.Message)
		}
		// By the names the report uses: two cases may share a name.
		for _, name := range cases.Names(cs) {
			if f, bad := failed[name]; bad {
				fmt.Fprintf(stdout, "FAIL %s: %s%s\n", name, f.Error, strings.Join(f.Differences, "; "))
			} else if len(rep.Checks) == 0 {
				fmt.Fprintf(stdout, "ok   %s\n", name)
			}
		}
	} else {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(stdout, string(b))
	}
	if !rep.OK {
		return exitFailure
	}
	return exitOK
}

func policySign(region, version, effective, module, casesFile, keyFile string, demo bool, out string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "medgate policy sign: %v\n", err)
		return exitFailure
	}
	unreadable := func(flag string, err error) int {
		fmt.Fprintf(stderr, "medgate policy sign: %s: %v\n", flag, err)
		return exitUsage
	}
	// What the gateway refuses (400) is not signed: the author learns it
	// here, not from the upload.
	if !gateway.ValidVersion(version) {
		fmt.Fprintf(stderr, "medgate policy sign: --version %q: a version is 1 to 32 characters of letters, digits, '.', '_' or '-'\n", version)
		return exitUsage
	}
	if _, ok := abi.ParseDate(effective); !ok {
		fmt.Fprintf(stderr, "medgate policy sign: --effective %q is not a date YYYY-MM-DD\n", effective)
		return exitUsage
	}
	wasm, err := readInput(module)
	if err != nil {
		return unreadable("--module", err)
	}
	cb, err := readInput(casesFile)
	if err != nil {
		return unreadable("--cases", err)
	}
	if _, err := cases.Parse(cb); err != nil {
		return fail(fmt.Errorf("--cases %s: %w", casesFile, err))
	}
	var seed []byte
	switch {
	case demo:
		s := sha256.Sum256([]byte("demo-region-key-" + region))
		seed = s[:]
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return unreadable("--key", err)
		}
		fmt.Fprint(stderr, keyFileWarning("medgate policy sign: ", keyFile))
		if seed, err = hex.DecodeString(strings.TrimSpace(string(b))); err != nil || len(seed) != ed25519.SeedSize {
			return fail(fmt.Errorf("%s must hold a 32-byte ed25519 seed in hex", keyFile))
		}
	default:
		fmt.Fprintln(stderr, "medgate policy sign: --key or --demo-key is required")
		return exitUsage
	}
	// Sign the cases exactly as they travel: json.Marshal sends a
	// RawMessage compacted.
	var compact bytes.Buffer
	if err := json.Compact(&compact, cb); err != nil {
		return fail(err)
	}
	casesJSON := compact.Bytes()
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), gateway.UploadMessage(region, version, effective, wasm, casesJSON))
	up := gateway.Upload{Version: version, EffectiveFrom: effective, Module: base64.StdEncoding.EncodeToString(wasm),
		Cases: casesJSON, Signature: hex.EncodeToString(sig)}
	b, err := json.Marshal(up)
	if err != nil {
		return fail(err)
	}
	if out == "" || out == "-" {
		stdout.Write(append(b, '\n'))
		return exitOK
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, out)
	return exitOK
}

// call sends one request and prints the answer; a non-2xx status, or an
// answer that cannot be read whole, fails.
func call(stdout, stderr io.Writer, sub, method, url, token string, body []byte) int {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "medgate policy %s: %v\n", sub, err)
		return exitUsage
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := gatewayClient(5 * time.Minute).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "medgate policy %s: %v\n", sub, err)
		return exitFailure
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp)
	if err != nil {
		fmt.Fprintf(stderr, "medgate policy %s: %s %s: %v\n", sub, method, url, err)
		return exitFailure
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "", "  ") == nil {
		b = pretty.Bytes()
	}
	stdout.Write(append(b, '\n'))
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(stderr, "medgate: %s %s: %s\n", method, url, resp.Status)
		return exitFailure
	}
	return exitOK
}

// flagSet reports whether the command line gave flag name.
func flagSet(fl *flag.FlagSet, name string) (set bool) {
	fl.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
