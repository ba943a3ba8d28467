package gateway

import (
	"strings"
	"testing"

	"medgate/engine/abi"
)

// TestR5AboveTheBoundSaysHowManyToWithdraw: a store written before the
// bound may hold more versions not withdrawn than MaxActiveVersions. It
// still loads, every version settles its dates, and the region may
// withdraw; but a new upload was refused saying the region kept the
// limit and to withdraw one, while it kept more: withdrawing one, as
// told, was refused again with the same words. The refusal says how many
// the region keeps and how many it must withdraw before it may publish.
func TestR5AboveTheBoundSaysHowManyToWithdraw(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	wasm := referenceWasm(t, "371600", "v2023")
	cs := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	up := func(version, eff string) (int, []byte) {
		return h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", version, eff, wasm, cs, key))
	}
	for _, v := range []string{"v2031", "v2032"} {
		if status, out := up(v, v[1:]+"-01-01"); status != 201 {
			t.Fatalf("upload %s: %d %s", v, status, out)
		}
	}
	// v2023, v2024 of the world and two uploads: 4 kept, the bound
	// (as after an upgrade) 2.
	h.versions.maxActive = 2
	for _, date := range []abi.Date{20230601, 20240601, 20310601, 20320601} {
		if _, ok := h.policies.Lookup("371600", date); !ok {
			t.Errorf("no version for %d above the bound", date)
		}
	}
	status, out := up("v2033", "2033-01-01")
	a := decodeAnswer(t, out)
	if status != 409 || a.Error == nil || a.Error.Code != "too_many_versions" {
		t.Fatalf("upload above the bound: %d %s; want 409 too_many_versions", status, out)
	}
	for _, s := range []string{"4 versions", "at most 2", "withdraw 3"} {
		if !strings.Contains(a.Error.Message, s) {
			t.Errorf("the refusal %q does not say %q", a.Error.Message, s)
		}
	}
	// Withdrawing as many as it says makes room.
	for _, v := range []string{"v2023", "v2031", "v2032"} {
		if status, out := h.do("POST", "/v1/regions/371600/policies/"+v+"/withdraw", "tok-region-371600", nil); status != 200 {
			t.Fatalf("withdraw %s: %d %s", v, status, out)
		}
	}
	if status, out := up("v2033", "2033-01-01"); status != 201 {
		t.Fatalf("upload after withdrawing 3: %d %s", status, out)
	}
}
