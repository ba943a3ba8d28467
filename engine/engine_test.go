package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

const answerAt = 1024

// newTestEngine returns an engine with small limits; deadline picks the
// wall-clock time bound instead of metering.
func newTestEngine(t testing.TB, deadline ...bool) *Engine {
	t.Helper()
	cfg := Config{CallFuel: 1_000_000, InitFuel: 200_000_000, MaxInstances: 4}
	if len(deadline) > 0 && deadline[0] {
		cfg = Config{Deadline: true, CallTimeout: 50 * time.Millisecond, InitTimeout: 300 * time.Millisecond, MaxInstances: 4}
	}
	e, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// answering is a module whose settle always answers out.
func answering(out *abi.Output) []byte {
	b := out.AppendBinary(nil)
	m := wasmgen.Policy(1, 8192, wasmgen.Answer(answerAt, uint32(len(b))))
	m.Data = []wasmgen.Data{{Offset: answerAt, Bytes: b}}
	return m.Bytes()
}

func testInput() (*abi.Input, []byte) {
	in := &abi.Input{
		Date:       20251105,
		UseAccount: true,
		Person:     abi.Person{Scheme: abi.SchemeEmployee, AccountBalance: 500_00},
		Visit:      abi.Visit{Type: abi.VisitOutpatient, VisitDate: 20251105},
		Hospital:   abi.Hospital{Level: 1, TreatingRegion: "371621", InsuredRegion: "371600"},
		Sums:       abi.Sums{Total: 1000_00, Eligible: 1000_00},
		Lines:      []abi.Line{{Code: "XA01", Class: abi.ClassA, Listed: true, Amount: 1000_00, Eligible: 1000_00}},
		Counters:   []abi.Counter{{Name: "ded.out", Value: 100_00}},
	}
	return in, in.AppendBinary(nil)
}

func TestCallGoodAnswer(t *testing.T) {
	e := newTestEngine(t)
	want := abi.Output{Deductible: 200_00, Basic: 640_00, Account: 160_00,
		Changes: []abi.Counter{{Name: "ded.out", Value: 200_00}}, Notes: []string{"deductible 200.00"}}
	m, err := e.Load(context.Background(), "371600", "v1", answering(&want))
	if err != nil {
		t.Fatal(err)
	}
	in, enc := testInput()
	var out abi.Output
	for i := 0; i < 3; i++ {
		if err := m.Call(context.Background(), in, enc, &out); err != nil {
			t.Fatal(err)
		}
	}
	if out.Basic != want.Basic || out.Account != want.Account || len(out.Changes) != 1 || out.Notes[0] != "deductible 200.00" {
		t.Fatalf("got %+v", out)
	}
	if m.Live() != 1 {
		t.Fatalf("sequential calls should reuse one instance, live = %d", m.Live())
	}
}

func TestLoadRefusals(t *testing.T) {
	t.Run("metered", func(t *testing.T) { testLoadRefusals(t, newTestEngine(t)) })
	t.Run("deadline", func(t *testing.T) { testLoadRefusals(t, newTestEngine(t, true)) })
}

func testLoadRefusals(t *testing.T, e *Engine) {
	good := answering(&abi.Output{})
	start := uint32(3)
	big := uint32(65536)
	tests := []struct {
		name      string
		wasm      []byte
		wantCheck string
	}{
		{"garbage", []byte("not wasm at all"), "compile"},
		{"too large", append(good, make([]byte, e.cfg.MaxModuleSize)...), "size"},
		{"forbidden import", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.Imports = []wasmgen.Import{{Module: "env", Name: "now", Results: []byte{wasmgen.I64}}}
			return m.Bytes()
		}(), "imports"},
		{"wasi is allowed but sockets are not wasi", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.Imports = []wasmgen.Import{{Module: "wasi_unstable", Name: "sock_open", Results: []byte{wasmgen.I32}}}
			return m.Bytes()
		}(), "imports"},
		{"imported global", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "clock", Global: wasmgen.I64}}
			return m.Bytes()
		}(), "imports"},
		{"4 GiB memory", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.MemoryMin, m.MemoryMax = big, &big
			return m.Bytes()
		}(), "memory"},
		{"no memory", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.NoMemory = true
			return m.Bytes()
		}(), "exports"},
		{"missing settle", (&wasmgen.Module{MemoryMin: 1, Funcs: []wasmgen.Func{{Results: []byte{wasmgen.I32}, Body: wasmgen.I32Const(1), Export: "abi_version"}}}).Bytes(), "exports"},
		{"wrong abi version", wasmgen.Policy(2, 8192, wasmgen.Answer(0, 0)).Bytes(), "abi_version"},
		{"start function loops", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.Funcs = append(m.Funcs, wasmgen.Func{Body: wasmgen.Forever()})
			m.Start = &start
			return m.Bytes()
		}(), "instantiate"},
		{"_initialize loops", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.Funcs = append(m.Funcs, wasmgen.Func{Body: wasmgen.Forever(), Export: "_initialize"})
			return m.Bytes()
		}(), "instantiate"},
		{"_initialize traps", func() []byte {
			m := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
			m.Funcs = append(m.Funcs, wasmgen.Func{Body: []byte{wasmgen.OpUnreachable}, Export: "_initialize"})
			return m.Bytes()
		}(), "instantiate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			began := time.Now()
			m, err := e.Load(context.Background(), "152500", "bad", tt.wasm)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load = %v, %v; want a LoadError", m, err)
			}
			if le.Check != tt.wantCheck {
				t.Fatalf("check = %s (%v), want %s", le.Check, err, tt.wantCheck)
			}
			if d := time.Since(began); d > 5*time.Second {
				t.Fatalf("refusal took %v", d)
			}
		})
	}
}

