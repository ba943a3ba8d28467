package ledger

import (
	"context"
	"errors"
	"testing"
	"time"
)

// queued waits until n requests sit in the commit queue.
func queued(t *testing.T, db *DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		db.cmu.Lock()
		got := len(db.cm.queue)
		db.cmu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("the queue never held %d requests", n)
}

// A request whose context ends while it is queued (the builder waits for
// a free slot: every batch in flight) leaves the queue and is never
// written; the requests around it are committed once a slot frees.
func TestAppendContextWhileQueued(t *testing.T) {
	db, _ := openMem(t)
	for range cap(db.cm.slots) {
		db.cm.slots <- struct{}{} // as if maxInFlight+2 batches were in flight
	}
	first := make(chan error, 1)
	go func() { first <- db.Append(context.Background(), settlement("r1", "P1", 20261109, nil, 0, "tc-1")) }()
	queued(t, db, 1) // r1's goroutine holds the builder's role, waiting for a slot
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- db.Append(ctx, settlement("r2", "P1", 20261109, nil, 0, "tc-2")) }()
	queued(t, db, 2)
	third := make(chan error, 1)
	go func() { third <- db.Append(context.Background(), settlement("r3", "P1", 20261109, nil, 0, "tc-3")) }()
	queued(t, db, 3)
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Append after cancel = %v, want context.Canceled", err)
	}
	queued(t, db, 2)
	for range cap(db.cm.slots) {
		<-db.cm.slots
	}
	for _, ch := range []chan error{first, third} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	if err := db.Scan(0, func(e *Entry) error { ids = append(ids, e.RequestID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != "r1" || ids[1] != "r3" {
		t.Fatalf("entries %v, want [r1 r3]", ids)
	}
	// The cancelled entry's trace code was released: it can be settled.
	mustAppend(t, db, settlement("r4", "P1", 20261109, nil, 0, "tc-2"))
}

// A batch's builder hands its role to the oldest queued request; with
// batches of one entry every request but the first is built by a goroutine
// woken for it, and the chain of hand-overs never stalls.
func TestCommitHandOver(t *testing.T) {
	fs := memFS()
	opts := testOptions(fs)
	opts.MaxBatch = 1
	db, err := Open("data", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const G, N = 16, 25
	errs := make(chan error, G)
	for g := range G {
		go func() {
			for i := range N {
				if err := db.Append(context.Background(), settlement(req(g*N+i), "P1", 20261109, nil, 0)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range G {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if seq, _ := db.Head(); seq != G*N {
		t.Fatalf("head %d, want %d", seq, G*N)
	}
	if n, err := db.Verify(); err != nil || n != G*N {
		t.Fatalf("Verify = %d %v", n, err)
	}
}
