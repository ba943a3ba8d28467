package meter_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"medgate/engine/meter"
	"medgate/engine/wasmgen"
)

// loopLocals is a function of loops nested loops around code that adds 1
// to each of its locals i32 locals: the compiler merges every local at
// every loop, loops × locals values.
func loopLocals(loops, locals int) wasmgen.Func {
	var body []byte
	for range loops {
		body = append(body, wasmgen.OpLoop, wasmgen.BlockVoid)
	}
	for k := uint32(1); k <= uint32(locals); k++ {
		l := wasmgen.U32(k)
		body = wasmgen.Concat(body, []byte{0x20}, l, wasmgen.I32Const(1), []byte{0x6A, 0x21}, l)
	}
	for range loops {
		body = append(body, wasmgen.OpEnd)
	}
	body = append(body, wasmgen.OpI32Const, 0)
	return wasmgen.Func{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}, Body: body, Locals: uint32(locals)}
}

// branchLocals is a function branching branches times out of a block,
// then reading each of its locals i32 locals: the block's end merges
// every local from each branch.
func branchLocals(branches, locals int) wasmgen.Func {
	body := []byte{0x02, wasmgen.BlockVoid}
	for range branches {
		body = append(body, 0x20, 0, 0x0D, 0) // local.get 0; br_if 0
	}
	body = append(body, wasmgen.OpEnd, wasmgen.OpI32Const, 0)
	for k := uint32(1); k <= uint32(locals); k++ {
		body = wasmgen.Concat(body, []byte{0x20}, wasmgen.U32(k), []byte{0x6A})
	}
	return wasmgen.Func{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}, Body: body, Locals: uint32(locals)}
}

// TestR6MergesAreBounded: what compiling a module costs grows with each
// function's locals merged at its blocks and branch targets, and with
// those times its locals, which the module's size does not bound. A
// function past MaxFunctionMerges is refused, and so is a module whose
// functions, each within it, are past MaxMergeWork in all; one within
// both is instrumented; the reference policies are well within.
func TestR6MergesAreBounded(t *testing.T) {
	module := func(funcs ...wasmgen.Func) []byte {
		m := wasmgen.Policy(1, 0, wasmgen.I64Const(0))
		m.Funcs = append(m.Funcs, funcs...)
		return m.Bytes()
	}
	within := loopLocals(20, 2_000) // 40,000 merges, 80,000,000 work
	many := make([]wasmgen.Func, 14)
	for i := range many {
		many[i] = within
	}
	for _, tc := range []struct {
		name   string
		wasm   []byte
		refuse string
	}{
		{"one function within", module(within), ""},
		{"one within, by branches", module(branchLocals(500, 500)), ""},
		{"nested loops past", module(loopLocals(60, 5_000)), "function 3: "},
		{"branches past", module(branchLocals(600, 500)), "function 3: "},
		{"a br_table past", module(wasmgen.Func{Params: []byte{wasmgen.I32}, Body: wasmgen.Concat(
			[]byte{0x02, wasmgen.BlockVoid, 0x20, 0, 0x0E}, wasmgen.U32(300), make([]byte, 301), []byte{wasmgen.OpEnd}),
			Locals: 1000}), "function 3: "},
		{"a module past", module(many...), "function 16: "},
	} {
		_, err := meter.Instrument(tc.wasm, 1<<40)
		if tc.refuse == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse) || !strings.Contains(err.Error(), "merge")) {
			t.Errorf("%s: Instrument = %v, want it refused at %q", tc.name, err, tc.refuse)
		}
	}
	files, _ := filepath.Glob("../../build/policies/*/*.wasm")
	if len(files) == 0 {
		t.Fatal("no reference policies built (make policies)")
	}
	for _, f := range files {
		wasm, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := meter.Instrument(wasm, 1<<40); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