func TestHostileCalls(t *testing.T) {
	t.Run("metered", func(t *testing.T) { testHostileCalls(t, newTestEngine(t)) })
	t.Run("deadline", func(t *testing.T) { testHostileCalls(t, newTestEngine(t, true)) })
}

func testHostileCalls(t *testing.T, e *Engine) {
	in, enc := testInput()
	answer := func(out abi.Output) []byte { return answering(&out) }
	garbage := wasmgen.Policy(1, 8192, wasmgen.Answer(answerAt, 7))
	garbage.Data = []wasmgen.Data{{Offset: answerAt, Bytes: []byte("garbage")}}
	grow := wasmgen.Concat([]byte{wasmgen.OpLoop, wasmgen.BlockVoid}, wasmgen.I32Const(1),
		[]byte{wasmgen.OpMemoryGrow, 0, wasmgen.OpDrop, wasmgen.OpBr, 0, wasmgen.OpEnd}, wasmgen.I64Const(0))
	recurse := wasmgen.Policy(1, 8192, []byte{0x20, 0, wasmgen.OpCall, 2})
	tests := []struct {
		name     string
		wasm     []byte
		wantKind FailKind
		wantRule string
	}{
		{"infinite loop", wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes(), FailTimeout, ""},
		{"memory growth bomb", wasmgen.Policy(1, 8192, grow).Bytes(), FailTimeout, ""},
		{"trap", wasmgen.Policy(1, 8192, []byte{wasmgen.OpUnreachable}).Bytes(), FailTrap, ""},
		{"runaway recursion", recurse.Bytes(), FailTrap, ""},
		{"input buffer outside memory", wasmgen.Policy(1, -16, wasmgen.Answer(0, 0)).Bytes(), FailMalformed, ""},
		{"answer outside memory", wasmgen.Policy(1, 8192, wasmgen.Answer(1<<30, 64)).Bytes(), FailMalformed, ""},
		{"undecodable answer", garbage.Bytes(), FailMalformed, ""},
		{"huge answer", wasmgen.Policy(1, 8192, wasmgen.Answer(0, 2*65536-1)).Bytes(), FailMalformed, ""},
		{"negative amount", answer(abi.Output{Basic: -1}), FailCheck, "non_negative"},
		{"deductible above eligible", answer(abi.Output{Deductible: 1000_01}), FailCheck, "deductible_within_eligible"},
		{"funds above eligible", answer(abi.Output{Basic: 900_00, Serious: 100_01}), FailCheck, "funds_within_eligible"},
		{"account above balance", answer(abi.Output{Account: 500_01}), FailCheck, "account_within_balance"},
		{"sums do not add up", answer(abi.Output{Basic: 900_00, Account: 100_01}), FailCheck, "sum"},
		{"bad counter name", answer(abi.Output{Changes: []abi.Counter{{Name: "Bad Name", Value: 1}}}), FailCheck, "counter_name"},
		{"counter repeated", answer(abi.Output{Changes: []abi.Counter{{Name: "a", Value: 1}, {Name: "a", Value: 1}}}), FailCheck, "counter_name"},
		{"counter negative", answer(abi.Output{Changes: []abi.Counter{{Name: "ded.out", Value: -100_01}}}), FailCheck, "counter_range"},
		{"refusal", answer(abi.Output{Refusal: "person not covered"}), FailRefused, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := e.Load(context.Background(), "152500", "hostile", tt.wasm)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			var out abi.Output
			began := time.Now()
			err = m.Call(context.Background(), in, enc, &out)
			elapsed := time.Since(began)
			var ce *CallError
			if !errors.As(err, &ce) {
				t.Fatalf("Call = %v, want a CallError", err)
			}
			wantKind := tt.wantKind
			if tt.name == "runaway recursion" && !e.cfg.Deadline {
				wantKind = FailStack // metered: the stack limit, long before wazero's
			}
			if ce.Kind != wantKind || ce.Rule != tt.wantRule {
				t.Fatalf("Call = %v (kind %v rule %q), want kind %v rule %q", err, ce.Kind, ce.Rule, wantKind, tt.wantRule)
			}
			// In Deadline mode a runaway recursion ends when wazero's stack, grown by
			// copying, overflows: memory-bound, 0.04–1.0 s on the 2-CPU
			// VM while other tests and a ledger prefill ran (2.3 s once).
			// The bound is that it ends, not how fast a busy machine
			// copies a stack.
			limit := time.Second
			if tt.name == "runaway recursion" {
				limit = 5 * time.Second
			}
			if elapsed > limit {
				t.Fatalf("failure took %v (limit %v)", elapsed, limit)
			}
			// An answer breaking a host check discards its instance too
			// (ABI.md): whatever state led it there is not reused.
			if tt.wantKind != FailRefused && m.Live() != 0 {
				t.Fatalf("a failed instance must be discarded; live = %d", m.Live())
			}
			if !strings.Contains(err.Error(), "152500/hostile") {
				t.Fatalf("error %q does not name the policy", err)
			}
		})
	}
}

