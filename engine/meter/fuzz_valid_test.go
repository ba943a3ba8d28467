package meter_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"medgate/engine/meter"
	"medgate/engine/wasmgen"
)

// FuzzInstrumentValid: a module that passes CheckBounds compiles within
// memory (wazero allocates vectors by their declared counts); and the
// rewriter never turns a module wazero accepts into one it refuses: when
// the input compiles (wazero's interpreter, default features), Instrument
// either refuses it (an unsupported feature) or returns a module that
// compiles too; and instrumenting is deterministic, which replays rely on.
// The seeds are FuzzInstrument's corpus.
func FuzzInstrumentValid(f *testing.F) {
	f.Add(wasmgen.Policy(1, 0, wasmgen.Answer(0, 0)).Bytes())
	f.Add(wasmgen.Policy(1, 0, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes())
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzInstrument", "*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			continue
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add([]byte(s))
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		// As engine.Load: counts are checked before any decoder runs (a
		// crash of the fuzzing process here is a module CheckBounds lets
		// through and wazero cannot decode within memory).
		if meter.CheckBounds(wasm) != nil {
			return
		}
		// wazero's validator panics on some malformed code (the engine
		// turns that into a refusal): such an input is one wazero refuses.
		cm, err, panicked := compile(ctx, rt, wasm)
		if err != nil || panicked != nil {
			return
		}
		cm.Close(ctx)
		out, err := meter.Instrument(wasm, 1)
		if err != nil {
			return
		}
		cm, err, panicked = compile(ctx, rt, out)
		if panicked != nil {
			t.Fatalf("the instrumented module makes wazero panic: %v", panicked)
		}
		if err != nil {
			t.Fatalf("the instrumented module does not compile: %v", err)
		}
		cm.Close(ctx)
		again, err := meter.Instrument(wasm, 1)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("instrumenting twice differs (%v)", err)
		}
	})
}

// compile is rt.CompileModule, reporting a panic inside wazero apart.
func compile(ctx context.Context, rt wazero.Runtime, wasm []byte) (cm wazero.CompiledModule, err error, panicked any) {
	defer func() {
		if r := recover(); r != nil {
			cm, err, panicked = nil, nil, r
		}
	}()
	cm, err = rt.CompileModule(ctx, wasm)
	return cm, err, nil
}
