package meter_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

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
	// The host functions a module may import; each test imports what it
	// calls, if anything.
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
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

// TestCountsSteps: a function without loops costs its instructions
// (input_buffer: i32.const, end) and its check; the answer is unchanged by
// metering.
func TestCountsSteps(t *testing.T) {
	mod, fuel := instantiate(t, wasmgen.Policy(7, 1234, wasmgen.Answer(5, 6)).Bytes(), 100)
	fuel.Set(100)
	res, err := mod.ExportedFunction("input_buffer").Call(context.Background(), 1)
	if err != nil || res[0] != 1234 || fuel.Get() != 100-2-meter.PointCost {
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
	// i32.const, memory.grow, drop, i64.const, end, the check; the growth.
	if used := 500_000 - fuel.Get(); used != 5+meter.PointCost+meter.GrowCost {
		t.Fatalf("used %d", used)
	}
}

// fatLoop is a loop that counts its iterations at address 0, then stores
// k times: one metered point an iteration, 3k+9 instructions.
func fatLoop(k int) []byte {
	count := wasmgen.Concat(wasmgen.I32Const(0), wasmgen.I32Const(0), []byte{0x28, 2, 0}, // i32.load
		wasmgen.I32Const(1), []byte{0x6A, 0x36, 2, 0}) // i32.add, i32.store
	store := wasmgen.Concat(wasmgen.I32Const(64), wasmgen.I32Const(7), []byte{0x36, 2, 0}) // i32.store
	body := append([]byte{wasmgen.OpLoop, wasmgen.BlockVoid}, count...)
	for i := 0; i < k; i++ {
		body = append(body, store...)
	}
	return append(body, wasmgen.OpBr, 0, wasmgen.OpEnd)
}

// TestLoopChargesItsBody: an iteration costs the instructions of the
// loop's body, so a long body runs its budget out in as many fewer
// iterations: the budget bounds the work, not only the jumps. (Charged one
// step an iteration, this loop ran 1,000,000 iterations of 1,000 stores.)
func TestLoopChargesItsBody(t *testing.T) {
	const k, budget = 1000, 1_000_000
	mod, fuel := instantiate(t, wasmgen.Policy(1, 0, wasmgen.Concat(fatLoop(k), wasmgen.I64Const(0))).Bytes(), 100)
	fuel.Set(budget)
	if _, err := mod.ExportedFunction("settle").Call(context.Background(), 1); err == nil || fuel.Get() != 0 {
		t.Fatalf("err %v, fuel left %d", err, fuel.Get())
	}
	// The entry charges 3 (loop, i64.const, end), each iteration 3k+9,
	// and each its check.
	iterations, _ := mod.Memory().ReadUint32Le(0)
	if want := (budget - 3 - meter.PointCost) / (3*k + 9 + meter.PointCost); iterations != uint32(want) {
		t.Fatalf("%d iterations on a budget of %d, want %d", iterations, budget, want)
	}
}

// TestScopeCosts: the entry charges the function's own instructions, each
// loop its body's, nested loops not counted in the loops around them, and
// code after a nested loop (reached past it by a branch) in the enclosing
// scope.
func TestScopeCosts(t *testing.T) {
	body := []byte{
		0x02, 0x40, // block           (entry: 1)
		0x41, 1, //     i32.const 1    (2)
		0x0D, 0, //     br_if 0        (3): past the loop
		0x03, 0x40, //  loop           (4)
		0x41, 1, //       i32.const 1  (loop 1: 1)
		0x0D, 0, //       br_if 0      (2)
		0x03, 0x40, //    loop         (3)
		0x0C, 0, //         br 0       (inner loop: 1)
		0x0B, //          end          (2)
		0x0B, //        end            (loop 1: 4)
		0x01, //        nop            (entry: 5)
		0x01, //        nop            (6)
		0x0B, //      end              (7)
		0x0B, //    end of the function (8)
	}
	got, err := meter.ScopeCosts(body)
	if err != nil {
		t.Fatal(err)
	}
	p := int64(meter.PointCost)
	if want := []int64{8 + p, 4 + p, 2 + p}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("costs %v, want %v", got, want)
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

// TestHostFunctionReferencesRefused: an imported function may be called
// directly only (charged HostCallCost), not put in a table, where
// call_indirect would call it for one step.
func TestHostFunctionReferencesRefused(t *testing.T) {
	random := wasmgen.Import{Module: "wasi_snapshot_preview1", Name: "random_get", Params: []byte{wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}
	active := func(idx byte) []byte {
		return wasmgen.Concat([]byte{0}, wasmgen.I32Const(0), []byte{wasmgen.OpEnd, 1, idx})
	}
	passiveExpr := func(idx byte) []byte { return []byte{5, 0x70, 1, 0xD2, idx, wasmgen.OpEnd} }
	for _, tt := range []struct {
		name    string
		elems   [][]byte
		body    []byte
		refused bool
	}{
		{"table holds the import", [][]byte{active(0)}, nil, true},
		{"passive expression names the import", [][]byte{passiveExpr(0)}, nil, true},
		{"ref.func of the import", nil, []byte{0xD2, 0, wasmgen.OpDrop}, true},
		{"table holds a defined function", [][]byte{active(1)}, nil, false},
		{"ref.func of a defined function", nil, []byte{0xD2, 1, wasmgen.OpDrop}, false},
	} {
		m := wasmgen.Policy(1, 0, wasmgen.Concat(tt.body, wasmgen.I64Const(0)))
		m.Imports = []wasmgen.Import{random}
		m.Table = &wasmgen.Limits{Min: 1}
		m.Elements = tt.elems
		_, err := meter.Instrument(m.Bytes(), 100)
		if refused := err != nil; refused != tt.refused || refused && !strings.Contains(err.Error(), "imported (host) function") {
			t.Errorf("%s: %v, want refused %v", tt.name, err, tt.refused)
		}
	}
}

// TestHostCallsChargedByLength: a host function whose work grows with an
// argument (random_get's length) is charged by it, on top of HostCallCost.
func TestHostCallsChargedByLength(t *testing.T) {
	const n = 1 << 20
	body := wasmgen.Concat(wasmgen.I32Const(0), wasmgen.I32Const(n), []byte{wasmgen.OpCall, 0, wasmgen.OpDrop}, wasmgen.I64Const(0))
	m := wasmgen.Policy(1, 0, body)
	m.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "random_get", Params: []byte{wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}}
	m.MemoryMin = 32
	mod, fuel := instantiate(t, m.Bytes(), 1000)
	settle := mod.ExportedFunction("settle")
	ctx := context.Background()
	// i32.const, i32.const, call, drop, i64.const, end; the check; the
	// host call; its length.
	want := uint64(6 + meter.PointCost + meter.HostCallCost + n)
	fuel.Set(want)
	if _, err := settle.Call(ctx, 1); err != nil || fuel.Get() != 0 {
		t.Fatalf("on exactly its cost: %v, fuel left %d", err, fuel.Get())
	}
	fuel.Set(want - 1)
	if _, err := settle.Call(ctx, 1); err == nil || fuel.Get() != 0 {
		t.Fatalf("on one step less: %v, fuel left %d", err, fuel.Get())
	}
}

// insertSection puts a section with id and content before the first
// section of wasm whose id is exportSection (7): for globals (6).
func insertSection(wasm []byte, id byte, content []byte) []byte {
	out := append([]byte(nil), wasm[:8]...)
	sec := append([]byte{id}, wasmgen.U32(uint32(len(content)))...)
	sec = append(sec, content...)
	rest := wasm[8:]
	for len(rest) > 0 {
		sid := rest[0]
		n, size := uint32(0), 1
		for shift := 0; ; shift += 7 {
			c := rest[size]
			size++
			n |= uint32(c&0x7f) << shift
			if c < 0x80 {
				break
			}
		}
		if sid == 7 && sec != nil {
			out = append(out, sec...)
			sec = nil
		}
		out = append(out, rest[:size+int(n)]...)
		rest = rest[size+int(n):]
	}
	return out
}

// TestHostFunctionInAGlobalRefused: a funcref global initialized with an
// imported function is refused like one in a table (global.get, table.set
// and call_indirect would call the host unmetered).
func TestHostFunctionInAGlobalRefused(t *testing.T) {
	random := wasmgen.Import{Module: "wasi_snapshot_preview1", Name: "random_get", Params: []byte{wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}
	for _, tt := range []struct {
		idx     byte
		refused bool
	}{{0, true}, {1, false}} {
		m := wasmgen.Policy(1, 0, wasmgen.I64Const(0))
		m.Imports = []wasmgen.Import{random}
		wasm := insertSection(m.Bytes(), 6, []byte{1, 0x70, 0, 0xD2, tt.idx, wasmgen.OpEnd}) // one immutable funcref global
		_, err := meter.Instrument(wasm, 100)
		if refused := err != nil; refused != tt.refused || refused && !strings.Contains(err.Error(), "imported (host) function") {
			t.Errorf("global = ref.func %d: %v, want refused %v", tt.idx, err, tt.refused)
		}
	}
}

// TestHostCallsWithAnI64ChargedByLength: fd_pread and fd_pwrite take an
// i64 offset; they are charged by their buffers all the same.
func TestHostCallsWithAnI64ChargedByLength(t *testing.T) {
	for _, name := range []string{"fd_pread", "fd_pwrite"} {
		used := func(iovs int32) uint64 {
			body := wasmgen.Concat(wasmgen.I32Const(0), wasmgen.I32Const(0), wasmgen.I32Const(iovs), wasmgen.I64Const(0), wasmgen.I32Const(0),
				[]byte{wasmgen.OpCall, 0, wasmgen.OpDrop}, wasmgen.I64Const(0))
			m := wasmgen.Policy(1, 0, body)
			m.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: name,
				Params: []byte{wasmgen.I32, wasmgen.I32, wasmgen.I32, 0x7E, wasmgen.I32}, Results: []byte{wasmgen.I32}}}
			mod, fuel := instantiate(t, m.Bytes(), 1000)
			fuel.Set(1 << 40)
			mod.ExportedFunction("settle").Call(context.Background(), 1)
			return 1<<40 - fuel.Get()
		}
		if a, b := used(1), used(1001); b-a != 1000<<5 {
			t.Errorf("%s: %d steps with 1 buffer, %d with 1,001: want 32 a buffer", name, a, b)
		}
	}
}
