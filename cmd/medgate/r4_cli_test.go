package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeGateway answers every request with h; it stands for what sits at
// --gateway when it is not (or not only) a medgate gateway: a proxy, a
// captive portal, another service, a connection cut short.
func fakeGateway(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func policyRun(args ...string) cliResult {
	var out, errb bytes.Buffer
	code := policyCmd(args, &out, &errb)
	return cliResult{code, out.String(), errb.String()}
}

// TestR4CLIAnswerMustBeTheGateways: the hospital and region commands took
// any 2xx for the gateway's answer. A proxy's or a portal's HTML page
// answered 200 made `medgate hospital settle` exit 0 (a script then books
// a settlement that never happened), and net/http followed a redirect of
// a POST as a GET, so whatever the redirect pointed at answered for the
// settlement.
func TestR4CLIAnswerMustBeTheGateways(t *testing.T) {
	html := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Welcome to the hospital network</body></html>"))
	})
	redirect := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"ok"}`))
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	for _, gw := range []string{html, redirect} {
		env := map[string]string{"MEDGATE_GATEWAY": gw, "MEDGATE_TOKEN": "demo-hospital-H3701020001"}
		r := hospital(env, readmeSettlement, "settle", "-")
		if r.code != exitFailure || r.stderr == "" {
			t.Errorf("hospital settle at %s: exit %d, want 1 and a reason\nstdout: %s\nstderr: %s", gw, r.code, r.stdout, r.stderr)
		}
		r = policyRun("list", "--gateway", gw, "--token", "demo-region-152500", "--region", "152500")
		if r.code != exitFailure || r.stderr == "" {
			t.Errorf("policy list at %s: exit %d, want 1 and a reason\nstdout: %s\nstderr: %s", gw, r.code, r.stdout, r.stderr)
		}
	}
}

// TestR4CLIAnswerCutShort: `medgate policy …` ignored an error reading the
// answer's body, so an answer cut short (the connection lost after the
// status line) printed half a JSON document and exited 0.
func TestR4CLIAnswerCutShort(t *testing.T) {
	gw := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"region":"152500","versions":[`))
		w.(http.Flusher).Flush()
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
	})
	r := policyRun("list", "--gateway", gw, "--token", "demo-region-152500", "--region", "152500")
	if r.code != exitFailure || !strings.Contains(r.stderr, "EOF") {
		t.Errorf("policy list cut short: exit %d, want 1 naming the read error\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	env := map[string]string{"MEDGATE_GATEWAY": gw, "MEDGATE_TOKEN": "demo-hospital-H3701020001"}
	if r := hospital(env, "", "get", "S000000000001"); r.code != exitFailure {
		t.Errorf("hospital get cut short: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// TestR4CLIHugeAnswerBounded: an answer was read whole into memory, so
// whatever sits at --gateway could stream until the CLI ran out of memory
// (within the 30 s timeout of `hospital`, the 5 min of `policy`).
func TestR4CLIHugeAnswerBounded(t *testing.T) {
	defer func(n int64) { maxAnswer = n }(maxAnswer)
	maxAnswer = 1 << 20
	gw := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"notes":["`))
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 4 * maxAnswer / int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write([]byte(`"]}`))
	})
	env := map[string]string{"MEDGATE_GATEWAY": gw, "MEDGATE_TOKEN": "demo-hospital-H3701020001"}
	if r := hospital(env, "", "get", "S000000000001"); r.code != exitFailure || !strings.Contains(r.stderr, "larger than") {
		t.Errorf("hospital get, a huge answer: exit %d, want 1\nstderr: %s", r.code, r.stderr)
	}
	r := policyRun("list", "--gateway", gw, "--token", "demo-region-152500", "--region", "152500")
	if r.code != exitFailure || !strings.Contains(r.stderr, "larger than") {
		t.Errorf("policy list, a huge answer: exit %d, want 1\nstderr: %s", r.code, r.stderr)
	}
}

// TestR4CLIGatewayAndTimeoutAreUsage: a --gateway without its scheme
// ("127.0.0.1:8080", as --listen is written) was sent and failed as an
// unreachable gateway (exit 1, "first path segment in URL cannot contain
// colon"), not as the bad flag it is (exit 2 naming the flag, or the
// variable it came from); a --timeout of 0 or less waited for ever.
func TestR4CLIGatewayAndTimeoutAreUsage(t *testing.T) {
	var hits int
	gw := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	})
	tok := map[string]string{"MEDGATE_TOKEN": "demo-hospital-H3701020001"}
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{tok, []string{"get", "S1", "--gateway", "127.0.0.1:8080"}, "--gateway"},
		{tok, []string{"get", "S1", "--gateway", "localhost:8080"}, "--gateway"},
		{tok, []string{"get", "S1", "--gateway", "ftp://127.0.0.1:8080"}, "--gateway"},
		{map[string]string{"MEDGATE_TOKEN": "t", "MEDGATE_GATEWAY": "127.0.0.1:8080"}, []string{"get", "S1"}, "MEDGATE_GATEWAY"},
		{map[string]string{"MEDGATE_TOKEN": "t", "MEDGATE_GATEWAY": gw}, []string{"get", "S1", "--timeout", "0s"}, "--timeout"},
		{map[string]string{"MEDGATE_TOKEN": "t", "MEDGATE_GATEWAY": gw}, []string{"get", "S1", "--timeout", "-1s"}, "--timeout"},
	} {
		r := hospital(c.env, "", c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("hospital %v: exit %d, want 2 naming %s\nstderr: %s", c.args, r.code, c.want, r.stderr)
		}
	}
	for _, g := range []string{"127.0.0.1:8080", "localhost:8080"} {
		r := policyRun("list", "--gateway", g, "--token", "t", "--region", "152500")
		if r.code != exitUsage || !strings.Contains(r.stderr, "--gateway") {
			t.Errorf("policy list --gateway %s: exit %d, want 2 naming --gateway\nstderr: %s", g, r.code, r.stderr)
		}
	}
	if hits != 0 {
		t.Errorf("%d requests sent on a usage error", hits)
	}
	// A trailing slash is still fine.
	if r := policyRun("list", "--gateway", gw+"/", "--token", "t", "--region", "152500"); r.code != exitOK {
		t.Errorf("policy list --gateway %s/: exit %d\nstderr: %s", gw, r.code, r.stderr)
	}
}

