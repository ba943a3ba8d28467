package engine

import (
	"context"
	"testing"
	"time"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// TestR8UploadCannotReturnTooManyResults: compiling a function takes time
// growing with the square of its type's results, as with its parameters
// (MaxParams), and the type section gave results no bound: a 240 KB
// module of one function returning 80,000 i32s took 10 s of a CPU to
// check, one of 120,000 (a body still within MaxFunctionBody) 23 s. A
// type may now have 1,000 results, as browsers allow (the reference
// policies return one value at most); a module past it is refused before
// it is compiled.
func TestR8UploadCannotReturnTooManyResults(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	b := want.AppendBinary(nil)
	const n = 80_000
	results := make([]byte, n)
	body := make([]byte, 0, 2*n)
	for i := range results {
		results[i] = wasmgen.I32
		body = append(body, 0x41, 0) // i32.const 0
	}
	m := wasmgen.Policy(1, 8192, wasmgen.Answer(answerAt, uint32(len(b))))
	m.Funcs = append(m.Funcs, wasmgen.Func{Results: results, Body: body})
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	refusedBeforeCompile(t, e, "tall", m.Bytes(), "80000 results, limit", 2*time.Second)
}
