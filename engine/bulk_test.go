package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// TestBulkMemoryIsMetered: memory.fill, memory.copy and memory.init run
// inside the compiled code without a metered point, so they must pay for
// the bytes they touch, not one step a loop iteration: a loop filling 16 MiB
// an iteration would otherwise run its 10,000 steps for seconds (with the
// default budget and 64 MiB, for hours, holding a CPU and the Go
// runtime's stop-the-world, so the whole gateway).
func TestBulkMemoryIsMetered(t *testing.T) {
	const n = 16 << 20
	for _, tc := range []struct {
		name string
		op   []byte
	}{
		{"memory.fill", []byte{0xFC, 11, 0}},
		{"memory.copy", []byte{0xFC, 10, 0, 0}},
		{"memory.init", []byte{0xFC, 8, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(context.Background(), Config{CallFuel: 10_000, MaxInstances: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close(context.Background())
			size := int32(n)
			if tc.name == "memory.init" {
				size = n / 2 // a module holds at most 16 MiB
			}
			body := wasmgen.Concat([]byte{wasmgen.OpLoop, wasmgen.BlockVoid},
				wasmgen.I32Const(0), wasmgen.I32Const(0), wasmgen.I32Const(size), tc.op,
				[]byte{wasmgen.OpBr, 0, wasmgen.OpEnd}, wasmgen.I64Const(0))
			mod := wasmgen.Policy(1, 8192, body)
			mod.MemoryMin = 2 * n >> 16
			if tc.name == "memory.init" {
				mod.Passive = [][]byte{make([]byte, size)}
			}
			m, err := e.Load(context.Background(), "152500", "bulk", mod.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			in, enc := testInput()
			var out abi.Output
			began := time.Now()
			err = m.Call(context.Background(), in, enc, &out)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != FailTimeout {
				t.Fatalf("Call = %v, want a timeout", err)
			}
			if d := time.Since(began); d > time.Second {
				t.Fatalf("a %s loop was stopped after %v", tc.name, d)
			}
		})
	}
}

// TestTablesAreBounded: a table's references live outside the memory limit
// (eight bytes each), so a module must not declare millions of them nor
// grow or fill one from its code: table.grow took a module to 32 GiB, and
// a table.fill loop ran its budget for hours as the bulk instructions did.
func TestTablesAreBounded(t *testing.T) {
	e := newTestEngine(t)
	grow := wasmgen.Concat([]byte{0xD0, 0x70}, wasmgen.I32Const(1<<24), []byte{0xFC, 15, 0, wasmgen.OpDrop}, wasmgen.I64Const(0))
	fill := wasmgen.Concat([]byte{wasmgen.OpLoop, wasmgen.BlockVoid}, wasmgen.I32Const(0), []byte{0xD0, 0x70}, wasmgen.I32Const(1<<20),
		[]byte{0xFC, 17, 0, wasmgen.OpBr, 0, wasmgen.OpEnd}, wasmgen.I64Const(0))
	for _, tc := range []struct {
		name string
		min  uint32
		body []byte
	}{
		{"a table of 2^27 references", 1 << 27, wasmgen.Answer(0, 0)},
		{"table.grow", 0, grow},
		{"table.fill", 1 << 20, fill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod := wasmgen.Policy(1, 8192, tc.body)
			mod.Table = &wasmgen.Limits{Min: tc.min}
			m, err := e.Load(context.Background(), "152500", "tables", mod.Bytes())
			if err == nil {
				m.Close(context.Background())
				t.Fatal("loaded")
			}
			var le *LoadError
			if !errors.As(err, &le) || le.Check != "compile" {
				t.Fatalf("Load = %v, want a refusal at compile", err)
			}
		})
	}
	// A table the size Go's toolchain emits still loads.
	mod := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	mod.Table = &wasmgen.Limits{Min: 6000}
	m, err := e.Load(context.Background(), "152500", "table", mod.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m.Close(context.Background())
}

// TestFuelGlobalIsNotTheModules: the fuel global is added after the
// module's own globals, so a module naming one global past its own is
// invalid as uploaded but would, once instrumented, set its own budget
// and loop forever. Such a module is refused, as an uploaded module that
// calls a function past its own is.
func TestFuelGlobalIsNotTheModules(t *testing.T) {
	e := newTestEngine(t)
	refuel := wasmgen.Concat(wasmgen.I64Const(1<<62), []byte{0x24, 0}, wasmgen.Answer(0, 0))
	callPast := wasmgen.Concat(wasmgen.I32Const(0), wasmgen.I32Const(0), wasmgen.I32Const(0), []byte{wasmgen.OpCall, 3, wasmgen.OpDrop, wasmgen.OpDrop, wasmgen.OpDrop}, wasmgen.Answer(0, 0))
	for name, body := range map[string][]byte{"global.set past its globals": refuel, "call past its functions": callPast} {
		t.Run(name, func(t *testing.T) {
			for _, deadline := range []bool{false, true} {
				e := e
				if deadline {
					e = newTestEngine(t, true)
				}
				m, err := e.Load(context.Background(), "152500", "refuel", wasmgen.Policy(1, 8192, body).Bytes())
				if err == nil {
					m.Close(context.Background())
					t.Fatalf("deadline %v: an invalid module was loaded", deadline)
				}
			}
		})
	}
}

// TestSlowModuleQueueIsBounded: after a call ran out of time, the module's
// calls run one at a time; callers beyond a few are refused at once
// rather than queue behind it, so a region whose module loops can neither
// make its own settlements wait without bound nor pile up requests until
// the gateway's in-flight limit refuses every region's.
func TestSlowModuleQueueIsBounded(t *testing.T) {
	e, err := New(context.Background(), Config{MaxInstances: 4}) // the default budget: a call of tens of ms
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	m, err := e.Load(context.Background(), "152500", "loop", wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	in, enc := testInput()
	var out abi.Output
	began := time.Now()
	if err := m.Call(context.Background(), in, enc, &out); err == nil {
		t.Fatal("a looping call answered")
	}
	one := time.Since(began)
	const callers = 200
	took := make(chan time.Duration, callers)
	for i := 0; i < callers; i++ {
		go func() {
			var out abi.Output
			began := time.Now()
			err := m.Call(context.Background(), in, enc, &out)
			var ce *CallError
			if !errors.As(err, &ce) || (ce.Kind != FailTimeout && ce.Kind != FailUnavailable) {
				t.Errorf("Call = %v", err)
			}
			took <- time.Since(began)
		}()
	}
	var longest time.Duration
	for i := 0; i < callers; i++ {
		longest = max(longest, <-took)
	}
	if limit := time.Duration(2*e.cfg.MaxInstances+2)*one + 50*time.Millisecond; longest > limit {
		t.Fatalf("a caller waited %v behind the looping module (one call takes %v; limit %v)", longest, one, limit)
	}
}

// TestCheckBoundsCountersPerYear: an Input carries at most 256 counters
// (ABI.md), so an answer must not give the person a 257th for the year:
// every later settlement's Input would break the ABI and the region's
// modules, even a good version rolled back to, could no longer settle
// that person.
func TestCheckBoundsCountersPerYear(t *testing.T) {
	in, _ := testInput()
	in.Counters = nil
	for i := 0; i < abi.MaxCounters; i++ {
		in.Counters = append(in.Counters, abi.Counter{Name: fmt.Sprintf("c%03d", i), Value: 1})
	}
	if err := Check(in, &abi.Output{Changes: []abi.Counter{{Name: "c000", Value: 1}}}); err != nil {
		t.Fatalf("a change of an existing counter: %v", err)
	}
	err := Check(in, &abi.Output{Changes: []abi.Counter{{Name: "new", Value: 1}}})
	if err == nil || err.Rule != "counter_range" {
		t.Fatalf("a 257th counter: %v, want counter_range", err)
	}
}
