package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// TestR10CanceledCallDoesNotQuoteStderr: a call canceled under way (with
// --policy-deadline, the settlement's context ending: a shutdown) is
// FailUnavailable, whose error the gateway puts in the hospital's 503
// answer ("policy_unavailable ... (<error>)"). It quoted what the module
// had written to stderr during the call, which may be made of the visit
// and is meant for the region's author and the masked log only.
func TestR10CanceledCallDoesNotQuoteStderr(t *testing.T) {
	e := newTestEngine(t, true)
	const secret = "diagnosis C50.9 of person 4101"
	write := wasmgen.Concat(
		wasmgen.I32Const(2), wasmgen.I32Const(0), wasmgen.I32Const(1), wasmgen.I32Const(8),
		[]byte{wasmgen.OpCall, 0, wasmgen.OpDrop})
	mod := wasmgen.Policy(1, 8192, wasmgen.Concat(write, wasmgen.Forever(), wasmgen.I64Const(0)))
	mod.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "fd_write",
		Params: []byte{wasmgen.I32, wasmgen.I32, wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}}
	mod.Data = []wasmgen.Data{{Offset: 0, Bytes: []byte{16, 0, 0, 0, byte(len(secret)), 0, 0, 0}}, {Offset: 16, Bytes: []byte(secret)}}
	m, err := e.Load(context.Background(), "410100", "v1", mod.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	in := &abi.Input{Date: 20261109, Visit: abi.Visit{Type: abi.VisitInpatient}}
	var out abi.Output
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	err = m.Call(ctx, in, in.AppendBinary(nil), &out)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Kind != FailUnavailable {
		t.Fatalf("Call = %v, want a cancellation (unavailable)", err)
	}
	if strings.Contains(err.Error(), "C50") {
		t.Fatalf("Call = %v: a cancellation, answered to the hospital, quotes the module's stderr", err)
	}
}