// TestHostileDoesNotStopOthers runs a looping module and a good one at once.
func TestHostileDoesNotStopOthers(t *testing.T) {
	e := newTestEngine(t)
	in, enc := testInput()
	good, err := e.Load(context.Background(), "371600", "v1", answering(&abi.Output{Basic: 1}))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := e.Load(context.Background(), "152500", "loop", wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out abi.Output
			_ = bad.Call(context.Background(), in, enc, &out)
		}()
	}
	began := time.Now()
	var out abi.Output
	for i := 0; i < 200; i++ {
		if err := good.Call(context.Background(), in, enc, &out); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("200 good calls took %v while another region looped", d)
	}
	wg.Wait()
}

func TestPoliciesLookup(t *testing.T) {
	var p Policies
	p.Put("371600", Version{Name: "v2024", EffectiveFrom: 20240101})
	p.Put("371600", Version{Name: "v2023", EffectiveFrom: 20230101})
	for _, tt := range []struct {
		date abi.Date
		want string
	}{{20221231, ""}, {20230101, "v2023"}, {20231231, "v2023"}, {20240101, "v2024"}, {20261123, "v2024"}} {
		v, ok := p.Lookup("371600", tt.date)
		if v.Name != tt.want || ok != (tt.want != "") {
			t.Errorf("Lookup(%d) = %q, %v; want %q", tt.date, v.Name, ok, tt.want)
		}
	}
	p.Remove("371600", "v2024")
	if v, _ := p.Lookup("371600", 20261123); v.Name != "v2023" {
		t.Errorf("after rollback Lookup = %q, want v2023", v.Name)
	}
	if _, ok := p.Lookup("152500", 20261123); ok {
		t.Error("unknown region found")
	}
}

