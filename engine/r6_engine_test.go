package engine

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// loopLocalsPolicy is a policy whose settle calls, funcs times, a function
// of its own: loops nested loops deep around code that adds 1 to each of
// its locals i32 locals. Each local is read inside every loop, so the
// compiler's SSA form gives every loop header a value for every local:
// loops × locals of them, for code of about 9 × locals + 3 × loops bytes.
func loopLocalsPolicy(out *abi.Output, loops, locals, funcs int) []byte {
	b := out.AppendBinary(nil)
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
	var calls []byte
	for i := range funcs {
		calls = wasmgen.Concat(calls, wasmgen.I32Const(1), []byte{wasmgen.OpCall}, wasmgen.U32(uint32(3+i)), []byte{wasmgen.OpDrop})
	}
	m := wasmgen.Policy(1, 8192, wasmgen.Concat(calls, wasmgen.Answer(answerAt, uint32(len(b)))))
	for range funcs {
		m.Funcs = append(m.Funcs, wasmgen.Func{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}, Body: body, Locals: uint32(locals)})
	}
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	return m.Bytes()
}

// TestR6UploadCannotExhaustCompileMemory: compiling a function costs
// memory and time in proportion to its loops (and blocks) times its
// locals, not to its size: a 48 KB module of one function with 5,000
// locals inside 1,000 nested loops took 533 MiB of heap and 20 s to
// check at upload, and its frame was past the stack limit, so it could
// never have run; a 256 KB function (MaxFunctionBody) can ask for tens of
// GiB, ending the gateway's process and every region's settlements. Such
// a module is refused before it is compiled, quickly, naming the
// function; the reference policies are far within the bound.
func TestR6UploadCannotExhaustCompileMemory(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	wasm := loopLocalsPolicy(&want, 1000, 5000, 1)

	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	before := heapInUse()
	start := time.Now()
	m, err := e.LoadCandidate(ctx, "152500", "bomb", wasm)
	took := time.Since(start)
	close(stop)
	<-done
	grew := int64(peak.Load()) - before
	t.Logf("%d-byte module: %v after %v, heap grew by up to %.1f MiB", len(wasm), err, took, float64(grew)/(1<<20))
	if m != nil {
		m.Close(ctx)
	}
	var le *LoadError
	if !errors.As(err, &le) || le.Check != "compile" || !strings.Contains(err.Error(), "function 3") {
		t.Errorf("Load = %v, want a compile refusal naming function 3", err)
	}
	if took > 2*time.Second || grew > 64<<20 {
		t.Errorf("checking the upload took %v and up to %.1f MiB of heap", took, float64(grew)/(1<<20))
	}
}

// branchLocalsPolicy is a policy whose settle calls a function that
// branches branches times out of one block and then reads each of its
// locals i32 locals: the block's end has a predecessor for each branch,
// and the compiler merges every local read after it from each of them.
func branchLocalsPolicy(out *abi.Output, branches, locals int) []byte {
	b := out.AppendBinary(nil)
	body := []byte{0x02, wasmgen.BlockVoid}
	for range branches {
		body = append(body, 0x20, 0, 0x0D, 0) // local.get 0; br_if 0
	}
	body = append(body, wasmgen.OpEnd, wasmgen.OpI32Const, 0)
	for k := uint32(1); k <= uint32(locals); k++ {
		body = wasmgen.Concat(body, []byte{0x20}, wasmgen.U32(k), []byte{0x6A}) // local.get k; i32.add
	}
	settle := wasmgen.Concat(wasmgen.I32Const(0), []byte{wasmgen.OpCall, 3, wasmgen.OpDrop}, wasmgen.Answer(answerAt, uint32(len(b))))
	m := wasmgen.Policy(1, 8192, settle)
	m.Funcs = append(m.Funcs, wasmgen.Func{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}, Body: body, Locals: uint32(locals)})
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	return m.Bytes()
}

