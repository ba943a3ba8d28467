package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// TestBulkMemoryIsMetered: memory.fill, memory.copy and memory.init run
// inside the compiled code without a metered point, so they must pay for
// the bytes they touch, not one step a loop iteration: a loop filling 16 MiB
// an iteration would otherwise run its 10,000 steps for seconds (with the
// default budget and 64 MiB, for hours, holding a CPU and the Go
// runtime's stop-the-world, so the whole gateway).
func TestBulkMemoryIsMetered(t *testing.T) {
	const n = 16 << 20
	for _, tc := range []struct {
		name string
		op   []byte
	}{
		{"memory.fill", []byte{0xFC, 11, 0}},
		{"memory.copy", []byte{0xFC, 10, 0, 0}},
		{"memory.init", []byte{0xFC, 8, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(context.Background(), Config{CallFuel: 10_000, MaxInstances: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close(context.Background())
			size := int32(n)
			if tc.name == "memory.init" {
				size = n / 2 // a module holds at most 16 MiB
			}
			body := wasmgen.Concat([]byte{wasmgen.OpLoop, wasmgen.BlockVoid},
				wasmgen.I32Const(0), wasmgen.I32Const(0), wasmgen.I32Const(size), tc.op,
				[]byte{wasmgen.OpBr, 0, wasmgen.OpEnd}, wasmgen.I64Const(0))
			mod := wasmgen.Policy(1, 8192, body)
			mod.MemoryMin = 2 * n >> 16
			if tc.name == "memory.init" {
				mod.Passive = [][]byte{make([]byte, size)}
			}
			m, err := e.Load(context.Background(), "152500", "bulk", mod.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			in, enc := testInput()
			var out abi.Output
			began := time.Now()
			err = m.Call(context.Background(), in, enc, &out)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != FailTimeout {
				t.Fatalf("Call = %v, want a timeout", err)
			}
			if d := time.Since(began); d > time.Second {
				t.Fatalf("a %s loop was stopped after %v", tc.name, d)
			}
		})
	}
}
