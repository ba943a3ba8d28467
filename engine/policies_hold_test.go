package engine

import (
	"testing"
	"time"
)

// TestQuiesceWaitsForEarlierHolds: Quiesce returns only once the holds
// taken before it began are released, and a hold taken meanwhile neither
// waits nor is waited for.
func TestQuiesceWaitsForEarlierHolds(t *testing.T) {
	var p Policies
	p.Quiesce() // nothing held: returns at once
	held := p.Hold()
	done := make(chan struct{})
	go func() { p.Quiesce(); close(done) }()
	time.Sleep(20 * time.Millisecond)
	later := p.Hold() // after Quiesce began: does not block it
	select {
	case <-done:
		t.Fatal("Quiesce returned while an earlier hold was held")
	case <-time.After(50 * time.Millisecond):
	}
	held.Release()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Quiesce did not return once the earlier hold was released")
	}
	later.Release()
}
