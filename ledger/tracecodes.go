package ledger

import "sync"

// Trace codes are checked by the appending goroutine, not by the writer.
//
// Why: a bill carries about twenty drug trace codes, and looking each up was
// a third of the single writer's time (bench/RESULTS.md) — the writer is the
// one serial stage of the settlement path. Instead, Append first reserves
// the entry's codes in memory, then looks them up in the committed store
// (in parallel with every other request), and releases them only once the
// writer has answered. Two entries in flight can never hold the same code
// (the second waits until the first is answered), and a code settled
// earlier is visible in the store by the time its reservation is released
// (the writer answers after its commit), so the writer only marks codes
// and never reads them. A code the store shows settled refuses an entry
// only once that settlement is durable.
// Pebble is one process's, so the in-memory reservation sees every writer.
//
// The check also adds the codes to the trace-code filter (keyfilter.go),
// before the commit rather than after it: the check has just brought their
// filter blocks into the cache, and a code of an entry that then fails is
// only a false positive. A filter rebuilt meanwhile from the store's keys
// may miss them, so Append adds them again after the commit if the filter
// changed since the check (keyFilter.changedSince).

// traceReservations are the codes of entries between check and commit.
type traceReservations struct {
	mu sync.Mutex
	m  map[string]struct{} // guarded by mu
	// released wakes the entries waiting in reserve for a code held by
	// another entry in flight (its L is mu, set by reserve); waiting
	// counts them, so that a release with none waiting costs nothing.
	released sync.Cond
	waiting  int
}

// reserve takes all codes or none; it returns the first code taken twice
// in codes. A code another entry in flight holds is waited for: that entry
// may yet fail (its write, a refusal), and a code it did not settle is
// not one "already settled" (api.md), so whether the code is taken is
// known only once it is answered. An entry holding codes never waits for
// others (it takes all or none), so waiting cannot deadlock.
func (t *traceReservations) reserve(codes []string) (taken string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]struct{})
		t.released.L = &t.mu
	}
	for {
		busy := -1
		for i, c := range codes {
			if _, held := t.m[c]; held {
				busy = i
				break
			}
			t.m[c] = struct{}{}
		}
		if busy < 0 {
			return "", true
		}
		for _, d := range codes[:busy] {
			delete(t.m, d)
		}
		c := codes[busy]
		for _, d := range codes[:busy] {
			if d == c {
				return c, false // twice in codes
			}
		}
		t.waiting++
		t.released.Wait()
		t.waiting--
	}
}

func (t *traceReservations) release(codes []string) {
	t.mu.Lock()
	for _, c := range codes {
		delete(t.m, c)
	}
	if t.waiting > 0 {
		t.released.Broadcast()
	}
	t.mu.Unlock()
}

// checkTraceCodes reserves e's codes, checks them against the committed
// store and adds them to the trace-code filter. On success the caller must
// release them after the writer answered.
func (db *DB) checkTraceCodes(codes []string) error {
	if code, ok := db.traces.reserve(codes); !ok {
		// Twice in this entry.
		return &TraceCodeError{Code: code}
	}
	kb := getKeyBuf()
	defer putKeyBuf(kb)
	var maybe uint64
	for i, c := range codes {
		if i%filterBatch == 0 {
			maybe = db.tfilter.mayContainThenAdd(codes[i:min(len(codes), i+filterBatch)])
		}
		if maybe&(1<<(i%filterBatch)) == 0 {
			continue // never marked: no need to ask the store
		}
		// The latest record of the code decides (bucketed.go).
		var owner, freedBy uint64
		kb.b = appendTraceKey(kb.b[:0], 0, c)
		found, err := probe(db.pdb, kb.b, db.topBucket(), func(v []byte) (err error) {
			owner, freedBy, err = decodeTraceValue(v)
			return err
		})
		if err != nil {
			db.traces.release(codes)
			return err
		}
		if found && freedBy == 0 {
			// Pebble shows a batch before its sync: a refusal rests on
			// the owner only once it is durable. If its write failed,
			// the code was never settled (ErrWriteFailed: retry).
			err := db.waitDurable(owner)
			db.traces.release(codes)
			if err != nil {
				return err
			}
			return &TraceCodeError{Code: c, SettlementID: SettlementID(owner)}
		}
	}
	return nil
}
