package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"medgate/engine/abi"
)

// loadAnswering loads a module answering Basic 1 into e.
func loadAnswering(t *testing.T, e *Engine) *Module {
	t.Helper()
	want := abi.Output{Basic: 1}
	m, err := e.Load(context.Background(), "371600", "v1", answering(&want))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A call borrows the instance returned last: its memory is the likeliest to
// be in a CPU's cache (module.go).
func TestPoolLendsLastReturned(t *testing.T) {
	m := loadAnswering(t, newTestEngine(t))
	ctx := context.Background()
	a, err := m.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.get(ctx) // none idle: a second instance
	if err != nil {
		t.Fatal(err)
	}
	if a == b || m.Live() != 2 {
		t.Fatalf("two borrows gave the same instance or %d live", m.Live())
	}
	m.put(a)
	m.put(b)
	for range 3 {
		got, err := m.get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != b {
			t.Fatal("the pool lent an instance other than the one returned last")
		}
		m.put(got)
	}
	if m.Live() != 2 {
		t.Fatalf("%d live instances, want 2", m.Live())
	}
}

// With every instance lent, a caller waits and gets the first one returned;
// none is created beyond the limit, and a waiter whose context ends gives up.
func TestPoolWaitersGetReturnedInstances(t *testing.T) {
	e, err := New(context.Background(), Config{CallFuel: 1_000_000, InitFuel: 200_000_000, MaxInstances: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	m := loadAnswering(t, e)
	ctx := context.Background()
	lent := make([]*instance, 2)
	for i := range lent {
		if lent[i], err = m.get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := m.get(short); err != context.DeadlineExceeded {
		t.Fatalf("borrow beyond the limit: %v, want a deadline error", err)
	}
	got := make(chan *instance)
	go func() {
		inst, err := m.get(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- inst
	}()
	time.Sleep(10 * time.Millisecond) // let it wait (the test holds either way)
	m.put(lent[0])
	if inst := <-got; inst != lent[0] {
		t.Fatal("the waiter did not get the returned instance")
	}
	if m.Live() != 2 {
		t.Fatalf("%d live instances, want 2", m.Live())
	}

	// Many callers at once, instances always within the limit and every
	// call answered.
	in, enc := testInput()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out abi.Output
			for range 50 {
				if err := m.Call(ctx, in, enc, &out); err != nil || out.Basic != 1 {
					t.Errorf("call: %v %+v", err, out)
					return
				}
				if n := m.Live(); n > 2 {
					t.Errorf("%d live instances, limit 2", n)
					return
				}
			}
		}()
	}
	m.put(lent[0])
	m.put(lent[1])
	wg.Wait()
}

// Close closes the idle instances now and the lent ones when they come back.
func TestPoolCloseDiscardsInstances(t *testing.T) {
	m := loadAnswering(t, newTestEngine(t))
	ctx := context.Background()
	a, _ := m.get(ctx)
	b, err := m.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.put(a)
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Live() != 1 {
		t.Fatalf("%d live after Close with one lent, want 1", m.Live())
	}
	m.put(b)
	if m.Live() != 0 {
		t.Fatalf("%d live after the lent one came back, want 0", m.Live())
	}
}
