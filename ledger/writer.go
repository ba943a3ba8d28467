package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"medgate/engine/abi"
)

// request is one unit of work for the writer: an entry to append, or a
// registry operation (op writes into the batch, after runs once the batch
// is durable).
type request struct {
	e  *Entry
	op func(b *pebble.Batch) (int, error)
	// opEntries, set instead of op, is an operation that may also append
	// credits and opening balances (KindCredit, KindOpening) through app,
	// in the same batch: app seals and applies the entry (or refuses it,
	// writing nothing of it).
	opEntries func(b *pebble.Batch, app func(*Entry) error) (int, error)
	after     func()
	n         int
	err       error
	done      chan struct{} // capacity 1
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

// Append writes e durably. The writer assigns e.Seq, e.SettlementID,
// e.PrevHash, e.CommittedAt and e.Hash; the caller must not touch e until
// Append returns. On error nothing of e was written and those fields are
// left zero.
//
// ctx bounds only the wait for the writer to take the entry; once taken,
// Append waits for the outcome (a commit is bounded by the disk).
func (db *DB) Append(ctx context.Context, e *Entry) error {
	if e == nil {
		return invalidEntry("nil entry")
	}
	// Counted before closed is read: Close saves the filters only once no
	// Append is left that may still add a committed entry's trace codes.
	db.appending.Add(1)
	defer db.appending.Add(-1)
	if db.failed.Load() {
		return ErrWriteFailed
	}
	if db.closed.Load() {
		return ErrClosed
	}
	if db.lowDisk.Load() {
		return ErrLowDisk
	}
	var traceFilter *filterState
	if e.Kind == KindSettlement && len(e.TraceCodes) > 0 {
		// See tracecodes.go: checked here, in parallel, not in the writer.
		traceFilter = db.tfilter.state.Load() // before the codes are added
		if err := db.checkTraceCodes(e.TraceCodes); err != nil {
			return err
		}
		defer db.traces.release(e.TraceCodes)
	}
	r := requestPool.Get().(*request)
	r.e = e
	select {
	case db.reqs <- r:
	case <-db.quit:
		r.e = nil
		requestPool.Put(r)
		return ErrClosed
	case <-ctx.Done():
		r.e = nil
		requestPool.Put(r)
		return ctx.Err()
	}
	<-r.done
	err := r.err
	*r = request{done: r.done}
	requestPool.Put(r)
	if err == nil && traceFilter != nil && db.tfilter.changedSince(traceFilter) {
		// Before the deferred release: see tracecodes.go.
		db.tfilter.addEach(e.TraceCodes)
	}
	return err
}

// submit runs a registry request through the writer.
func (db *DB) submit(r *request) (int, error) {
	if db.failed.Load() {
		return 0, ErrWriteFailed
	}
	if db.lowDisk.Load() {
		return 0, ErrLowDisk
	}
	select {
	case db.reqs <- r:
	case <-db.quit:
		return 0, ErrClosed
	}
	<-r.done
	return r.n, r.err
}

// writeFormat is the format the writer gives new entries: 0, EntryFormat.
// Tests set it to entryFormat1 to make the ledger of an earlier version.
var writeFormat byte

// writer is the writer goroutine's private state.
type writer struct {
	db    *DB
	reqs  []*request
	key   []byte
	val   []byte
	enc   []byte
	input abi.Input   // scratch for the entry encoder
	ws    entryWrites // the writes of the entry being applied (writeEntry)
	cblob []byte
	cs    []abi.Counter
	freed []string
	orig  Entry
	// indexed is whether the current batch is indexed, so that reads see
	// the batch's own writes: only batches with a registry operation or a
	// reversal are (see build). viaBatch is whether the writer's own reads
	// (counters, balances, idempotency keys, derived state) go through it
	// too: only a registry operation's batch, whose writes the writer's
	// state does not hold.
	indexed, viaBatch bool
	// applied are the entries accepted into the current batch.
	applied []*Entry
	// pending are the hot-cache keys written by the current batch and
	// their values (nil: deleted), stored into the cache once durable.
	pending map[string][]byte
	// inflight are the batches applied but maybe not yet finished, oldest
	// first: their pending values are newer than the hot cache's.
	inflight []*flight
	// head is the chain head as of the last batch applied (the durable
	// head lags it while batches are in flight).
	head batchState
	// derive maintains the derived state (month totals, hospital rows,
	// Merkle tree) in the batch; see derive.go.
	derive deriver
}

// maxInFlight is the capacity of the queue between the writer and the
// syncer: with the batch being finished and the one the writer holds, at
// most maxInFlight+2 batches are applied but not yet answered. While one
// batch waits for its WAL sync the writer builds and applies the next ones
// (Pebble syncs them together), so the serial part of a commit is building
// and applying a batch, not the disk's sync latency.
//
// Its depth was measured against 64 (bench/RESULTS.md): with 64 the
// requests that arrive during a slow sync no longer wait to reach the
// writer, but the writer then builds batches of 1.1 entries instead of 2.9
// under full load, which cost ≈ 4 % of the closed-loop throughput, and the
// open-loop p99 at 1,800/s did not improve (7 runs each, both 10–42 ms,
// spread by the disk's sync latency).
const maxInFlight = 8

func (db *DB) run() {
	defer close(db.writerDone)
	flights := make(chan *flight, maxInFlight)
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		for f := range flights {
			db.finish(f)
		}
	}()
	defer func() {
		close(flights)
		<-synced
	}()
	w := &writer{db: db, reqs: make([]*request, 0, db.maxBatch)}
	next := func(r *request) {
		w.reqs = append(w.reqs[:0], r)
		w.gather()
		f := w.build()
		flights <- f
		if f.ranOp {
			// The next batch reads what the operation wrote through the
			// cache, which finish updates: wait until it is done.
			<-f.finished
		}
	}
	for {
		select {
		case r := <-db.reqs:
			next(r)
		case <-db.quit:
			// Drain what is still being offered, then stop.
			for {
				select {
				case r := <-db.reqs:
					next(r)
				default:
					return
				}
			}
		}
	}
}

