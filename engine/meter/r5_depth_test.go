package meter_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"medgate/engine/meter"
	"medgate/engine/wasmgen"
)

// TestR5StackIsGivenBackOnEveryExit: the stack global counts the frames
// running, so every way out of a function must give its frame back: its
// end, return, and a br, br_if or br_table to its outermost label. A
// module calling a function leaving each way 100,000 times in a row
// (within a stack limit of a few frames) answers, with the global back at
// settle's own frame; a recursion past the limit traps with the global at
// StackExceeded.
func TestR5StackIsGivenBackOnEveryExit(t *testing.T) {
	const g = 3 // after abi_version, input_buffer, settle
	exits := map[string][]byte{
		"end":                   {0x20, 0},                                                    // local.get 0
		"return":                {0x20, 0, 0x0F},                                              // local.get 0; return
		"br to its label":       {0x20, 0, 0x0C, 0},                                           // local.get 0; br 0
		"br_if to its label":    {0x02, 0x40, 0x20, 0, 0x20, 0, 0x0D, 1, 0x1A, 0x0B, 0x20, 0}, // block; local.get 0 ×2; br_if 1; drop; end; local.get 0
		"br_table to its label": {0x20, 0, 0x41, 0, 0x0E, 1, 0, 0},                            // local.get 0; i32.const 0; br_table 0 0
	}
	for name, body := range exits {
		t.Run(name, func(t *testing.T) {
			// settle: loop 100,000 times calling g(1), then answer.
			settle := wasmgen.Concat(
				[]byte{0x03, 0x40}, // loop
				wasmgen.I32Const(1), []byte{wasmgen.OpCall, g, wasmgen.OpDrop},
				[]byte{0x20, 0}, wasmgen.I32Const(1), []byte{0x6B, 0x22, 0, 0x0D, 0, 0x0B}, // local.tee 0 (n-1); br_if 0; end
				wasmgen.I64Const(0))
			m := wasmgen.Policy(1, 0, settle)
			m.Funcs = append(m.Funcs, wasmgen.Func{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}, Body: body})
			mod, stack := instantiateStack(t, m.Bytes(), 16<<10)
			stack.Set(0)
			if _, err := mod.ExportedFunction("settle").Call(context.Background(), 100_000); err != nil {
				t.Fatalf("settle: %v (stack global %d)", err, stack.Get())
			}
			if used := stack.Get(); used == 0 || used > 4<<10 {
				t.Fatalf("after the calls the stack global is %d, want settle's own frame", used)
			}
		})
	}
	t.Run("past the limit", func(t *testing.T) {
		m := wasmgen.Policy(1, 0, []byte{0x20, 0, wasmgen.OpCall, 2}) // settle calls itself
		mod, stack := instantiateStack(t, m.Bytes(), 16<<10)
		stack.Set(0)
		if _, err := mod.ExportedFunction("settle").Call(context.Background(), 1); err == nil || stack.Get() != meter.StackExceeded {
			t.Fatalf("err %v, stack global %#x", err, stack.Get())
		}
	})
}

func instantiateStack(t *testing.T, wasm []byte, limit uint32) (api.Module, api.MutableGlobal) {
	t.Helper()
	code, err := meter.InstrumentStack(wasm, 1<<40, limit)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { r.Close(ctx) })
	mod, err := r.InstantiateWithConfig(ctx, code, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	mod.ExportedGlobal(meter.Global).(api.MutableGlobal).Set(1 << 40)
	return mod, mod.ExportedGlobal(meter.StackGlobal).(api.MutableGlobal)
}
