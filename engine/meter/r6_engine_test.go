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

// TestR6MergesAreBounded: what compiling a module costs grows with each
// function's blocks × locals (the values its SSA form merges), which the
// module's size does not bound. A function past MaxFunctionMerges is
// refused, and so is a module whose functions, each within it, are past
// MaxMerges in all; one within both is instrumented; the reference
// policies are well within.
func TestR6MergesAreBounded(t *testing.T) {
	module := func(funcs ...wasmgen.Func) []byte {
		m := wasmgen.Policy(1, 0, wasmgen.I64Const(0))
		m.Funcs = append(m.Funcs, funcs...)
		return m.Bytes()
	}
	within := loopLocals(50, 5_000) // 250,000
	for _, tc := range []struct {
		name   string
		wasm   []byte
		refuse string
	}{
		{"one function within", module(within), ""},
		{"one function past", module(loopLocals(60, 5_000)), "function 3: "},
		{"a module past", module(within, within, within, within, within, within, within, within, within), "function 11: "},
	} {
		_, err := meter.Instrument(tc.wasm, 1<<40)
		if tc.refuse == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse) || !strings.Contains(err.Error(), "merged")) {
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