// gather takes whatever else is queued, up to MaxBatch requests.
func (w *writer) gather() {
	for len(w.reqs) < w.db.maxBatch {
		select {
		case r := <-w.db.reqs:
			w.reqs = append(w.reqs, r)
		default:
			return
		}
	}
}

// batchState is the chain head as of the entries applied so far to the
// current batch.
type batchState struct {
	seq      uint64
	hash     [32]byte
	accepted int
}

// flight is a batch between the writer, which built and applied it, and
// the syncer (finish), which waits for its WAL sync and answers it.
type flight struct {
	b         *pebble.Batch // nil: nothing to commit
	reqs      []*request
	pending   map[string][]byte // see writer.pending
	ranOp     bool
	repr      []byte     // a copy of the batch when ranOp
	advanced  bool       // the batch appended entries: head moves to st
	st        batchState // the chain head after the batch
	began     time.Time  // when it was handed to Pebble (attempted)
	attempted bool
	err       error // the batch failed before its sync (or was refused whole)
	done      atomic.Bool
	finished  chan struct{} // closed by finish, after done
}

// process builds one batch of w.reqs and finishes it synchronously (tests
// drive the writer this way; run pipelines build and finish).
func (w *writer) process() {
	w.db.finish(w.build())
}

// build applies w.reqs to a new batch and hands the batch to Pebble
// without waiting for its sync. Requests refused on their own get their
// error here; all are answered by finish.
func (w *writer) build() *flight {
	db := w.db
	f := &flight{reqs: append([]*request(nil), w.reqs...), finished: make(chan struct{})}
	clear(w.reqs)
	w.reqs = w.reqs[:0]
	// Batches that are durable by now need no longer be looked through.
	n := 0
	for _, g := range w.inflight {
		if !g.done.Load() {
			w.inflight[n] = g
			n++
		}
	}
	clear(w.inflight[n:])
	w.inflight = w.inflight[:n]
	if db.failed.Load() {
		f.err = ErrWriteFailed
		return f
	}
	if len(w.inflight) == 0 {
		// Nothing in flight: the durable head is the applied one.
		h := db.head.Load()
		w.head = batchState{seq: h.seq, hash: h.hash}
	}
	st := batchState{seq: w.head.seq, hash: w.head.hash}
	// A batch of settlements only needs no index: every value the writer
	// reads back within a batch (counters, balances, idempotency keys,
	// derived state) it finds in its own state first (pending, applied,
	// in flight, the deriver's caches). Registry operations and reversals
	// read arbitrary keys through the batch, so their batches are indexed.
	// A reversal's entries write only what the writer's state holds, so
	// the writer's own reads go through the batch only for an operation's:
	// reading through an indexed batch costs a Pebble iterator a read
	// (≈ 0.1 ms), against a map lookup.
	w.indexed, w.viaBatch = false, false
	for _, r := range f.reqs {
		if r.e == nil {
			w.indexed, w.viaBatch = true, true
		} else if r.e.Kind != KindSettlement {
			w.indexed = true
		}
	}
	var b *pebble.Batch
	if w.indexed {
		b = db.pdb.NewIndexedBatch()
	} else {
		b = db.pdb.NewBatch()
	}
	w.applied = w.applied[:0]
	w.pending = make(map[string][]byte)
	f.pending = w.pending
	for _, r := range f.reqs {
		if r.e != nil {
			r.err = w.applyEntry(b, r.e, &st)
			if r.err == nil {
				st.accepted++
				w.applied = append(w.applied, r.e)
			}
		} else {
			// Registry operations (and month closes) see the derived
			// state of the entries before them.
			w.flushDerived(b)
			if r.opEntries == nil {
				r.n, r.err = r.op(b)
			} else {
				before := st.seq
				r.n, r.err = r.opEntries(b, func(e *Entry) error {
					if err := w.applyBalanceEntry(b, e, &st); err != nil {
						return err
					}
					st.accepted++
					return nil
				})
				if r.err != nil && st.seq != before {
					// The batch holds part of the operation and its
					// entries: it must not commit.
					f.err = r.err
				}
			}
			f.ranOp = true
		}
	}
	clear(w.applied)
	w.applied = w.applied[:0]
	w.flushDerived(b)
	f.st = st
	f.advanced = st.seq != w.head.seq
	if f.advanced {
		w.val = be.AppendUint64(w.val[:0], st.seq)
		w.val = append(w.val, st.hash[:]...)
		if err := b.Set(keyHead, w.val, nil); err != nil {
			f.err = err
		}
	}
	if f.ranOp && f.err == nil {
		// Kept for finish (hotcache.go: storeBatch): Pebble empties a
		// large batch when it applies it.
		f.repr = append([]byte(nil), b.Repr()...)
	}
	if f.err == nil && !b.Empty() {
		f.began, f.attempted = time.Now(), true
		db.applying.Store(f.began.UnixNano())
		if f.err = applyNoSyncWait(db.pdb, b); f.err == nil {
			f.b = b
		}
		db.applying.Store(0)
	}
	if f.err != nil || f.b == nil {
		_ = b.Close()
	}
	if f.err != nil {
		// Nothing more is built on top of a batch that failed; finish
		// fails it and every batch still in flight after it.
		db.failed.Store(true)
		w.derive.reset()
		return f
	}
	w.head = st
	w.inflight = append(w.inflight, f)
	return f
}

