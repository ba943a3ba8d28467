package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

// startGateway runs `medgate serve` on the embedded reference world with
// the native reference policies (fast to start) and returns its URL.
func startGateway(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var logs bytes.Buffer
	dir := t.TempDir()
	go func() {
		done <- serveContext(ctx, []string{"--db", dir, "--listen", "127.0.0.1:0", "--native-policies", "--log-level", "warn"},
			noEnv, &bytes.Buffer{}, &logs, func(a net.Addr) { ready <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	})
	select {
	case a := <-ready:
		return "http://" + a.String()
	case code := <-done:
		t.Fatalf("serve exited %d before serving:\n%s", code, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}
	return ""
}

type cliResult struct {
	code           int
	stdout, stderr string
}

func hospital(env map[string]string, stdin string, args ...string) cliResult {
	var out, errb bytes.Buffer
	code := hospitalCmd(args, strings.NewReader(stdin), func(k string) string { return env[k] }, &out, &errb)
	return cliResult{code, out.String(), errb.String()}
}

const readmeSettlement = `{"request_id":"CLI-1",
  "person":{"id":"152500198001011234","insured_region":"152500"},
  "visit":{"type":"inpatient","admitted_on":"2026-11-01","discharged_on":"2026-11-09","emergency":false,"diagnoses":["I10"]},
  "use_personal_account":true,
  "items":[{"code":"XA01","unit_price":"12.50","quantity":"2","amount":"25.00","trace_codes":["83912345678901234567"]},
           {"code":"XB01","unit_price":"3000","quantity":"1","amount":"3000.00"}]}`

func TestHospitalCLI(t *testing.T) {
	gw := startGateway(t)
	const token = "demo-hospital-H3701020001"
	env := map[string]string{"MEDGATE_GATEWAY": gw, "MEDGATE_TOKEN": token}
	file := filepath.Join(t.TempDir(), "settle.json")
	os.WriteFile(file, []byte(readmeSettlement), 0o644)

	expect := func(r cliResult, code int, stdout, stderr string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) {
			t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant stdout ~ %q, stderr ~ %q", r.code, code, r.stdout, r.stderr, stdout, stderr)
		}
	}

	// quote from standard input writes nothing.
	quote := strings.Replace(readmeSettlement, `"request_id":"CLI-1",`, ``, 1)
	expect(hospital(env, quote, "quote"), 0, `"quote":true`, "")
	// settle from a file, flags given explicitly (gateway, token).
	r := hospital(nil, "", "settle", file, "--gateway", gw, "--token", token)
	expect(r, 0, `"replayed":false`, "")
	var a struct {
		SettlementID string `json:"settlement_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &a); err != nil || a.SettlementID == "" {
		t.Fatalf("settle answer: %v %s", err, r.stdout)
	}
	expect(hospital(env, "", "settle", file), 0, `"replayed":true`, "")
	// The same request_id with another body: the gateway refuses, exit 1,
	// the code and field on stderr, the error object on stdout.
	other := strings.Replace(readmeSettlement, `"emergency":false`, `"emergency":true`, 1)
	expect(hospital(env, other, "settle", "-"), 1, `"code":"idempotency_conflict"`, "409 idempotency_conflict (request_id):")
	expect(hospital(env, "", "get", a.SettlementID, "--pretty"), 0, "\n  \"settlement_id\": \""+a.SettlementID+"\"", "")
	expect(hospital(env, "", "get", "S999999999999"), 1, `"not_found"`, "404 not_found")
	expect(hospital(env, "", "reverse", a.SettlementID, "--request-id", "CLI-2", "--reason", "entered twice"), 0, `"reverses":"`+a.SettlementID+`"`, "")
	expect(hospital(env, `{"request_id":"CLI-3"}`, "reverse", a.SettlementID), 1, "", "409 already_reversed")
	// Another hospital's token does not see it.
	expect(hospital(map[string]string{"MEDGATE_GATEWAY": gw, "MEDGATE_TOKEN": "demo-hospital-H3716020001"}, "", "get", a.SettlementID), 1, "", "404 not_found")
	expect(hospital(map[string]string{"MEDGATE_GATEWAY": gw, "MEDGATE_TOKEN": "wrong"}, "", "get", a.SettlementID), 1, "", "401 unauthorized")

	// Usage: exit 2, nothing sent.
	expect(hospital(map[string]string{"MEDGATE_GATEWAY": gw}, "", "get", "S1"), 2, "", "a token is required")
	expect(hospital(env, "", "settle", filepath.Join(t.TempDir(), "missing.json")), 2, "", "no such file")
	expect(hospital(env, "", "get"), 2, "", "give the settlement id")
	expect(hospital(env, "", "settle", "--bogus"), 2, "", "flag provided but not defined")
	expect(hospital(env, "", "settle", "--request-id", "x"), 2, "", "for reverse only")
	expect(hospital(env, "", "discharge"), 2, "", "unknown subcommand")
	expect(hospital(env, "", "reverse", "S1", file, "--request-id", "x"), 2, "", "not both")
	for _, args := range [][]string{{}, {"--help"}, {"get", "--help"}} {
		expect(hospital(env, "", args...), 0, "medgate hospital quote", "")
	}
	// An unreachable gateway: exit 1.
	expect(hospital(map[string]string{"MEDGATE_GATEWAY": "http://127.0.0.1:1", "MEDGATE_TOKEN": token}, "", "get", "S1", "--timeout", "2s"), 1, "", "connect")
}

func TestServeSettings(t *testing.T) {
	var out, errb bytes.Buffer
	if code := serveContext(context.Background(), []string{"--help"}, noEnv, &out, &errb, nil); code != 0 || !strings.Contains(out.String(), "--policy-memory-pages pages") {
		t.Fatalf("--help: %d %s %s", code, out.String(), errb.String())
	}
	out.Reset()
	env := func(k string) (string, bool) {
		return map[string]string{"MEDGATE_LOG_LEVEL": "debug"}[k], k == "MEDGATE_LOG_LEVEL"
	}
	if code := serveContext(context.Background(), []string{"--print-config", "--listen", "127.0.0.1:9999"}, env, &out, &errb, nil); code != 0 ||
		!strings.Contains(out.String(), `listen: "127.0.0.1:9999"  # flag`) || !strings.Contains(out.String(), `log-level: "debug"  # env`) {
		t.Fatalf("--print-config: %d %s %s", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := serveContext(context.Background(), []string{"--listen", "nowhere", "--log-format", "xml"}, noEnv, &out, &errb, nil); code != 2 ||
		!strings.Contains(errb.String(), "--listen:") || !strings.Contains(errb.String(), "--log-format:") {
		t.Fatalf("invalid settings: %d %s", code, errb.String())
	}
}