// TestR6UploadCannotTakeMinutesToCheck: compiling takes time in
// proportion to the locals merged (at blocks, and at a block's end from
// each branch to it) times the locals: a 16 KB module of one function
// branching 2,000 times out of a block and then reading 2,000 locals took
// 32 s of a CPU to check, a 40 KB one more than 5 minutes, and a 256 KB
// function days, while the region's check held a CPU the gateway's
// settlements share (and each region may run one). Such a module is
// refused before it is compiled, naming the function.
func TestR6UploadCannotTakeMinutesToCheck(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	refusedBeforeCompile(t, e, "slow", branchLocalsPolicy(&abi.Output{Basic: 1}, 2000, 2000), "function 3", 2*time.Second)
}

// TestR6UploadCannotDeclareTooManyLocals: compiling a function takes
// time for each of its locals, and growing with the square of its
// parameters, and neither grows with the module's size: a local group
// declares up to 50,000 locals in a few bytes, and a type is shared. A 10
// KB module of 1,000 functions of 50,000 locals took 6 s of a CPU to
// check (16 MiB of them would take hours); a 100 KB module of one
// function taking 100,000 i32s took 23 s (one of 1,000,000 most of an
// hour). A type may have 1,000 parameters, as browsers allow, and a
// module's functions 1,048,576 locals (parameters included) in all (the
// reference policies: a few parameters, about 8,000 locals); a module
// past either is refused before it is compiled.
func TestR6UploadCannotDeclareTooManyLocals(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	b := want.AppendBinary(nil)
	params := make([]byte, 100_000)
	for i := range params {
		params[i] = wasmgen.I32
	}
	wide := wasmgen.Func{Params: params, Results: []byte{wasmgen.I32}, Body: []byte{0x20, 0}}
	roomy := wasmgen.Func{Body: nil, Locals: 50_000}
	for _, tc := range []struct {
		name  string
		funcs []wasmgen.Func
		say   string
	}{
		{"one function of 100,000 parameters", []wasmgen.Func{wide}, "parameters, limit"},
		{"1,000 functions of 50,000 locals", slices.Repeat([]wasmgen.Func{roomy}, 1000), "locals (parameters included) in all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(answerAt, uint32(len(b))))
			m.Funcs = append(m.Funcs, tc.funcs...)
			m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
			refusedBeforeCompile(t, e, "wide", m.Bytes(), tc.say, 2*time.Second)
		})
	}
}

// TestR6UploadCannotDeclareMillionsOfFunctions: each function costs the
// compiled module about 800 bytes and the check about 30 µs, whatever its
// size, and an empty one takes 4 bytes: a 4 MB module of a million empty
// functions took 32 s and 820 MiB (the process's peak) to check; one of
// 16 MiB (MaxModuleSize) would take about 3 GiB. A module may define 65,536 functions (the reference policies,
// built by the Go toolchain, define 1,654); one defining more is refused
// before it is compiled.
func TestR6UploadCannotDeclareMillionsOfFunctions(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	b := want.AppendBinary(nil)
	m := wasmgen.Policy(1, 8192, wasmgen.Answer(answerAt, uint32(len(b))))
	m.Funcs = append(m.Funcs, slices.Repeat([]wasmgen.Func{{}}, 200_000)...)
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	refusedBeforeCompile(t, e, "many", m.Bytes(), "functions", 2*time.Second)
}

// withTypes returns wasm with n more types () -> () at the end of its type
// section (wasmgen declares each signature once).
func withTypes(wasm []byte, n int) []byte {
	uleb := func(b []byte) (v uint64, k int) {
		for i := 0; ; i++ {
			v |= uint64(b[i]&0x7f) << (7 * i)
			if b[i]&0x80 == 0 {
				return v, i + 1
			}
		}
	}
	out := append([]byte(nil), wasm[:8]...)
	for r := wasm[8:]; len(r) > 0; {
		id := r[0]
		size, k := uleb(r[1:])
		content := r[1+k : 1+k+int(size)]
		r = r[1+k+int(size):]
		if id == 1 {
			count, kk := uleb(content)
			grown := append(wasmgen.U32(uint32(count)+uint32(n)), content[kk:]...)
			content = append(grown, bytes.Repeat([]byte{0x60, 0, 0}, n)...)
		}
		out = append(out, id)
		out = append(out, wasmgen.U32(uint32(len(content)))...)
		out = append(out, content...)
	}
	return out
}