// finish waits for f's WAL sync and answers its requests: the hot cache,
// the durable head and the registries' in-memory views move first, so
// that whoever learns of an answer also sees its effects. Batches are
// finished in the order they were built; once one fails, every later one
// fails too (it may have been applied on top of writes that are lost).
func (db *DB) finish(f *flight) {
	defer func() {
		f.done.Store(true)
		close(f.finished)
		for _, r := range f.reqs {
			r.done <- struct{}{}
		}
	}()
	err := f.err
	if f.b != nil {
		defer f.b.Close()
	}
	if err == nil && f.b != nil {
		db.syncing.Store(f.began.UnixNano())
		err = syncWait(f.b)
		db.syncing.Store(0)
	}
	if err == nil && db.syncFailed.Load() {
		err = ErrWriteFailed
	}
	if o := db.observer.Load(); o != nil && f.attempted {
		// From the hand-over to Pebble to durable (or failed): the
		// commit as the batch's requests wait for it.
		(*o)(time.Since(f.began), f.st.accepted, err)
	}
	if err != nil {
		db.failFlight(f, err)
		return
	}
	if f.b != nil {
		db.commits.Add(1)
		if f.ranOp {
			// Operations write keys the writer does not track: read
			// them back from the batch.
			db.hot.storeBatch(f.repr)
		} else {
			for k, v := range f.pending {
				db.hot.store(k, hotValue{v: v, absent: v == nil})
			}
		}
	}
	if f.advanced {
		db.head.Store(&headState{seq: f.st.seq, hash: f.st.hash})
		db.broadcast()
	}
	for _, r := range f.reqs {
		if r.after != nil && r.err == nil {
			r.after()
		}
	}
}

