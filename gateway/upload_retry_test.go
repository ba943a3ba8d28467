package gateway

import (
	"strings"
	"testing"

	"medgate/engine/abi"
)

// TestPolicyUploadRetryIsAReplay: a region whose upload's answer was lost
// sends it again. The same version, module and date is answered as
// published ("replayed": true, 200), not 409 version_exists, and nothing
// changes; the same name with another module or date, or after a
// withdrawal, stays a conflict that says what differs.
func TestPolicyUploadRetryIsAReplay(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	good := referenceWasm(t, "371600", "v2023")
	cases := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	body := upload("371600", "v2031", "2031-01-01", good, cases, key)
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", body); status != 201 {
		t.Fatalf("first upload: %d %s", status, out)
	}
	before, _ := h.versions.List("371600", 20261123)
	status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", body)
	if status != 200 || !strings.Contains(string(out), `"replayed":true`) || !strings.Contains(string(out), `"version":"v2031"`) {
		t.Fatalf("the same upload again: %d %s, want 200 replayed", status, out)
	}
	if after, _ := h.versions.List("371600", 20261123); len(after) != len(before) {
		t.Fatalf("a replayed upload changed the versions: %+v, then %+v", before, after)
	}
	other := answerModule(abi.Output{})
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"another date", upload("371600", "v2031", "2031-02-01", good, cases, key), "effective from 2031-01-01"},
		{"another module", upload("371600", "v2031", "2031-01-01", other, cases, key), "with another module"},
		{"a world version", upload("371600", "v2024", "2024-01-01", referenceWasm(t, "371600", "v2024"), readCases(t, "371600-v2024.json"), key), "from the world directory"},
	} {
		status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", tc.body)
		if status != 409 || !strings.Contains(string(out), "version_exists") || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: %d %s, want 409 version_exists saying %q", tc.name, status, out, tc.want)
		}
	}
	if status, out := h.do("POST", "/v1/regions/371600/policies/v2031/withdraw", "tok-region-371600", nil); status != 200 {
		t.Fatalf("withdraw: %d %s", status, out)
	}
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", body); status != 409 || !strings.Contains(string(out), "withdrawn") {
		t.Fatalf("the upload of a withdrawn version: %d %s, want 409 saying withdrawn", status, out)
	}
}
