package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/wasmgen"
)

// TestR9TrapLogMasksWhatTheModuleWrote: a failed call's error now quotes
// what the module wrote to stderr (for the region's author: a panic's
// value), which a policy may have made of the visit. The region's check
// reports show it; the gateway's log line masks it, as it masks a counter
// name, and the hospital's answer never carries it.
func TestR9TrapLogMasksWhatTheModuleWrote(t *testing.T) {
	h, eng := twoRegionHarness(t)
	logs := logTo(h, zerolog.InfoLevel)
	const secret = "panic: diagnosis C50.9 not handled"
	write := wasmgen.Concat(
		wasmgen.I32Const(2), wasmgen.I32Const(0), wasmgen.I32Const(1), wasmgen.I32Const(8),
		[]byte{wasmgen.OpCall, 0, wasmgen.OpDrop, wasmgen.OpUnreachable})
	mod := wasmgen.Policy(1, 8192, write)
	mod.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "fd_write",
		Params: []byte{wasmgen.I32, wasmgen.I32, wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}}
	mod.Data = []wasmgen.Data{{Offset: 0, Bytes: []byte{16, 0, 0, 0, byte(len(secret)), 0, 0, 0}}, {Offset: 16, Bytes: []byte(secret)}}
	m, err := eng.Load(context.Background(), "152500", "stderr", mod.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	h.policies.Put("152500", engine.Version{Name: "stderr", EffectiveFrom: 20230101, Module: m})
	resp, err := h.roundTrip("POST", "/v1/settlements", "tok-H3716020001", "application/json",
		settleBody("R9-STDERR", "EMP2", "152500", chronicVisit, oneLine), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 422 || strings.Contains(string(resp.Body()), "C50") {
		t.Fatalf("%d %s: want 422 without the module's text", resp.StatusCode(), resp.Body())
	}
	if !strings.Contains(logs.String(), "policy call failed") || !strings.Contains(logs.String(), "[redacted]") {
		t.Fatalf("no masked failure line:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "C50") {
		t.Fatalf("the log quotes what the module wrote:\n%s", logs.String())
	}
}

// TestR9CaseErrorNamesTheCase: an upload's (or a check's) case with a
// misspelt field or a value of the wrong type was refused naming only
// "cases" ("cases: json: unknown field \"basic\"", or "Go struct field
// .input.person.continuous_years of type int32"): in a file of hundreds
// of cases the author could not tell which. The refusal now names the
// case by its index and name, and the field where JSON says it.
func TestR9CaseErrorNamesTheCase(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	var cs []map[string]any
	if err := json.Unmarshal(readCases(t, "371600-v2023.json"), &cs); err != nil {
		t.Fatal(err)
	}
	name := cs[2]["name"].(string)
	wasm := referenceWasm(t, "371600", "v2023")
	for _, tc := range []struct {
		edit          func(c map[string]any)
		field, saying string
	}{
		{func(c map[string]any) { c["expect"].(map[string]any)["basic"] = "1.00" }, "cases[2]", `unknown field "basic"`},
		{func(c map[string]any) {
			c["input"].(map[string]any)["person"].(map[string]any)["continuous_years"] = "6"
		},
			"cases[2].input.person.continuous_years", "a string"},
	} {
		var bad []map[string]any
		b, _ := json.Marshal(cs)
		json.Unmarshal(b, &bad)
		tc.edit(bad[2])
		b, _ = json.Marshal(bad)
		status, out := h.do("POST", "/v1/regions/371600/policies/check", "tok-region-371600", upload("371600", "c", "2030-01-01", wasm, b, demoKey("371600")))
		var res struct {
			Error struct{ Message, Field string }
		}
		json.Unmarshal(out, &res)
		if status != 400 || res.Error.Field != tc.field || !strings.Contains(res.Error.Message, tc.saying) ||
			!strings.Contains(res.Error.Message, name) || strings.Contains(res.Error.Message, "Go struct") {
			t.Errorf("%d %s: want 400 naming field %s and case %q, saying %s", status, out, tc.field, name, tc.saying)
		}
	}
}
