package engine

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// recursingPolicy answers out after calling a function that recurses
// depth deep. Each frame keeps live across its recursive call the values
// of width additions (0: none), which the compiler keeps in the frame:
// width sets the frame's size.
func recursingPolicy(out *abi.Output, depth int32, width int) []byte {
	b := out.AppendBinary(nil)
	const f = 3 // after abi_version, input_buffer, settle
	var push, fold []byte
	for i := range width {
		push = wasmgen.Concat(push, []byte{0x20, 0}, wasmgen.I32Const(int32(i)), []byte{0x6A}) // local.get 0; i32.const i; i32.add
		fold = append(fold, 0x6A)                                                              // i32.add
	}
	rec := wasmgen.Concat(
		[]byte{0x20, 0, 0x45, 0x04, wasmgen.I32}, // local.get 0; i32.eqz; if (result i32)
		wasmgen.I32Const(0),
		[]byte{0x05},                                                          // else
		push,                                                                  // width values live across the call
		[]byte{0x20, 0}, wasmgen.I32Const(1), []byte{0x6B, wasmgen.OpCall, f}, // f(n-1)
		fold, // fold them into its result
		[]byte{wasmgen.OpEnd},
	)
	settle := wasmgen.Concat(wasmgen.I32Const(depth), []byte{wasmgen.OpCall, f, wasmgen.OpDrop}, wasmgen.Answer(answerAt, uint32(len(b))))
	m := wasmgen.Policy(1, 8192, settle)
	m.Funcs = append(m.Funcs, wasmgen.Func{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}, Body: rec})
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	return m.Bytes()
}

// nestedPolicy answers out after calling a function that recurses depth
// deep from inside loops nested loops deep, changing each of its locals
// i32 locals there: the compiler's SSA form gives each loop a value for
// each local, which the frame keeps (about loops × locals × 8 bytes).
func nestedPolicy(out *abi.Output, depth int32, loops int, locals uint32) []byte {
	b := out.AppendBinary(nil)
	const f = 3 // after abi_version, input_buffer, settle
	var body []byte
	for range loops {
		body = append(body, wasmgen.OpLoop, wasmgen.BlockVoid)
	}
	for k := uint32(1); k <= locals; k++ { // local k += 1
		l := wasmgen.U32(k)
		body = wasmgen.Concat(body, []byte{0x20}, l, wasmgen.I32Const(1), []byte{0x6A, 0x21}, l)
	}
	// if n != 0 { f(n-1) }
	body = append(body, 0x20, 0, 0x04, wasmgen.BlockVoid, 0x20, 0, wasmgen.OpI32Const, 1, 0x6B, wasmgen.OpCall, f, wasmgen.OpDrop, wasmgen.OpEnd)
	for range loops { // a branch back that is never taken (n == -1)
		body = append(body, 0x20, 0, wasmgen.OpI32Const, 0x7F, 0x46, 0x0D, 0, wasmgen.OpEnd)
	}
	body = append(body, wasmgen.OpI32Const, 0)
	for k := uint32(1); k <= locals; k++ {
		body = wasmgen.Concat(body, []byte{0x20}, wasmgen.U32(k), []byte{0x6A})
	}
	settle := wasmgen.Concat(wasmgen.I32Const(depth), []byte{wasmgen.OpCall, f, wasmgen.OpDrop}, wasmgen.Answer(answerAt, uint32(len(b))))
	m := wasmgen.Policy(1, 8192, settle)
	m.Funcs = append(m.Funcs, wasmgen.Func{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}, Body: body, Locals: locals})
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	return m.Bytes()
}