// applyNoSyncWait writes b to the WAL and memtable without waiting for the
// sync, turning pebble's fatal-commit log call (see pebbleLogger) into an
// error.
func applyNoSyncWait(pdb *pebble.DB, b *pebble.Batch) (err error) {
	defer recoverFatal(&err)
	return pdb.ApplyNoSyncWait(b, pebble.Sync)
}

// syncWait waits for b's WAL sync (after applyNoSyncWait).
func syncWait(b *pebble.Batch) (err error) {
	defer recoverFatal(&err)
	return b.SyncWait()
}

func recoverFatal(err *error) {
	if r := recover(); r != nil {
		if f, ok := r.(pebbleFatal); ok {
			*err = f
			return
		}
		panic(r)
	}
}

// failFlight answers every request of f with the write error and puts the
// DB into its failed state.
func (db *DB) failFlight(f *flight, cause error) {
	// Readers may have cached values of batches that will never be
	// durable (read from Pebble, which shows a batch before its sync).
	db.hot.clear()
	first := !db.syncFailed.Load()
	db.syncFailed.Store(true)
	db.failed.Store(true)
	db.broadcast()
	if first {
		db.log.Error().Err(cause).Int("requests", len(f.reqs)).
			Msg("ledger: commit failed; refusing further writes")
	}
	err := cause
	if !errors.Is(err, ErrWriteFailed) {
		err = fmt.Errorf("%w: %v", ErrWriteFailed, cause)
	}
	for _, r := range f.reqs {
		r.err = err
		r.n = 0
		if e := r.e; e != nil {
			e.Seq, e.SettlementID, e.CommittedAt = 0, "", 0
			e.PrevHash, e.Hash = [32]byte{}, [32]byte{}
		}
	}
}

// getIn reads key through the batch (so earlier writes of the batch are
// seen); found is false when absent. fn, when found, sees the value only
// during the call.
func getIn(b *pebble.Batch, key []byte, fn func(v []byte) error) (found bool, err error) {
	v, closer, err := b.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, unreadable(err)
	}
	err = fn(v)
	if cerr := closer.Close(); cerr != nil {
		// A value Pebble could not read (read.go: lookup).
		return false, unreadable(cerr)
	}
	return true, err
}

func validateEntry(e *Entry) error {
	switch e.Kind {
	case KindSettlement:
		if e.Reverses != "" {
			return invalidEntry("a settlement with Reverses set")
		}
	case KindReversal:
		if e.Reverses == "" {
			return invalidEntry("a reversal without Reverses")
		}
	default:
		return invalidEntry("kind %d", e.Kind)
	}
	if e.Hospital == "" || e.RequestID == "" {
		return invalidEntry("empty hospital or request id")
	}
	if (len(e.Changes) > 0 || e.BalanceChange != 0) && (e.InsuredRegion == "" || e.PersonID == "") {
		return invalidEntry("counter or balance changes without insured region and person")
	}
	if len(e.Changes) > abi.MaxCounters {
		return invalidEntry("%d counter changes", len(e.Changes))
	}
	for i := range e.Changes {
		if !abi.ValidName(e.Changes[i].Name) {
			return invalidEntry("counter name %q", e.Changes[i].Name)
		}
	}
	for _, c := range e.TraceCodes {
		if c == "" {
			return invalidEntry("empty trace code")
		}
	}
	return nil
}

