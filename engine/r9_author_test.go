package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// answeringOutput is a module whose settle answers the encoding of out.
func answeringOutput(out *abi.Output) []byte {
	enc := out.AppendBinary(nil)
	mod := wasmgen.Policy(1, 8192, wasmgen.Answer(0, uint32(len(enc))))
	mod.Data = []wasmgen.Data{{Offset: 0, Bytes: enc}}
	return mod.Bytes()
}

// TestR9AnswerPastALimitNamesTheRule: an answer with more notes or
// counter changes than ABI.md allows breaks the host rule it names
// (`notes`, `counter_range`: policy_answer_invalid naming it), and one
// with a string too long says which limit: each was a malformed answer
// reading only "abi: message exceeds a limit", which left a region's
// author to guess what was too large.
func TestR9AnswerPastALimitNamesTheRule(t *testing.T) {
	e := newTestEngine(t)
	in := &abi.Input{Date: 20261109, Visit: abi.Visit{Type: abi.VisitInpatient}, Sums: abi.Sums{Total: 100000, Eligible: 100000}}
	notes := &abi.Output{}
	for range abi.MaxNotes + 1 {
		notes.Note("n")
	}
	changes := &abi.Output{}
	for i := range abi.MaxCounters + 1 {
		changes.Add("c"+strings.Repeat("x", i%20)+string(rune('a'+i%26))+string(rune('a'+i/26)), 1)
	}
	long := (&abi.Output{}).AppendBinary(nil)
	// A refusal of 5,000 bytes, as a guest not using the SDK may send.
	long = append(long[:4], append([]byte{0x88, 0x13}, make([]byte, 5000)...)...)
	long = append(long, (&abi.Output{}).AppendBinary(nil)[6:]...)
	longMod := wasmgen.Policy(1, 8192, wasmgen.Answer(0, uint32(len(long))))
	longMod.Data = []wasmgen.Data{{Offset: 0, Bytes: long}}

	for _, tc := range []struct {
		name   string
		wasm   []byte
		kind   FailKind
		rule   string
		detail string
	}{
		{"257 notes", answeringOutput(notes), FailCheck, "notes", "257 notes, limit 256"},
		{"257 counter changes", answeringOutput(changes), FailCheck, "counter_range", "257 counter changes, limit 256"},
		{"a refusal of 5000 bytes", longMod.Bytes(), FailMalformed, "", "string of 5000 bytes, limit 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := e.Load(context.Background(), "410100", "v1", tc.wasm)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			var out abi.Output
			err = m.Call(context.Background(), in, in.AppendBinary(nil), &out)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != tc.kind || ce.Rule != tc.rule || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("Call = %v, want kind %v rule %q saying %q", err, tc.kind, tc.rule, tc.detail)
			}
		})
	}
}

// TestR9CommandModuleRefusalSaysHowToBuild: a Go policy built as a WASI
// command (GOOS=wasip1 go build without -buildmode=c-shared, the
// toolchain's default) exports _start and no _initialize, so its runtime
// is never initialized and abi_version traps in runtime.notInitialized.
// The refusal read "engine: policy / trap: abi_version: wasm error:
// unreachable" (no region, no version, no cause); it now says the module
// is a command and how to build it. A wrong export's signature says what
// it is and what ABI.md wants.
func TestR9CommandModuleRefusalSaysHowToBuild(t *testing.T) {
	e := newTestEngine(t)
	cmd := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	cmd.Funcs[0].Body = []byte{wasmgen.OpUnreachable}
	cmd.Funcs = append(cmd.Funcs, wasmgen.Func{Export: "_start"})
	_, err := e.Load(context.Background(), "410100", "v1", cmd.Bytes())
	var le *LoadError
	if !errors.As(err, &le) || le.Check != "abi_version" {
		t.Fatalf("Load = %v, want a refusal at abi_version", err)
	}
	msg := le.All[0].Message
	for _, want := range []string{"_start", "-buildmode=c-shared", "unreachable"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "policy /") {
		t.Errorf("refusal %q names an empty region and version", msg)
	}

	sig := wasmgen.Policy(1, 8192, wasmgen.I32Const(0))
	sig.Funcs[2].Results = []byte{wasmgen.I32}
	_, err = e.Load(context.Background(), "410100", "v1", sig.Bytes())
	if !errors.As(err, &le) || le.Check != "exports" || !strings.Contains(le.All[0].Message, "(i32) -> (i32)") ||
		!strings.Contains(le.All[0].Message, "(i32) -> (i64)") {
		t.Fatalf("Load = %v, want a refusal at exports saying the signature found and the one wanted", err)
	}
}

