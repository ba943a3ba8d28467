package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"medgate/engine/abi"
)

// TestR5TrimReleasesAHandedOffInstance: put hands an instance to a
// waiter through handoff, but the waiter may take a fresh slot instead
// (get's select); the instance then waits in handoff, and only a call
// that finds the stack empty takes it. Trim released the stack only: a
// version superseded by the date, trimmed by the idle sweep because no
// bill calls it any more, kept such instances (each with its memory)
// for good.
func TestR5TrimReleasesAHandedOffInstance(t *testing.T) {
	e := newTestEngine(t)
	want := abi.Output{Basic: 640_00}
	m, err := e.Load(context.Background(), "371600", "v1", answering(&want))
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.get(context.Background()) // the probing instance
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.get(context.Background()) // a fresh one
	if err != nil {
		t.Fatal(err)
	}
	// A waiter is in get's slow path when a is returned (handed off),
	// and leaves with a fresh slot instead of it.
	m.mu.Lock()
	m.waiting++
	m.mu.Unlock()
	m.put(a)
	m.mu.Lock()
	m.waiting--
	m.mu.Unlock()
	m.put(b)
	if len(m.handoff) != 1 || m.Live() != 2 {
		t.Fatalf("setup: handoff %d, live %d", len(m.handoff), m.Live())
	}
	m.Trim()
	if n := m.Live(); n != 0 {
		t.Errorf("Trim left %d instances live (%d in handoff)", n, len(m.handoff))
	}
	m.put(mustGet(t, m))
	m.TrimUnused()
	m.TrimUnused()
	if n := m.Live(); n != 0 {
		t.Errorf("TrimUnused of an unused module left %d instances live", n)
	}
}

func mustGet(t *testing.T, m *Module) *instance {
	t.Helper()
	inst, err := m.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestR5TrimUnusedWhileCalled: the idle sweep (TrimUnused, and Trim)
// runs while many goroutines borrow and return the module's instances:
// no call fails, no instance is closed while a call uses it, and once
// the calls have ended and a sweep found the module unused, every
// instance and slot is released (Live 0, and the pool still grows to
// MaxInstances afterwards).
func TestR5TrimUnusedWhileCalled(t *testing.T) {
	e := newTestEngine(t)
	want := abi.Output{Deductible: 200_00, Basic: 640_00, Account: 160_00,
		Changes: []abi.Counter{{Name: "ded.out", Value: 200_00}}}
	m, err := e.Load(context.Background(), "371600", "v1", answering(&want))
	if err != nil {
		t.Fatal(err)
	}
	in, enc := testInput()
	var stop atomic.Bool
	var sweeps atomic.Int64
	var sw sync.WaitGroup
	sw.Add(1)
	go func() {
		defer sw.Done()
		for i := 0; !stop.Load(); i++ {
			if i%7 == 0 {
				m.Trim()
			} else {
				m.TrimUnused()
			}
			sweeps.Add(1)
		}
	}()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out abi.Output
			for range 300 {
				if err := m.Call(context.Background(), in, enc, &out); err != nil {
					t.Error(err)
					return
				}
				if out.Basic != want.Basic {
					t.Errorf("basic %d", out.Basic)
					return
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	sw.Wait()
	t.Logf("%d sweeps during the calls", sweeps.Load())
	m.TrimUnused()
	m.TrimUnused()
	if n := m.Live(); n != 0 {
		t.Errorf("%d instances live after the calls ended and two sweeps", n)
	}
	if n := len(m.slots); n != 0 {
		t.Errorf("%d slots held with no instance live", n)
	}
	// The pool still grows to its limit: no slot was lost.
	var wg2 sync.WaitGroup
	for range 16 {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			var out abi.Output
			for range 50 {
				if err := m.Call(context.Background(), in, enc, &out); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg2.Wait()
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.TrimUnused() // a sweep after Close finds nothing to close
	if n := m.Live(); n != 0 {
		t.Errorf("%d instances live after Close", n)
	}
}
