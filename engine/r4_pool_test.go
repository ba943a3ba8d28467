package engine

import (
	"context"
	"testing"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// growingPolicy answers out after growing its memory by pages on every
// call while it is under the 64 MiB limit.
func growingPolicy(out *abi.Output, pages int32) []byte {
	b := out.AppendBinary(nil)
	body := wasmgen.Concat(
		wasmgen.I32Const(pages), []byte{wasmgen.OpMemoryGrow, 0x00, wasmgen.OpDrop},
		wasmgen.Answer(answerAt, uint32(len(b))),
	)
	m := wasmgen.Policy(1, 8192, body)
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	return m.Bytes()
}

// TestR4PoolDropsInstancesThatGrewLarge: an instance whose memory grew
// during a call keeps that memory for as long as it lives, and a pooled
// instance lives until its module is closed: a module growing to the
// limit once per instance would pin MaxInstances × 64 MiB per version,
// for good, though its calls need it only while they run. An instance
// returned having grown by more than a quarter of the limit since it was
// instantiated is discarded instead; the next call instantiates afresh.
// Instances that grow little are still reused.
func TestR4PoolDropsInstancesThatGrewLarge(t *testing.T) {
	e := newTestEngine(t)
	ctx := context.Background()
	want := abi.Output{Basic: 1}
	in, enc := testInput()
	var out abi.Output

	small, err := e.Load(ctx, "371600", "small", growingPolicy(&want, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close(ctx)
	for range 3 {
		if err := small.Call(ctx, in, enc, &out); err != nil {
			t.Fatal(err)
		}
	}
	if small.Live() != 1 {
		t.Fatalf("an instance that stayed small was not kept: %d live", small.Live())
	}

	big, err := e.Load(ctx, "371600", "big", growingPolicy(&want, 1000)) // 64 MiB
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close(ctx)
	for i := range 3 {
		if err := big.Call(ctx, in, enc, &out); err != nil || out.Basic != 1 {
			t.Fatalf("call %d: %v %+v", i, err, out)
		}
		if n := big.Live(); n != 0 {
			t.Fatalf("after call %d an instance that grew to %d pages stays pooled (%d live)", i, 1002, n)
		}
	}
}
