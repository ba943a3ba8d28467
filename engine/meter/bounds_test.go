package meter_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"medgate/engine/meter"
	"medgate/engine/wasmgen"
)

// TestCheckBounds: modules whose counts cannot be true are refused before
// any decoder sees them (each once made wazero ask for tens of GiB and
// the process die); real modules pass.
func TestCheckBounds(t *testing.T) {
	for name, wasm := range map[string]string{
		"4 billion tables":        "\x00asm\x01\x00\x00\x00\x04\x05\xff\xff\xff\xff\x0f",
		"260 million imports":     "\x00asm\x01\x00\x00\x00\x02\x17\xfe\x8f\x82|0000000000000000000000000000000000000",
		"4 billion functions":     "\x00asm\x01\x00\x00\x00\x03\x05\xff\xff\xff\xff\x0f",
		"4 billion element exprs": "\x00asm\x01\x00\x00\x00\x09\x09\x01\x05\x70\xff\xff\xff\xff\x0f\x00",
		"4 billion locals":        "\x00asm\x01\x00\x00\x00\x0a\x0a\x01\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b",
		"4 GiB of data":           "\x00asm\x01\x00\x00\x00\x0b\x08\x01\x01\xff\xff\xff\xff\x0f\x00",
		"a 4 GiB name":            "\x00asm\x01\x00\x00\x00\x02\x09\x01\xff\xff\xff\xff\x0f\x00\x00\x00",
		"an unknown type form":    "\x00asm\x01\x00\x00\x00\x01\x04\x01\x5e\x00\x00",
		"not wasm":                "hello",
	} {
		if err := meter.CheckBounds([]byte(wasm)); err == nil || !errors.Is(err, meter.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	ok := map[string][]byte{
		"policy": wasmgen.Policy(1, 0, wasmgen.Answer(0, 0)).Bytes(),
		"loop":   wasmgen.Policy(1, 0, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes(),
	}
	// The reference policies, when make built them (the gateway's tests
	// load them through engine.Load, which checks bounds, in any case).
	built, _ := filepath.Glob(filepath.Join("..", "..", "build", "policies", "*", "*.wasm"))
	for _, f := range built {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ok[f] = b
	}
	for name, wasm := range ok {
		if err := meter.CheckBounds(wasm); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
}

// TestGlobalsAndElementsBounded: globals and element segments live outside
// the memory limit in every instance, so their counts are bounded; at the
// bounds a module passes.
func TestGlobalsAndElementsBounded(t *testing.T) {
	globals := func(n int) []byte {
		g := wasmgen.U32(uint32(n))
		for i := 0; i < n; i++ {
			g = append(g, wasmgen.I32, 0, wasmgen.OpI32Const, 0, wasmgen.OpEnd)
		}
		// A module of its type section (one type, none used) and this
		// global section: only the counts matter here.
		b := []byte("\x00asm\x01\x00\x00\x00")
		b = append(b, 6)
		b = append(b, wasmgen.U32(uint32(len(g)))...)
		return append(b, g...)
	}
	elements := func(n int) []byte {
		m := wasmgen.Policy(1, 0, wasmgen.Answer(0, 0))
		seg := append([]byte{1, 0}, wasmgen.U32(uint32(n))...) // passive, funcref indexes
		seg = append(seg, make([]byte, n)...)                  // function 0, n times
		m.Elements = [][]byte{seg}
		return m.Bytes()
	}
	for _, tt := range []struct {
		name string
		wasm []byte
		ok   bool
	}{
		{"MaxGlobals globals", globals(meter.MaxGlobals), true},
		{"one global more", globals(meter.MaxGlobals + 1), false},
		{"MaxElements references", elements(meter.MaxElements), true},
		{"one reference more", elements(meter.MaxElements + 1), false},
	} {
		err := meter.CheckBounds(tt.wasm)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, meter.ErrMalformed) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestFunctionBodyBounded: one function's code is bounded (compiling it
// costs memory in proportion), and a body at the bound passes.
func TestFunctionBodyBounded(t *testing.T) {
	body := func(size int) []byte {
		// i64.const 0 then nops up to size bytes with the locals count
		// and the final end.
		code := append(wasmgen.I64Const(0), make([]byte, size-1-len(wasmgen.I64Const(0))-1)...)
		for i := len(wasmgen.I64Const(0)); i < len(code); i++ {
			code[i] = 0x01 // nop
		}
		return code
	}
	for _, tt := range []struct {
		size int
		ok   bool
	}{{meter.MaxFunctionBody, true}, {meter.MaxFunctionBody + 1, false}} {
		err := meter.CheckBounds(wasmgen.Policy(1, 0, body(tt.size)).Bytes())
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, meter.ErrMalformed) {
			t.Errorf("a body of %d bytes: %v", tt.size, err)
		}
	}
}
