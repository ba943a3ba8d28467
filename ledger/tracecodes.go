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
// (the second finds it reserved), and a code settled earlier is visible in
// the store by the time its reservation is released (the writer answers
// after its commit), so the writer only marks codes and never reads them.
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
}

// reserve takes all codes or none; it returns the first code already taken
// (by an entry in flight, or twice in codes).
func (t *traceReservations) reserve(codes []string) (taken string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]struct{})
	}
	for i, c := range codes {
		if _, busy := t.m[c]; busy {
			for _, d := range codes[:i] {
				delete(t.m, d)
			}
			return c, false
		}
		t.m[c] = struct{}{}
	}
	return "", true
}

func (t *traceReservations) release(codes []string) {
	t.mu.Lock()
	for _, c := range codes {
		delete(t.m, c)
	}
	t.mu.Unlock()
}

// checkTraceCodes reserves e's codes, checks them against the committed
// store and adds them to the trace-code filter. On success the caller must
// release them after the writer answered.
func (db *DB) checkTraceCodes(codes []string) error {
	if code, ok := db.traces.reserve(codes); !ok {
		// In flight in another entry, or twice in this one.
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
			db.traces.release(codes)
			return &TraceCodeError{Code: c, SettlementID: SettlementID(owner)}
		}
	}
	return nil
}
