package meter_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"medgate/engine/meter"
	"medgate/engine/wasmgen"
)

func instantiate(t *testing.T, wasm []byte, fuel int64) (api.Module, api.MutableGlobal) {
	t.Helper()
	code, err := meter.Instrument(wasm, fuel)
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
	return mod, mod.ExportedGlobal(meter.Global).(api.MutableGlobal)
}

// TestLoopStops: a loop that never ends stops when the budget is spent,
// with the budget at 0 so the host can tell it from any other trap.
func TestLoopStops(t *testing.T) {
	mod, fuel := instantiate(t, wasmgen.Policy(1, 0, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes(), 100)
	fuel.Set(100_000)
	_, err := mod.ExportedFunction("settle").Call(context.Background(), 1)
	if err == nil || fuel.Get() != 0 {
		t.Fatalf("err %v, fuel left %d", err, fuel.Get())
	}
}

// TestCountsSteps: a function without loops costs one step; the answer is
// unchanged by metering.
func TestCountsSteps(t *testing.T) {
	mod, fuel := instantiate(t, wasmgen.Policy(7, 1234, wasmgen.Answer(5, 6)).Bytes(), 100)
	fuel.Set(10)
	res, err := mod.ExportedFunction("input_buffer").Call(context.Background(), 1)
	if err != nil || res[0] != 1234 || fuel.Get() != 9 {
		t.Fatalf("res %v err %v fuel %d", res, err, fuel.Get())
	}
	res, _ = mod.ExportedFunction("abi_version").Call(context.Background())
	if res[0] != 7 {
		t.Fatalf("abi_version %d", res[0])
	}
	// A budget of 0 stops even a function without loops.
	fuel.Set(0)
	if _, err := mod.ExportedFunction("input_buffer").Call(context.Background(), 1); err == nil {
		t.Fatal("ran without fuel")
	}
}

// TestHostCallsCostMore: memory.grow costs HostCallCost.
func TestHostCallsCostMore(t *testing.T) {
	body := wasmgen.Concat(wasmgen.I32Const(1), []byte{wasmgen.OpMemoryGrow, 0, wasmgen.OpDrop}, wasmgen.I64Const(0))
	mod, fuel := instantiate(t, wasmgen.Policy(1, 0, body).Bytes(), 100)
	fuel.Set(500_000)
	if _, err := mod.ExportedFunction("settle").Call(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if used := 500_000 - fuel.Get(); used != 1+meter.GrowCost {
		t.Fatalf("used %d", used)
	}
}

func TestStartFunctionBudget(t *testing.T) {
	start := uint32(3)
	m := wasmgen.Policy(1, 0, wasmgen.Answer(0, 0))
	m.Funcs = append(m.Funcs, wasmgen.Func{Body: wasmgen.Forever()})
	m.Start = &start
	code, err := meter.Instrument(m.Bytes(), 10_000)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := r.Instantiate(ctx, code); err == nil {
		t.Fatal("a looping start function instantiated")
	}
}

func TestRefusals(t *testing.T) {
	for name, wasm := range map[string][]byte{
		"not wasm":  []byte("hello"),
		"truncated": wasmgen.Policy(1, 0, wasmgen.Answer(0, 0)).Bytes()[:30],
		"simd": func() []byte {
			m := wasmgen.Policy(1, 0, []byte{0xFD, 0x0C})
			return m.Bytes()
		}(),
	} {
		if _, err := meter.Instrument(wasm, 1); err == nil {
			t.Errorf("%s: instrumented", name)
		} else if name == "not wasm" && !errors.Is(err, meter.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzInstrument: arbitrary bytes never make the rewriter panic.
func FuzzInstrument(f *testing.F) {
	f.Add(wasmgen.Policy(1, 0, wasmgen.Answer(0, 0)).Bytes())
	f.Fuzz(func(t *testing.T, b []byte) { meter.Instrument(b, 1) })
}
