package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

func init() {
	register(command{name: "hospital", summary: "for hospitals: quote, settle, reverse and get settlements at a gateway",
		run: func(args []string, stdout, stderr io.Writer) int {
			return hospitalCmd(args, os.Stdin, os.Getenv, stdout, stderr)
		}})
}

const hospitalUsage = `medgate hospital: settle bills at a gateway, as a hospital's system does

  medgate hospital quote   [FILE]       POST /v1/settlements/quote   compute a settlement, write nothing
  medgate hospital settle  [FILE]       POST /v1/settlements         settle (idempotent by request_id)
  medgate hospital reverse ID [FILE]    POST /v1/settlements/ID/reversal
  medgate hospital reverse ID --request-id R [--reason TEXT]
  medgate hospital get     ID           GET  /v1/settlements/ID

FILE holds the request's JSON as the API takes it (see the gateway's
/openapi.yaml); "-" or no FILE reads standard input.

Flags (any subcommand, before or after its arguments):
  --gateway URL   the gateway (default http://127.0.0.1:8080; env MEDGATE_GATEWAY)
  --token T       the hospital's bearer token (env MEDGATE_TOKEN)
  --timeout D     how long to wait for the answer (default 30s)
  --pretty        indent the answer

The gateway's answer (JSON) is printed on standard output, whatever its
status. Exit codes: 0 the gateway answered 2xx; 1 it refused or failed (its
status, error code, field and message on standard error) or could not be
reached; 2 usage (bad flags or arguments, no token, an unreadable FILE).
A settle or reverse that got no answer, or a 5xx, may have been written:
send it again as it was (same request_id and body) to get its answer.
`

// hospitalCmd runs `medgate hospital ...`; stdin feeds a request body given
// as "-" or not at all.
func hospitalCmd(args []string, stdin io.Reader, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, hospitalUsage)
		return exitOK
	}
	sub, args := args[0], args[1:]
	prefix := "medgate hospital " + sub + ": "
	fl := flag.NewFlagSet("hospital "+sub, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	gw := fl.String("gateway", or(getenv("MEDGATE_GATEWAY"), "http://127.0.0.1:8080"), "")
	token := fl.String("token", getenv("MEDGATE_TOKEN"), "")
	timeout := fl.Duration("timeout", 30*time.Second, "")
	pretty := fl.Bool("pretty", false, "")
	requestID := fl.String("request-id", "", "")
	reason := fl.String("reason", "", "")
	// Flags may follow the arguments: parse up to each argument and on.
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, hospitalUsage)
				return exitOK
			}
			fmt.Fprintf(stderr, "%s%v\n(medgate hospital --help)\n", prefix, err)
			return exitUsage
		}
		if fl.NArg() == 0 {
			break
		}
		pos, args = append(pos, fl.Arg(0)), fl.Args()[1:]
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, prefix+format+"\n(medgate hospital --help)\n", a...)
		return exitUsage
	}

	var method, path, file string
	var body []byte
	switch sub {
	case "quote", "settle":
		if len(pos) > 1 {
			return usage("one FILE at most, got %d arguments", len(pos))
		}
		if len(pos) == 1 {
			file = pos[0]
		}
		method, path = "POST", "/v1/settlements"
		if sub == "quote" {
			path += "/quote"
		}
	case "reverse":
		if len(pos) < 1 || len(pos) > 2 {
			return usage("give the settlement id, then the FILE or --request-id")
		}
		method, path = "POST", "/v1/settlements/"+url.PathEscape(pos[0])+"/reversal"
		switch {
		case len(pos) == 2 && *requestID != "":
			return usage("give a FILE or --request-id, not both")
		case *reason != "" && *requestID == "":
			// The body comes from FILE or stdin as it is: --reason would be dropped.
			return usage("--reason goes with --request-id; with a FILE or stdin, put \"reason\" in the JSON")
		case len(pos) == 2:
			file = pos[1]
		case *requestID != "":
			body, _ = json.Marshal(map[string]string{"request_id": *requestID, "reason": *reason})
		}
	case "get":
		if len(pos) != 1 {
			return usage("give the settlement id")
		}
		method, path = "GET", "/v1/settlements/"+url.PathEscape(pos[0])
	default:
		fmt.Fprintf(stderr, "medgate hospital: unknown subcommand %q\n\n%s", sub, hospitalUsage)
		return exitUsage
	}
	if (*requestID != "" || *reason != "") && sub != "reverse" {
		return usage("--request-id and --reason are for reverse only")
	}
	if *token == "" {
		return usage("a token is required: --token T or MEDGATE_TOKEN")
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	base, err := gatewayBase(*gw)
	if err != nil {
		if set["gateway"] || getenv("MEDGATE_GATEWAY") == "" {
			return usage("--gateway: %v", err)
		}
		return usage("MEDGATE_GATEWAY: %v", err)
	}
	if *timeout <= 0 {
		return usage("--timeout must be more than 0, got %v", *timeout)
	}
	if method == "POST" && body == nil {
		if file == "" || file == "-" {
			body, err = io.ReadAll(stdin)
		} else {
			body, err = os.ReadFile(file)
		}
		if err != nil {
			return usage("%v", err)
		}
	}

	// A settlement or reversal without an answer, or answered 5xx, may or
	// may not be on the ledger (README, "What an answer means"): exit 1
	// does not mean "not settled" then, and the way to know is to send it
	// again as it was.
	writes := sub == "settle" || sub == "reverse"
	const mayHaveHappened = "the %s may or may not have been written: send the same request again (same request_id and body) to get its answer\n"
	status, header, answer, err := hospitalCall(method, base+path, *token, body, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s%v\n", prefix, err)
		var op *net.OpError
		if writes && !(errors.As(err, &op) && op.Op == "dial") { // a refused dial sent nothing
			fmt.Fprintf(stderr, prefix+mayHaveHappened, subjectOf(sub))
		}
		return exitFailure
	}
	if *pretty {
		var b bytes.Buffer
		if json.Indent(&b, answer, "", "  ") == nil {
			answer = b.Bytes()
		}
	}
	stdout.Write(append(bytes.TrimRight(answer, "\n"), '\n'))
	if status/100 == 2 {
		return exitOK
	}
	var e struct {
		Error struct{ Code, Message, Field string } `json:"error"`
	}
	json.Unmarshal(answer, &e)
	if e.Error.Code == "" {
		e.Error.Code = "http_" + fmt.Sprint(status)
	}
	line := fmt.Sprintf("%s%d %s", prefix, status, e.Error.Code)
	if e.Error.Field != "" {
		line += " (" + e.Error.Field + ")"
	}
	if e.Error.Message != "" {
		line += ": " + e.Error.Message
	}
	if ra := header.Get("Retry-After"); ra != "" {
		line += " (Retry-After: " + ra + ")"
	}
	fmt.Fprintln(stderr, line)
	if writes && status >= 500 {
		fmt.Fprintf(stderr, prefix+mayHaveHappened, subjectOf(sub))
	}
	return exitFailure
}

func subjectOf(sub string) string {
	if sub == "reverse" {
		return "reversal"
	}
	return "settlement"
}

func hospitalCall(method, url, token string, body []byte, timeout time.Duration) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := gatewayClient(timeout).Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