// applyEntry checks e against the DB and the batch so far and, if it
// passes, adds its writes to b. All reads and checks come before the first
// write, so a refused entry leaves b untouched.
func (w *writer) applyEntry(b *pebble.Batch, e *Entry, st *batchState) error {
	if err := validateEntry(e); err != nil {
		return err
	}
	seq := st.seq + 1

	// Idempotency: a key the filter never saw is new.
	w.key = appendIdemKey(w.key[:0], 0, e.Hospital, e.RequestID)
	if w.db.ifilter.mayContainBytes(w.key[bucketKeyLen:]) {
		if err := w.checkDuplicate(b, e); err != nil {
			return err
		}
	}

	var origSeq uint64
	w.freed = w.freed[:0]
	// A settlement's trace codes were reserved and checked by Append
	// (tracecodes.go); a reversal's original is checked here.
	if e.Kind != KindSettlement {
		if err := w.checkReversal(b, e, &origSeq); err != nil {
			return err
		}
	}

	// Counters.
	year := e.Date.Year()
	if len(e.Changes) > 0 {
		if err := w.applyCounters(b, e, year); err != nil {
			return err
		}
	}

	// Balance.
	var balance int64
	if e.BalanceChange != 0 {
		var cur int64
		w.key = appendBalanceKey(w.key[:0], e.InsuredRegion, e.PersonID)
		if _, err := w.read(b, w.key, func(v []byte) (err error) {
			cur, err = decodeBalance(v)
			return err
		}); err != nil {
			return err
		}
		nb, ok := abi.AddChecked(cur, e.BalanceChange)
		if !ok {
			return invalidEntry("balance overflow")
		}
		if nb < 0 {
			return ErrInsufficientBalance
		}
		balance = nb
	}

	if err := w.seal(b, e, st, writeFormat); err != nil {
		return err
	}

	ws := w.writeEntry(b, seq)
	set := ws.set
	bucket := w.db.bucket(seq)
	w.key = appendIdemKey(w.key[:0], bucket, e.Hospital, e.RequestID)
	w.val = appendIdemValue(w.val[:0], e.BodyHash, seq)
	set(w.key, w.val)
	// Known to the filter before it can be in the store (keyfilter.go); if
	// the batch fails, it is only a false positive.
	w.db.ifilter.add(w.key[bucketKeyLen:])
	if e.Kind == KindSettlement {
		w.val = appendTraceValue(w.val[:0], seq, 0)
		for _, c := range e.TraceCodes {
			w.key = appendTraceKey(w.key[:0], bucket, c)
			set(w.key, w.val)
		}
	} else {
		w.key = appendReversedKey(w.key[:0], origSeq)
		w.val = be.AppendUint64(w.val[:0], seq)
		set(w.key, w.val)
		// Freed where they are: in the settlement's bucket.
		w.val = appendTraceValue(w.val[:0], origSeq, seq)
		for _, c := range w.freed {
			w.key = appendTraceKey(w.key[:0], w.db.bucket(origSeq), c)
			set(w.key, w.val)
		}
	}
	if len(e.Changes) > 0 {
		w.key = appendCountersKey(w.key[:0], e.InsuredRegion, e.PersonID, year)
		if len(w.cs) == 0 {
			ws.delete(w.key)
			w.pending[string(w.key)] = nil
		} else {
			set(w.key, w.cblob)
			w.pending[string(w.key)] = append([]byte(nil), w.cblob...)
			w.db.cfilter.add(w.key[1:]) // before the store: keyfilter.go
		}
	}
	if e.BalanceChange != 0 {
		w.setBalance(set, e.InsuredRegion, e.PersonID, balance)
	}
	w.endEntry(e, st, ws)
	return nil
}