// TestR4PolicyStrayArgumentsRefused: `medgate policy` took its values from
// flags only and ignored anything else, and Go's flag package stops at the
// first argument that is not a flag: `policy sign … up.json` (the output
// meant as a file) printed the upload to stdout and exited 0, and every
// flag after a stray argument was silently dropped.
func TestR4PolicyStrayArgumentsRefused(t *testing.T) {
	var hits int
	gw := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"region":"152500","versions":[]}`))
	})
	for _, args := range [][]string{
		{"list", "--gateway", gw, "--token", "t", "--region", "152500", "extra"},
		{"list", "--gateway", gw, "--token", "t", "152500", "--region", "152500"},
		{"sign", "--region", "152500", "--version", "v9", "--effective", "2027-01-01", "--demo-key",
			"--module", "../../build/policies/152500/v1.wasm", "--cases", "../../testdata/cases/152500-v1.json", "up.json"},
		{"test", "--module", "../../build/policies/152500/v1.wasm", "--cases", "../../testdata/cases/152500-v1.json", "extra"},
	} {
		r := policyRun(args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "unexpected argument") || r.stdout != "" {
			t.Errorf("policy %v: exit %d, want 2 naming the argument\nstdout: %.200s\nstderr: %s", args, r.code, r.stdout, r.stderr)
		}
	}
	if hits != 0 {
		t.Errorf("%d requests sent on a usage error", hits)
	}
}

// TestR4HospitalReasonNeedsRequestID: `hospital reverse ID FILE --reason
// TEXT` (and `reverse ID --reason TEXT` reading stdin) sent the body as it
// was and dropped --reason without a word: the reversal was recorded
// without the reason the operator typed.
func TestR4HospitalReasonNeedsRequestID(t *testing.T) {
	var hits int
	gw := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"settlement_id":"S000000000002","reverses":"S000000000001"}`))
	})
	env := map[string]string{"MEDGATE_GATEWAY": gw, "MEDGATE_TOKEN": "demo-hospital-H3701020001"}
	file := t.TempDir() + "/rev.json"
	if err := os.WriteFile(file, []byte(`{"request_id":"R-2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"reverse", "S000000000001", file, "--reason", "entered twice"},
		{"reverse", "S000000000001", "--reason", "entered twice"},
		{"reverse", "S000000000001", "-", "--reason", "entered twice"},
	} {
		r := hospital(env, `{"request_id":"R-2"}`, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--reason") {
			t.Errorf("hospital %v: exit %d, want 2 naming --reason\nstderr: %s", args, r.code, r.stderr)
		}
	}
	if hits != 0 {
		t.Errorf("%d requests sent on a usage error", hits)
	}
	if r := hospital(env, "", "reverse", "S000000000001", "--request-id", "R-2", "--reason", "entered twice"); r.code != exitOK {
		t.Errorf("reverse --request-id --reason: exit %d\nstderr: %s", r.code, r.stderr)
	}
}

