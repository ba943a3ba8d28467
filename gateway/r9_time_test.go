package gateway

import (
	"context"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
)

// Round 9, dates and times: policy versions by effective date, clearing
// months and reconciliation days in UTC+8, years of accumulators.

// TestR9RestoredVersionKeepsItsPlaceAmongItsDate: of two versions with the
// same effective date the one published last applies (README, "before and
// after a restart"). The one published first, found unavailable at a start
// (its stored module gone), was restored by its region's same upload again
// and then applied instead of the later one, so the same bill was settled
// under another version than before the repair, and after the next
// restart under the later one again.
func TestR9RestoredVersionKeepsItsPlaceAmongItsDate(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {resident}})))
	first := upload("371600", "vfirst", "2026-01-01", referenceWasm(t, "371600", "v2023"), readCases(t, "371600-v2023.json"), demoKey("371600"))
	last := upload("371600", "vlast", "2026-01-01", referenceWasm(t, "371600", "v2024"), readCases(t, "371600-v2024.json"), demoKey("371600"))
	for _, b := range [][]byte{first, last} {
		if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", b); status != 201 {
			t.Fatalf("upload: %d %s", status, out)
		}
	}
	bill := func(id string) answer {
		t.Helper()
		return mustSettle(t, h, "H3716020001", settleBody(id, "RES1", "371600", `{"type":"two_disease","visit_date":"2026-06-01"}`,
			`[{"code":"XA01","unit_price":"100.00","quantity":"1","amount":"100.00"}]`))
	}
	if a := bill("R9-V-1"); a.Policy["version"] != "vlast" {
		t.Fatalf("a bill of 2026-06-01 settled under %s, want vlast (published last)", a.Policy["version"])
	}

	// As LoadStored schedules the region at a start that finds vfirst's
	// module gone: in the order of the records, vfirst unavailable.
	vl, _ := h.policies.Lookup("371600", 20260601)
	vf := func() engine.Version {
		for _, v := range h.policies.Versions("371600") {
			if v.Name == "vfirst" {
				return v
			}
		}
		t.Fatal("vfirst not scheduled")
		return engine.Version{}
	}()
	h.policies.Remove("371600", "vfirst")
	h.policies.Remove("371600", "vlast")
	h.policies.Put("371600", engine.Version{Name: "vfirst", EffectiveFrom: 20260101,
		Module: &engine.Unavailable{Region: "371600", Version: "vfirst", SHA256: vf.Module.Sum(), Cause: os.ErrNotExist}})
	h.policies.Put("371600", vl)
	if a := bill("R9-V-2"); a.Policy["version"] != "vlast" {
		t.Fatalf("with vfirst unavailable, a bill settled under %s, want vlast", a.Policy["version"])
	}

	// The region repairs vfirst with the same upload again.
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", first); status != 200 {
		t.Fatalf("the same upload again: %d %s", status, out)
	}
	if a := bill("R9-V-3"); a.Policy["version"] != "vlast" {
		t.Errorf("after vfirst was restored, a bill of 2026-06-01 settled under %s, want vlast (published last, and what a restart applies)", a.Policy["version"])
	}
}

// TestR9WorldVersionGoneKeepsItsPlaceAmongItsDate: a world version whose
// files a later start no longer finds stays in force from its stored
// module (TestWorldVersionGoneStaysInForce), but it was scheduled after
// every version still in the world: of two world versions with the same
// effective date, removing the files of the one that no longer applied
// (published first) made it apply again, over the one published last, with
// no region doing anything.
func TestR9WorldVersionGoneKeepsItsPlaceAmongItsDate(t *testing.T) {
	ctx := context.Background()
	eng, store := versionsStore(t)
	files := fstest.MapFS{
		"policies/371600/va.json": {Data: []byte(`{"effective_from": "2024-01-01"}`)},
		"policies/371600/va.wasm": {Data: answerModule(abi.Output{Basic: 1})},
		"policies/371600/vb.json": {Data: []byte(`{"effective_from": "2024-01-01"}`)},
		"policies/371600/vb.wasm": {Data: answerModule(abi.Output{Basic: 2})},
	}
	start := func(fs fstest.MapFS) string {
		w, err := ReadWorld(fs)
		if err != nil {
			t.Fatal(err)
		}
		pol := &engine.Policies{}
		v := NewVersions(eng, store, pol, zerolog.Nop())
		v.LoadWorld(ctx, w)
		if err := v.LoadStored(ctx); err != nil {
			t.Fatal(err)
		}
		ver, _ := pol.Lookup("371600", 20250601)
		return ver.Name
	}
	if got := start(files); got != "vb" {
		t.Fatalf("first start: %s in force, want vb (the later of the two of 2024-01-01)", got)
	}
	without := fstest.MapFS{}
	for name, f := range files {
		if !strings.Contains(name, "/va.") {
			without[name] = f
		}
	}
	if got := start(without); got != "vb" {
		t.Errorf("va's files gone from the world: %s in force, want vb as before (va stays scheduled from its stored module, in its place)", got)
	}
}
