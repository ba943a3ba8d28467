package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestPolicyReadsMEDGATE_GATEWAY: `medgate policy` takes the gateway from
// MEDGATE_GATEWAY as `medgate hospital` does (it used 127.0.0.1:8080
// whatever the variable said), names the variable when its value is not a
// URL, and a --gateway given still wins.
func TestPolicyReadsMEDGATE_GATEWAY(t *testing.T) {
	var hits int
	gw := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"versions":[]}`))
	})
	t.Setenv("MEDGATE_GATEWAY", gw)
	if r := policyRun("list", "--token", "t", "--region", "152500"); r.code != exitOK || hits != 1 {
		t.Fatalf("policy list with MEDGATE_GATEWAY: exit %d, %d requests\nstderr: %s", r.code, hits, r.stderr)
	}
	t.Setenv("MEDGATE_GATEWAY", "127.0.0.1:8080")
	if r := policyRun("list", "--token", "t", "--region", "152500"); r.code != exitUsage || !strings.Contains(r.stderr, "MEDGATE_GATEWAY") {
		t.Fatalf("policy list with MEDGATE_GATEWAY 127.0.0.1:8080: exit %d, want 2 naming the variable\nstderr: %s", r.code, r.stderr)
	}
	if r := policyRun("list", "--gateway", gw, "--token", "t", "--region", "152500"); r.code != exitOK || hits != 2 {
		t.Fatalf("policy list --gateway over a bad MEDGATE_GATEWAY: exit %d\nstderr: %s", r.code, r.stderr)
	}
}