// TestR4PolicyUnreadableInputIsUsage: `medgate policy` exited 1 for a
// --module, --cases, --key or --file it could not read, the code of a
// module that failed its check or a case that failed: a CI job could not
// tell a missing file from a failed module. hospital, verify and audit
// answer 2 for an unreadable input; policy now does too. `-o -` wrote a
// file named "-"; it is standard output, and --file - standard input.
func TestR4PolicyUnreadableInputIsUsage(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	mod, cs := "../../build/policies/152500/v1.wasm", "../../testdata/cases/152500-v1.json"
	for _, args := range [][]string{
		{"check", "--module", missing, "--cases", cs},
		{"test", "--module", mod, "--cases", missing},
		{"sign", "--region", "152500", "--version", "v9", "--effective", "2027-01-01", "--key", missing, "--module", mod, "--cases", cs},
		{"sign", "--region", "152500", "--version", "v9", "--effective", "2027-01-01", "--demo-key", "--module", missing, "--cases", cs},
		{"upload", "--token", "t", "--region", "152500", "--file", missing},
	} {
		r := policyRun(args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, missing) {
			t.Errorf("policy %v: exit %d, want 2 naming %s\nstderr: %s", args, r.code, missing, r.stderr)
		}
	}
	// A module that fails its check is still 1.
	if r := policyRun("check", "--module", cs, "--cases", cs); r.code != exitFailure {
		t.Errorf("policy check of a module that is not one: exit %d, want 1\nstderr: %s", r.code, r.stderr)
	}

	wd, _ := os.Getwd()
	os.Chdir(dir)
	defer os.Chdir(wd)
	r := policyRun("sign", "--region", "152500", "--version", "v9", "--effective", "2027-01-01", "--demo-key",
		"--module", filepath.Join(wd, mod), "--cases", filepath.Join(wd, cs), "-o", "-")
	if _, err := os.Stat(filepath.Join(dir, "-")); err == nil || r.code != exitOK || !strings.HasPrefix(r.stdout, `{"version":"v9"`) {
		t.Errorf("policy sign -o -: exit %d, a file named - written: %v; stdout %.80s\nstderr: %s", r.code, err == nil, r.stdout, r.stderr)
	}

	// --file - reads standard input.
	var got []byte
	gw := fakeGateway(t, func(w http.ResponseWriter, req *http.Request) {
		got, _ = io.ReadAll(req.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"version":"v9"}`))
	})
	in := filepath.Join(dir, "up.json")
	os.WriteFile(in, []byte(r.stdout), 0o644)
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer func(s *os.File) { os.Stdin = s; f.Close() }(os.Stdin)
	os.Stdin = f
	if r2 := policyRun("upload", "--gateway", gw, "--token", "t", "--region", "152500", "--file", "-"); r2.code != exitOK || string(got) != r.stdout {
		t.Errorf("policy upload --file -: exit %d, sent %.80q\nstderr: %s", r2.code, got, r2.stderr)
	}
}

// TestR4HospitalSaysWhenAWriteMayHaveHappened: a settlement or reversal
// that got no answer (a timeout, the connection lost) or a 5xx may or may
// not have been written (README, "What an answer means"), but the CLI
// said only "context deadline exceeded" or "503 ledger_unavailable", exit
// 1 like a refusal: a cashier's script reading 1 as "not settled" had the
// patient pay in cash for a bill the fund had paid. It now says to send
// the same request again, and when (Retry-After).
func TestR4HospitalSaysWhenAWriteMayHaveHappened(t *testing.T) {
	slow := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second)
	})
	unavailable := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"ledger_unavailable","message":"the ledger cannot write"}}`))
	})
	refused := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"error":{"code":"idempotency_conflict","field":"request_id","message":"another body"}}`))
	})
	tok := "demo-hospital-H3701020001"
	for _, c := range []struct {
		gw    string
		args  []string
		hint  bool
		after string
	}{
		{slow, []string{"settle", "-", "--timeout", "300ms"}, true, ""},
		{slow, []string{"reverse", "S000000000001", "--request-id", "R-2", "--timeout", "300ms"}, true, ""},
		{unavailable, []string{"settle", "-"}, true, "2"},
		{unavailable, []string{"quote", "-"}, false, "2"},
		{refused, []string{"settle", "-"}, false, ""},
		{"http://127.0.0.1:1", []string{"settle", "-"}, false, ""}, // nothing sent
	} {
		r := hospital(map[string]string{"MEDGATE_GATEWAY": c.gw, "MEDGATE_TOKEN": tok}, readmeSettlement, c.args...)
		if r.code != exitFailure || strings.Contains(r.stderr, "same request_id") != c.hint ||
			(c.after != "" && !strings.Contains(r.stderr, "Retry-After: "+c.after)) {
			t.Errorf("hospital %v at %s: exit %d, want 1, a retry hint %v, Retry-After %q\nstderr: %s", c.args, c.gw, r.code, c.hint, c.after, r.stderr)
		}
	}
}