// heapInUse is the Go heap in use after a collection: where wazero keeps
// the call stack it grows for a call.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestR5DeepRecursionHoldsNoStack: wazero grows an export's call stack as
// a call needs it, up to about 100 MiB, and keeps it for the instance's
// later calls; a pooled instance lives until its version is withdrawn. A
// module that recursed a million deep, or a few thousand deep with big
// frames, and then answered left every instance it ran in holding that
// stack, MaxInstances of them per version, for good. The call stack a
// call may use is bounded (meter's stack budget): past it the call fails
// as a policy failure (FailStack) and the instance is discarded, so the
// gateway holds nothing more after it; a module recursing within the
// budget answers and stays pooled.
func TestR5DeepRecursionHoldsNoStack(t *testing.T) {
	ctx := context.Background()
	// The default budget: a million calls are well within it.
	e, err := New(ctx, Config{MaxInstances: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	in, enc := testInput()
	var out abi.Output

	for _, tc := range []struct {
		name  string
		depth int32
		width int
	}{
		{"a million small frames", 1_000_000, 0},
		{"two thousand big frames", 2_000, 4_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := e.Load(ctx, "152500", "deep", recursingPolicy(&want, tc.depth, tc.width))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(ctx)
			before := heapInUse()
			err = m.Call(ctx, in, enc, &out)
			held := heapInUse() - before
			t.Logf("call: %v; heap held after it %.1f MiB, %d instances live", err, float64(held)/(1<<20), m.Live())
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != FailStack {
				t.Errorf("Call = %v, want a stack-limit failure", err)
			}
			if m.Live() != 0 {
				t.Errorf("the instance that went deep is still pooled (%d live)", m.Live())
			}
			if held > 8<<20 {
				t.Errorf("the gateway holds %.1f MiB more after the call", float64(held)/(1<<20))
			}
		})
	}

	t.Run("within the budget", func(t *testing.T) {
		m, err := e.Load(ctx, "152500", "shallow", recursingPolicy(&want, 1_000, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(ctx)
		for i := range 3 {
			if err := m.Call(ctx, in, enc, &out); err != nil || out.Basic != 1 {
				t.Fatalf("call %d: %v %+v", i, err, out)
			}
		}
		if m.Live() != 1 {
			t.Fatalf("%d instances live, want the one reused", m.Live())
		}
	})
}

// TestR5StackAtTheLimitHoldsLittle: the frame sizes the limit counts are a
// bound on the stack wazero gives the frames, so a module recursing as
// deep as the limit lets, with small frames or big ones (values kept
// across the call, or locals changed in nested loops), leaves its
// instance holding at most about the limit (frames take at most half what
// is counted; wazero doubles the stack as it grows), not the 100 MiB of
// wazero's own ceiling.
func TestR5StackAtTheLimitHoldsLittle(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	for _, shape := range []struct {
		name   string
		module func(depth int32) []byte
		most   int32 // deeper than the limit lets
	}{
		{"small frames", func(d int32) []byte { return recursingPolicy(&want, d, 0) }, 1_000_000},
		{"4,000 values kept across the call", func(d int32) []byte { return recursingPolicy(&want, d, 4_000) }, 10_000},
		{"100 locals changed in 100 nested loops", func(d int32) []byte { return nestedPolicy(&want, d, 100, 100) }, 1_000},
	} {
		t.Run(shape.name, func(t *testing.T) { testStackAtTheLimit(t, e, shape.module, shape.most) })
	}
}

func testStackAtTheLimit(t *testing.T, e *Engine, module func(depth int32) []byte, most int32) {
	ctx := context.Background()
	limit := int64(e.Config().StackLimit)
	in, enc := testInput()
	var out abi.Output
	// call loads the module recursing depth deep and calls it once; the
	// module is left loaded, its instance pooled, when the call answers.
	call := func(depth int32) (*Module, error) {
		m, err := e.Load(ctx, "152500", "deep", module(depth))
		if err != nil {
			t.Fatal(err)
		}
		err = m.Call(ctx, in, enc, &out)
		var ce *CallError
		if err != nil && (!errors.As(err, &ce) || ce.Kind != FailStack) {
			t.Fatalf("depth %d: %v, want an answer or a stack-limit failure", depth, err)
		}
		return m, err
	}
	// The deepest recursion the limit lets answer.
	lo, hi := int32(1), most
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		m, err := call(mid)
		m.Close(ctx)
		if err == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	before := heapInUse()
	m, err := call(lo)
	if err != nil {
		t.Fatalf("depth %d: %v", lo, err)
	}
	defer m.Close(ctx)
	held := heapInUse() - before
	t.Logf("%d deep answers, %d does not; the instance holds %.1f MiB more", lo, hi, float64(held)/(1<<20))
	if m.Live() != 1 {
		t.Fatal("the instance that answered is not pooled")
	}
	if held > limit {
		t.Errorf("the instance holds %.1f MiB after recursing within the limit of %d MiB", float64(held)/(1<<20), limit>>20)
	}
}