// applyBalanceEntry seals e, a credit or an opening balance (only
// operations append them: Append refuses their kinds), and adds its writes
// to b: the entry, its derived state, the person's balance and, for a
// credit, its reference's record (credits.go). A migrated one (upgrade.go)
// records a balance move the balance record already holds: it writes
// neither the balance nor moves it. All reads and checks come before the
// first write, as in applyEntry.
func (w *writer) applyBalanceEntry(b *pebble.Batch, e *Entry, st *batchState) error {
	switch {
	case !e.Kind.movesBalanceOnly():
		return invalidEntry("kind %d through an operation", e.Kind)
	case e.InsuredRegion == "" || e.PersonID == "":
		return invalidEntry("a balance entry without region or person")
	case e.BalanceChange <= 0:
		return invalidEntry("a balance entry of %d", e.BalanceChange)
	case (e.Kind == KindCredit) != (e.RequestID != ""):
		return invalidEntry("a credit without a reference, or an opening balance with one")
	}
	seq := st.seq + 1
	var balance int64
	if !e.Migrated {
		var cur int64
		w.key = appendBalanceKey(w.key[:0], e.InsuredRegion, e.PersonID)
		if _, err := w.read(b, w.key, func(v []byte) (err error) {
			cur, err = decodeBalance(v)
			return err
		}); err != nil {
			return err
		}
		var ok bool
		if balance, ok = abi.AddChecked(cur, e.BalanceChange); !ok {
			return ErrCounterRange
		}
		e.BalanceAfter = balance
	}
	// Always EntryFormat (0): format 1 has no such entries.
	if err := w.seal(b, e, st, 0); err != nil {
		return err
	}
	ws := w.writeEntry(b, seq)
	if !e.Migrated {
		w.setBalance(ws.set, e.InsuredRegion, e.PersonID, balance)
	}
	if e.Kind == KindCredit {
		w.key = appendCreditKey(w.key[:0], e.InsuredRegion, e.RequestID)
		w.val = appendCreditValue(w.val[:0], e.PersonID, e.BalanceChange, e.BalanceAfter, seq)
		ws.set(w.key, w.val)
	}
	w.endEntry(e, st, ws)
	return nil
}

// entryWrites adds a sealed entry's writes to its batch. Batch.Set and
// Delete only fail on a committed or closed batch, which would be a bug
// here; still, the first error is kept and reported (endEntry) rather than
// ignored.
type entryWrites struct {
	b   *pebble.Batch
	err error
	set func(k, v []byte) // setKV, bound once (writer.ws): no allocation an entry
}

func (ws *entryWrites) setKV(k, v []byte) {
	if ws.err == nil {
		ws.err = ws.b.Set(k, v, nil)
	}
}

func (ws *entryWrites) delete(k []byte) {
	if ws.err == nil {
		ws.err = ws.b.Delete(k, nil)
	}
}

// writeEntry starts the writes of sealed entry seq (w.enc) to b with its
// record; from here on the records of seq's bucket may be visible
// (bucketed.go).
func (w *writer) writeEntry(b *pebble.Batch, seq uint64) *entryWrites {
	ws := &w.ws
	if ws.set == nil {
		ws.set = ws.setKV
	}
	ws.b, ws.err = b, nil
	w.db.sealed.Store(seq)
	w.key = appendEntryKey(w.key[:0], seq)
	ws.set(w.key, w.enc)
	return ws
}

// setBalance writes the balance record of (region, person) and keeps it
// for the batch's later reads (w.pending).
func (w *writer) setBalance(set func(k, v []byte), region, person string, balance int64) {
	w.key = appendBalanceKey(w.key[:0], region, person)
	w.val = be.AppendUint64(w.val[:0], uint64(balance))
	set(w.key, w.val)
	w.pending[string(w.key)] = append([]byte(nil), w.val...)
}

// endEntry adds e's derived records and makes it the batch's last entry.
func (w *writer) endEntry(e *Entry, st *batchState, ws *entryWrites) {
	w.derive.apply(e, ws.set)
	if ws.err != nil {
		// The batch may now hold part of this entry: it must not commit.
		panic(fmt.Sprintf("ledger: batch write failed: %v", ws.err))
	}
	st.seq = e.Seq
	st.hash = e.Hash
	w.db.floor = e.CommittedAt
}

