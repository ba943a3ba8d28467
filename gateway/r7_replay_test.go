package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestR7UnavailableVersionIsListedAndInHealth: a version the world names
// whose module was not found at start, or was refused by the check, is in
// force as unavailable (its dates are 503 policy_unavailable). The
// region's version list did not show it at all (it had no record), so the
// list called the version before it superseded and none in force, and
// /healthz said ok while every bill of those dates was refused.
func TestR7UnavailableVersionIsListedAndInHealth(t *testing.T) {
	for _, c := range []struct {
		name string
		wasm []byte
	}{
		{"module not found", nil},
		{"module refused", []byte("\x00asm damaged")},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
			if status, body := h.do("GET", "/healthz", "", nil); status != 200 || !strings.Contains(string(body), `"ok"`) {
				t.Fatalf("healthz before: %d %s", status, body)
			}
			h.versions.LoadWorld(context.Background(), &World{Policies: []PolicyFile{
				{Region: "371600", Version: "v2026", EffectiveFrom: 20260101, Wasm: c.wasm}}})
			status, body := h.do("GET", "/v1/regions/371600/policies", "tok-region-371600", nil)
			if status != 200 {
				t.Fatalf("list: %d %s", status, body)
			}
			var list struct {
				Versions []struct {
					Version, Status, Source string
					SHA256                  string `json:"module_sha256"`
				}
			}
			if err := json.Unmarshal(body, &list); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, v := range list.Versions {
				got[v.Version] = v.Status
			}
			if got["v2026"] != "unavailable" || got["v2024"] != "superseded" {
				t.Errorf("listed %v, want v2026 unavailable (its bills are refused) and v2024 superseded:\n%s", got, body)
			}
			status, body = h.do("GET", "/healthz", "", nil)
			if status != 200 || !strings.Contains(string(body), `"degraded"`) || !strings.Contains(string(body), "371600/v2026") {
				t.Errorf("healthz with a version unavailable: %d %s, want degraded naming 371600/v2026", status, body)
			}
		})
	}
}