// TestR6UploadCannotDeclareMillionsOfTypesOrImports: compiling each
// function walks every type of the module, and instrumenting copied the
// type and function sections again for each imported function it
// charges, so checking a module took time growing with functions × types
// and with imports squared, neither bounded by its size: 10,000 imports
// of random_get (360 KB) took 4.8 s and 100,000 of them more than 5
// minutes; 1,000 empty functions with 100,000 types (300 KB) 2.8 s, and
// 65,536 functions with 5 million types would take hours. A module may
// declare 1,024 types and import 1,024 functions (the reference
// policies: 14 and 16; WASI has 46 functions); one declaring more is
// refused before it is instrumented.
func TestR6UploadCannotDeclareMillionsOfTypesOrImports(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	b := want.AppendBinary(nil)
	policy := func() *wasmgen.Module {
		m := wasmgen.Policy(1, 8192, wasmgen.Answer(answerAt, uint32(len(b))))
		m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
		return m
	}
	imports := policy()
	imports.Imports = slices.Repeat([]wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "random_get",
		Params: []byte{wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}}, 10_000)
	types := policy()
	types.Funcs = append(types.Funcs, slices.Repeat([]wasmgen.Func{{}}, 1000)...)
	for _, tc := range []struct {
		name string
		wasm []byte
		say  string
	}{
		{"10,000 imports", imports.Bytes(), "imports, limit"},
		{"100,000 types", withTypes(types.Bytes(), 100_000), "types, limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedBeforeCompile(t, e, "many", tc.wasm, tc.say, time.Second)
		})
	}
}

// TestR6DataSegmentsAreBounded: each data segment costs every instance a
// slot (24 bytes) outside the memory limit, as an element does, and takes
// 3 bytes of the module: a 6 MB module of 2,000,000 one-byte passive
// segments held 46 MiB an instance and 103 MiB compiled (16 MiB of them
// about 120 MiB an instance, MaxInstances of them per version). A module
// may declare 262,144 data segments (the reference policies, built by the
// Go toolchain, 28,451); one declaring more is refused before it is
// compiled.
func TestR6DataSegmentsAreBounded(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{MaxInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	want := abi.Output{Basic: 1}
	b := want.AppendBinary(nil)
	m := wasmgen.Policy(1, 8192, wasmgen.Answer(answerAt, uint32(len(b))))
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	m.Passive = slices.Repeat([][]byte{{1}}, 2_000_000)
	wasm := m.Bytes()
	before := heapInUse()
	mod, err := e.LoadCandidate(ctx, "152500", "data", wasm)
	t.Logf("%d-byte module: %v; heap %.1f MiB more", len(wasm), err, float64(heapInUse()-before)/(1<<20))
	if mod != nil {
		mod.Close(ctx)
	}
	var le *LoadError
	if !errors.As(err, &le) || le.Check != "compile" || !strings.Contains(err.Error(), "data segments, limit") {
		t.Errorf("Load = %v, want a compile refusal naming the data segments", err)
	}
}

// refusedBeforeCompile loads wasm as a candidate version of 152500 and
// fails t unless the check refuses it as "compile", saying say, within
// limit (a refusal made before compiling takes milliseconds).
func refusedBeforeCompile(t *testing.T, e *Engine, version string, wasm []byte, say string, limit time.Duration) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	mod, err := e.LoadCandidate(ctx, "152500", version, wasm)
	took := time.Since(start)
	t.Logf("%d-byte module: %v after %v", len(wasm), err, took)
	if mod != nil {
		mod.Close(ctx)
	}
	var le *LoadError
	if !errors.As(err, &le) || le.Check != "compile" || !strings.Contains(err.Error(), say) {
		t.Errorf("Load = %v, want a compile refusal saying %q", err, say)
	}
	if took > limit {
		t.Errorf("checking the upload took %v", took)
	}
}
