package engine

import (
	"testing"
	"time"
)

// TestR9QuiesceWaitsForEveryEarlierHold: Quiesce promises that every Hold
// taken before it began is released when it returns. Two at once (a
// catalog change and a rollback, which do not share a lock) broke it: the
// first retired the generation of holders, and the second, finding the
// new one empty, returned while a settlement holding the old one could
// still commit.
func TestR9QuiesceWaitsForEveryEarlierHold(t *testing.T) {
	var p Policies
	h := p.Hold()
	first := make(chan struct{})
	go func() {
		p.Quiesce()
		close(first)
	}()
	time.Sleep(50 * time.Millisecond) // the first Quiesce waits for h
	second := make(chan struct{})
	go func() {
		p.Quiesce()
		close(second)
	}()
	select {
	case <-second:
		t.Fatal("a second Quiesce returned while a Hold taken before it began was still held")
	case <-first:
		t.Fatal("the first Quiesce returned while a Hold taken before it began was still held")
	case <-time.After(200 * time.Millisecond):
	}
	h.Release()
	for _, c := range []chan struct{}{first, second} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("Quiesce did not return once the Hold was released")
		}
	}
}