// seal numbers e after st (seq, settlement id for a settlement or a
// reversal, previous hash, commit time), encodes it in format into w.enc
// with its hash, and prepares its derived records; on an error e is as it
// was given. Commit times never go back: not before the previous entry's,
// nor into a closed month (db.floor), whatever the clock does.
func (w *writer) seal(b *pebble.Batch, e *Entry, st *batchState, format byte) error {
	seq := st.seq + 1
	e.Seq = seq
	e.SettlementID = ""
	if !e.Kind.movesBalanceOnly() {
		e.SettlementID = SettlementID(seq) // credits and opening balances have none
	}
	e.PrevHash = st.hash
	e.CommittedAt = max(w.db.now().UnixNano(), w.db.floor)
	e.Hash = [32]byte{}
	e.format = format // whatever format the caller's copy came from
	w.enc = appendEntryBodyIn(w.enc[:0], e, &w.input)
	err := error(nil)
	if len(w.enc)+32 > MaxEntrySize {
		err = ErrEntryTooLarge
	} else {
		e.Hash = EntryHash(e.PrevHash, w.enc)
		w.enc = append(w.enc, e.Hash[:]...)
		err = w.derive.prepare(w.reader(b), e)
	}
	if err != nil {
		e.Seq, e.SettlementID, e.PrevHash, e.CommittedAt, e.Hash = 0, "", [32]byte{}, 0, [32]byte{}
	}
	return err
}

// reader is what the derived state reads the store through.
func (w *writer) reader(b *pebble.Batch) pebble.Reader {
	if w.viaBatch {
		return b
	}
	return w.db.pdb
}

// read reads a hot-cache key (counters, balance) as of the batch so far.
func (w *writer) read(b *pebble.Batch, key []byte, fn func(v []byte) error) (bool, error) {
	if w.viaBatch {
		return getIn(b, key, fn)
	}
	if v, ok := w.pending[string(key)]; ok {
		if v == nil {
			return false, nil
		}
		return true, fn(v)
	}
	for i := len(w.inflight) - 1; i >= 0; i-- {
		// Once a batch is done the cache holds its values (finish stores
		// them before it sets done).
		if f := w.inflight[i]; !f.done.Load() {
			if v, ok := f.pending[string(key)]; ok {
				if v == nil {
					return false, nil
				}
				return true, fn(v)
			}
		}
	}
	return w.db.cachedGet(key, fn)
}

// checkDuplicate returns a DuplicateError if e's idempotency key (in w.key)
// is already used, in the store or earlier in the batch.
func (w *writer) checkDuplicate(b *pebble.Batch, e *Entry) error {
	var dup Idem
	var found bool
	var err error
	decode := func(v []byte) (err error) {
		dup, err = decodeIdemValue(v)
		return err
	}
	if w.viaBatch {
		found, err = probe(b, w.key, w.db.topBucket(), decode)
	} else {
		for _, a := range w.applied {
			if a.Hospital == e.Hospital && a.RequestID == e.RequestID {
				dup, found = Idem{BodyHash: a.BodyHash, Seq: a.Seq}, true
				break
			}
		}
		if !found {
			found, err = probe(w.db.pdb, w.key, w.db.topBucket(), decode)
		}
	}
	if err != nil {
		return err
	}
	if found {
		dup.SettlementID = SettlementID(dup.Seq)
		return &DuplicateError{Existing: dup}
	}
	return nil
}

// flushDerived writes the batch's coalesced derived state into b.
func (w *writer) flushDerived(b *pebble.Batch) {
	if err := w.derive.flush(b); err != nil {
		// As in applyEntry: only a closed batch fails a Set.
		panic(fmt.Sprintf("ledger: batch write failed: %v", err))
	}
}