// TestR9TrapQuotesWhatTheModuleWroteToStderr: a Go policy that panics
// (a nil map, an index out of range) or runs out of memory writes the
// reason to stderr and traps; the host discarded stderr, so the region's
// check said only "wasm error: unreachable" and a stack of function
// names: not the panic's value, not that memory ran out. A failed call
// now quotes the first bytes the module wrote to stderr during it.
func TestR9TrapQuotesWhatTheModuleWroteToStderr(t *testing.T) {
	e := newTestEngine(t)
	const msg = "panic: assignment to entry in nil map"
	write := wasmgen.Concat(
		wasmgen.I32Const(2), wasmgen.I32Const(0), wasmgen.I32Const(1), wasmgen.I32Const(8),
		[]byte{wasmgen.OpCall, 0, wasmgen.OpDrop})
	mod := wasmgen.Policy(1, 8192, wasmgen.Concat(write, []byte{wasmgen.OpUnreachable}))
	mod.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "fd_write",
		Params: []byte{wasmgen.I32, wasmgen.I32, wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}}
	iov := []byte{16, 0, 0, 0, byte(len(msg)), 0, 0, 0}
	mod.Data = []wasmgen.Data{{Offset: 0, Bytes: iov}, {Offset: 16, Bytes: []byte(msg)}}
	m, err := e.Load(context.Background(), "410100", "v1", mod.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	// A panic in the module's start function (a Go init) likewise.
	start := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	start.Imports = mod.Imports
	start.Data = mod.Data
	start.Funcs = append(start.Funcs, wasmgen.Func{Body: wasmgen.Concat(write, []byte{wasmgen.OpUnreachable}), Export: "_initialize"})
	_, err = e.Load(context.Background(), "410100", "v1", start.Bytes())
	var le *LoadError
	if !errors.As(err, &le) || le.Check != "instantiate" || !strings.Contains(le.All[0].Message, msg) {
		t.Fatalf("Load = %v, want a refusal at instantiate quoting %q", err, msg)
	}

	in := &abi.Input{Date: 20261109, Visit: abi.Visit{Type: abi.VisitInpatient}}
	var out abi.Output
	for range 2 { // a fresh instance each time (the failed one is discarded)
		err = m.Call(context.Background(), in, in.AppendBinary(nil), &out)
		var ce *CallError
		if !errors.As(err, &ce) || ce.Kind != FailTrap || !strings.Contains(err.Error(), msg) ||
			strings.Count(err.Error(), "nil map") != 1 {
			t.Fatalf("Call = %v, want a trap quoting %q once", err, msg)
		}
	}
}

// TestR9HostCheckSaysTheAmounts: an answer breaking funds_within_eligible,
// sum or counter_range was refused naming the rule and the limit only
// ("basic + serious + assistance exceeds eligible 100000 fen"), not the
// amounts the policy answered, so its author could not tell which step
// overpaid. Each now says them.
func TestR9HostCheckSaysTheAmounts(t *testing.T) {
	in := &abi.Input{UseAccount: true, Person: abi.Person{AccountBalance: 50000},
		Sums:     abi.Sums{Total: 120000, Eligible: 100000},
		Counters: []abi.Counter{{Name: "cap", Value: 300}}}
	for _, tc := range []struct {
		out  abi.Output
		rule string
		says []string
	}{
		{abi.Output{Basic: 70000, Serious: 20000, Assistance: 10001}, "funds_within_eligible", []string{"70000", "20000", "10001", "100001"}},
		{abi.Output{Basic: 90000, Account: 30001}, "sum", []string{"90000", "30001", "120000"}},
		{abi.Output{Changes: []abi.Counter{{Name: "cap", Value: -301}}}, "counter_range", []string{"300", "-301"}},
	} {
		err := Check(in, &tc.out)
		if err == nil || err.Rule != tc.rule {
			t.Fatalf("Check = %v, want rule %s", err, tc.rule)
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Detail, s) {
				t.Errorf("%s: %q does not say %s", tc.rule, err.Detail, s)
			}
		}
	}
}