// The input buffer is asked for once and reused while inputs fit in it
// (ABI.md); a larger input asks again.
func TestInputBufferReused(t *testing.T) {
	e := newTestEngine(t)
	want := abi.Output{Basic: 1}
	m, err := e.Load(context.Background(), "371600", "v1", answering(&want))
	if err != nil {
		t.Fatal(err)
	}
	inCap := func() uint32 {
		inst, err := m.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer m.put(inst)
		return inst.inCap
	}
	in, enc := testInput()
	var out abi.Output
	for i := 0; i < 3; i++ {
		if err := m.Call(context.Background(), in, enc, &out); err != nil || out.Basic != 1 {
			t.Fatalf("call %d: %v %+v", i, err, out)
		}
	}
	if got := inCap(); got != minInputBuffer {
		t.Fatalf("input buffer of %d bytes, want %d", got, minInputBuffer)
	}
	// An input larger than the buffer (the module's buffer at 8192 has
	// room for it in its one page).
	for len(in.Lines) < 600 {
		in.Lines = append(in.Lines, in.Lines[0])
	}
	in.Sums.Total *= int64(len(in.Lines))
	in.Sums.Eligible *= int64(len(in.Lines))
	big := in.AppendBinary(nil)
	if len(big) <= minInputBuffer || 8192+len(big) > 65536 {
		t.Fatalf("test input of %d bytes", len(big))
	}
	if err := m.Call(context.Background(), in, big, &out); err != nil || out.Basic != 1 {
		t.Fatalf("large input: %v %+v", err, out)
	}
	if got := inCap(); got != uint32(len(big)) {
		t.Fatalf("input buffer of %d bytes after a %d-byte input", got, len(big))
	}
}

// fatLoopPolicy is a settle export that loops forever over a body of k
// stores.
func fatLoopPolicy(k int) []byte {
	store := wasmgen.Concat(wasmgen.I32Const(64), wasmgen.I32Const(7), []byte{0x36, 2, 0}) // i32.store
	body := []byte{wasmgen.OpLoop, wasmgen.BlockVoid}
	for i := 0; i < k; i++ {
		body = append(body, store...)
	}
	body = append(body, wasmgen.OpBr, 0, wasmgen.OpEnd)
	return wasmgen.Policy(1, 8192, wasmgen.Concat(body, wasmgen.I64Const(0))).Bytes()
}

// TestLongLoopBodyIsBounded: with the default budget, a loop whose body is
// thousands of instructions is stopped as soon as a tight one is (within
// a few hundred milliseconds on this project's machine), not after its
// body's length times the budget (50 s here when an iteration cost one
// step).
func TestLongLoopBodyIsBounded(t *testing.T) {
	e, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	in, enc := testInput()
	for _, k := range []int{1, 10_000} {
		m, err := e.Load(context.Background(), "152500", fmt.Sprintf("fat%d", k), fatLoopPolicy(k))
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		err = m.Call(context.Background(), in, enc, &abi.Output{})
		took := time.Since(began)
		m.Close(context.Background())
		var ce *CallError
		if !errors.As(err, &ce) || ce.Kind != FailTimeout {
			t.Fatalf("body of %d stores: %v, want a timeout", k, err)
		}
		if took > 5*time.Second {
			t.Errorf("body of %d stores stopped after %v", k, took)
		}
		t.Logf("body of %d stores: stopped after %v", k, took)
	}
}

// TestProcExitIsATrap: whatever code a module passes to proc_exit, its
// settlement fails as a trap; the codes wazero uses for its own deadline
// and cancellation do not make it a timeout (and serial mode) or a 503.
func TestProcExitIsATrap(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		e := newTestEngine(t, deadline)
		in, enc := testInput()
		for _, code := range []uint32{0, 3, 0xffffffff, 0xefffffff} {
			m := wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.I32Const(int32(code)), []byte{wasmgen.OpCall, 0}, wasmgen.I64Const(0)))
			m.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "proc_exit", Params: []byte{wasmgen.I32}}}
			mod, err := e.Load(context.Background(), "152500", fmt.Sprintf("exit%x", code), m.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			err = mod.Call(context.Background(), in, enc, &abi.Output{})
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != FailTrap {
				t.Errorf("deadline mode %v, proc_exit(%#x): %v, want a trap", deadline, code, err)
			}
			mod.Close(context.Background())
		}
	}
}