// checkReversal checks that e may reverse e.Reverses and collects the
// trace codes it frees into w.freed.
func (w *writer) checkReversal(b *pebble.Batch, e *Entry, origSeq *uint64) error {
	oseq, ok := ParseSettlementID(e.Reverses)
	if !ok {
		return ErrNotFound
	}
	w.key = appendEntryKey(w.key[:0], oseq)
	orig := &w.orig
	found, err := getIn(b, w.key, func(v []byte) error { return DecodeEntry(v, orig) })
	if err != nil {
		return err
	}
	if !found {
		return ErrNotFound
	}
	if orig.Kind != KindSettlement {
		return ErrNotSettlement
	}
	w.key = appendReversedKey(w.key[:0], oseq)
	var rev uint64
	found, err = getIn(b, w.key, func(v []byte) (err error) {
		rev, err = decodeSeqValue(v)
		return err
	})
	if err != nil {
		return err
	}
	if found {
		return &AlreadyReversedError{ReversalID: SettlementID(rev)}
	}
	switch {
	case orig.InsuredRegion != e.InsuredRegion || orig.PersonID != e.PersonID:
		return fmt.Errorf("%w: insured region or person differ", ErrReversalMismatch)
	case orig.Hospital != e.Hospital || orig.TreatingRegion != e.TreatingRegion:
		// Clearing and reconciliation book the reversal against its
		// pair and hospital: they must be the settlement's.
		return fmt.Errorf("%w: hospital or treating region differ", ErrReversalMismatch)
	case e.Amounts != orig.Amounts.Negated():
		return fmt.Errorf("%w: amounts do not negate the settlement's", ErrReversalMismatch)
	case orig.Date.Year() != e.Date.Year():
		return fmt.Errorf("%w: counters must be booked in %d, the settlement's year, not %d",
			ErrReversalMismatch, orig.Date.Year(), e.Date.Year())
	case e.BalanceChange != -orig.BalanceChange:
		return fmt.Errorf("%w: balance change %d does not negate %d",
			ErrReversalMismatch, e.BalanceChange, orig.BalanceChange)
	case !negates(e.Changes, orig.Changes):
		return fmt.Errorf("%w: counter changes do not negate the settlement's", ErrReversalMismatch)
	}
	for _, c := range orig.TraceCodes {
		// A code the settlement still holds has its record in the
		// settlement's bucket (bucketed.go).
		w.key = appendTraceKey(w.key[:0], w.db.bucket(oseq), c)
		var owner, freedBy uint64
		found, err := getIn(b, w.key, func(v []byte) (err error) {
			owner, freedBy, err = decodeTraceValue(v)
			return err
		})
		if err != nil {
			return err
		}
		if found && owner == oseq && freedBy == 0 {
			w.freed = append(w.freed, c)
		}
	}
	*origSeq = oseq
	return nil
}

// negates reports whether, name by name, the changes a add up to the
// negation of those of b.
func negates(a, b []abi.Counter) bool {
	sum := func(list []abi.Counter, name string) (int64, bool) {
		var t int64
		ok := true
		for _, c := range list {
			if c.Name == name {
				t, ok = abi.AddChecked(t, c.Value)
				if !ok {
					return 0, false
				}
			}
		}
		return t, true
	}
	for _, list := range [2][]abi.Counter{a, b} {
		for _, c := range list {
			sa, ok1 := sum(a, c.Name)
			sb, ok2 := sum(b, c.Name)
			if !ok1 || !ok2 || sa != -sb {
				return false
			}
		}
	}
	return true
}

// applyCounters computes the new counters blob of e's person and year into
// w.cblob (w.cs holds the resulting counters).
func (w *writer) applyCounters(b *pebble.Batch, e *Entry, year int32) error {
	w.cs = w.cs[:0]
	w.key = appendCountersKey(w.key[:0], e.InsuredRegion, e.PersonID, year)
	if _, err := w.read(b, w.key, func(v []byte) error {
		return walkCounters(v, func(name []byte, value int64) {
			w.cs = append(w.cs, abi.Counter{Name: w.db.names.get(name), Value: value})
		})
	}); err != nil {
		return err
	}
	for _, ch := range e.Changes {
		i := sort.Search(len(w.cs), func(i int) bool { return w.cs[i].Name >= ch.Name })
		if i < len(w.cs) && w.cs[i].Name == ch.Name {
			v, ok := abi.AddChecked(w.cs[i].Value, ch.Value)
			if !ok || v < 0 {
				return ErrCounterRange
			}
			w.cs[i].Value = v
			continue
		}
		if ch.Value < 0 {
			return ErrCounterRange
		}
		w.cs = append(w.cs, abi.Counter{})
		copy(w.cs[i+1:], w.cs[i:])
		w.cs[i] = ch
	}
	// Drop zeros: an absent counter is 0.
	n := 0
	for _, c := range w.cs {
		if c.Value != 0 {
			w.cs[n] = c
			n++
		}
	}
	w.cs = w.cs[:n]
	w.cblob = appendCounters(w.cblob[:0], w.cs)
	return nil
}
