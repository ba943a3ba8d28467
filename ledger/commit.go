package ledger

import (
	"context"
	"slices"
)

// Group commit without a writer goroutine.
//
// Every request (an entry to append, a registry operation) joins a queue.
// The goroutine of the request that finds nobody building becomes the
// builder: it takes the queue (up to MaxBatch requests) as one batch,
// builds and applies it (writer.build), and gives the role up — to the
// first request still queued, whose goroutine it wakes, or to nobody. Then
// it waits for its batch's WAL sync itself and answers the batch's
// requests (finish), in the order the batches were built. While it waits,
// the next builder builds and applies the next batch, and Pebble syncs
// them together: the serial part of a commit is building and applying a
// batch, not the disk's sync.
//
// Why not a writer goroutine: at moderate load a request then crossed four
// goroutines (connection → writer → Pebble's WAL flusher → syncer →
// connection), and on an idle CPU each hand-over wakes a sleeping thread;
// at 3,200 requests/s a request cost 1.75× the CPU it costs under full
// load (bench/RESULTS.md). Here a request that finds the builder's role
// free is built, applied, synced and answered by its own goroutine, and a
// request of someone else's batch is woken once, with its answer.
//
// Backpressure: at most maxInFlight+2 batches are applied but not yet
// answered; a builder waits for a slot before it builds, and the queue
// grows behind it meanwhile.
//
// Its depth was measured against 64 (bench/RESULTS.md): with 64 the
// requests that arrive during a slow sync no longer wait to reach the
// writer, but the writer then builds batches of 1.1 entries instead of 2.9
// under full load, which cost ≈ 4 % of the closed-loop throughput, and the
// open-loop p99 at 1,800/s did not improve (7 runs each, both 10–42 ms,
// spread by the disk's sync latency).
const maxInFlight = 8

// committer is the queue and the builder's role.
type committer struct {
	// queue are the requests not yet taken into a batch, oldest first;
	// building is whether a goroutine holds the builder's role; stopping
	// is set by Close: no request is queued after it. All guarded by
	// DB.cmu.
	queue    []*request
	building bool
	stopping bool
	// w is the builder's state, used only by the goroutine holding the
	// role; last is the flight it built last (to order finishes).
	w    *writer
	last *flight
	// slots bounds the batches applied but not yet answered.
	slots chan struct{}
}

// commit queues r and returns once r is answered (r.err, r.n), or with
// ctx's error if ctx ends before a batch takes r, or ErrClosed if the
// store is closing.
func (db *DB) commit(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db.cmu.Lock()
	if db.cm.stopping {
		db.cmu.Unlock()
		return ErrClosed
	}
	db.active.Add(1)
	defer db.active.Done()
	db.cm.queue = append(db.cm.queue, r)
	lead := !db.cm.building
	db.cm.building = true
	db.cmu.Unlock()
	if lead {
		db.build()
	}
	cancel := ctx.Done()
	for {
		select {
		case <-r.done:
			if !r.lead {
				return nil
			}
			r.lead = false
			db.build()
		case <-cancel:
			db.cmu.Lock()
			if r.taken || r.lead {
				// In a batch already, or handed the builder's role
				// (which must be taken up): wait for the answer.
				db.cmu.Unlock()
				cancel = nil
				continue
			}
			if i := slices.Index(db.cm.queue, r); i >= 0 {
				db.cm.queue = slices.Delete(db.cm.queue, i, i+1)
			}
			db.cmu.Unlock()
			return ctx.Err()
		}
	}
}

// build runs in the goroutine holding the builder's role: it builds and
// applies batches from the queue until it can hand the role on, then
// waits for the sync of the last batch it built and finishes it.
func (db *DB) build() {
	cm := &db.cm
	w := cm.w
	for {
		cm.slots <- struct{}{}
		db.cmu.Lock()
		n := min(len(cm.queue), db.maxBatch)
		if n == 0 {
			// Every request queued was taken by an earlier batch (or
			// gave up waiting): nothing to build.
			cm.building = false
			db.cmu.Unlock()
			<-cm.slots
			return
		}
		w.reqs = append(w.reqs[:0], cm.queue[:n]...)
		for _, r := range w.reqs {
			r.taken = true
		}
		rest := copy(cm.queue, cm.queue[n:])
		clear(cm.queue[rest:])
		cm.queue = cm.queue[:rest]
		db.cmu.Unlock()

		f := w.build()
		f.prev, cm.last = cm.last, f
		if f.ranOp {
			// The next batch reads what the operation wrote through the
			// cache, which finish updates: finish it before building on.
			db.complete(f)
			continue
		}
		db.cmu.Lock()
		var next *request
		if len(cm.queue) > 0 {
			next = cm.queue[0]
			next.lead = true
		} else {
			cm.building = false
		}
		db.cmu.Unlock()
		if next != nil {
			next.done <- struct{}{}
		}
		db.complete(f)
		return
	}
}

// complete waits for f's sync, finishes it after the flight before it, and
// frees its slot.
func (db *DB) complete(f *flight) {
	if p := f.prev; p != nil {
		<-p.finished
		f.prev = nil
	}
	db.finish(f)
	<-db.cm.slots
}
