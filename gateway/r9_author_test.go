package gateway

import (
	"context"
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
