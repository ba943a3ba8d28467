package ledger

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Head returns the last durable entry's seq and hash (0 and zeros for an
// empty ledger).
func (db *DB) Head() (seq uint64, hash [32]byte) {
	h := db.head.Load()
	return h.seq, h.hash
}

// Failed reports whether a write failed; from then on every write returns
// ErrWriteFailed.
func (db *DB) Failed() bool { return db.failed.Load() }

// lookup reads key and passes its value to fn (valid only during the call);
// found is false when the key is absent.
func (db *DB) lookup(kb *keyBuf, fn func(v []byte) error) (found bool, err error) {
	if db.closed.Load() {
		return false, ErrClosed
	}
	v, closer, err := db.pdb.Get(kb.b)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, unreadable(err)
	}
	err = fn(v)
	if cerr := closer.Close(); cerr != nil {
		// Pebble's Get reports a value it could not read (a blob file's
		// block) only here, having handed fn an empty one.
		return false, unreadable(cerr)
	}
	return true, err
}

// Idempotency returns what the idempotency key (hospital, requestID) maps to,
// once durable.
func (db *DB) Idempotency(hospital, requestID string) (Idem, bool, error) {
	kb := getKeyBuf()
	kb.b = appendIdemKey(kb.b[:0], 0, hospital, requestID)
	if db.closed.Load() {
		putKeyBuf(kb)
		return Idem{}, false, ErrClosed
	}
	if !db.ifilter.mayContainBytes(kb.b[bucketKeyLen:]) {
		putKeyBuf(kb)
		return Idem{}, false, nil // never used: no need to ask the store
	}
	var id Idem
	found, err := probe(db.pdb, kb.b, db.topBucket(), func(v []byte) (err error) {
		id, err = decodeIdemValue(v)
		return err
	})
	putKeyBuf(kb)
	if err != nil || !found {
		return Idem{}, false, err
	}
	if err := db.waitDurable(id.Seq); err != nil {
		return Idem{}, false, err
	}
	id.SettlementID = SettlementID(id.Seq)
	return id, true, nil
}

// TraceCodeOwner returns the settlement holding trace code code, if it is in
// use (settled and not reversed). A code being committed right now may be
// reported free for an instant (the filter learns it after the commit):
// only a quote asks this; a settlement's codes are checked by Append.
func (db *DB) TraceCodeOwner(code string) (settlementID string, inUse bool, err error) {
	if db.closed.Load() {
		return "", false, ErrClosed
	}
	if !db.tfilter.mayContain(code) {
		return "", false, nil
	}
	kb := getKeyBuf()
	kb.b = appendTraceKey(kb.b[:0], 0, code)
	var owner, freedBy uint64
	found, err := probe(db.pdb, kb.b, db.topBucket(), func(v []byte) (err error) {
		owner, freedBy, err = decodeTraceValue(v)
		return err
	})
	putKeyBuf(kb)
	if err != nil || !found {
		return "", false, err
	}
	// The record changed last with the later of the two entries.
	if err := db.waitDurable(max(owner, freedBy)); err != nil {
		return "", false, err
	}
	if freedBy != 0 {
		return "", false, nil
	}
	return SettlementID(owner), true, nil
}

// Entry returns the entry of seq, or ErrNotFound.
func (db *DB) Entry(seq uint64) (*Entry, error) {
	kb := getKeyBuf()
	kb.b = appendEntryKey(kb.b[:0], seq)
	e := new(Entry)
	found, err := db.lookup(kb, func(v []byte) error { return DecodeEntry(v, e) })
	putKeyBuf(kb)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNotFound
	}
	if err := db.waitDurable(seq); err != nil {
		return nil, err
	}
	return e, nil
}

// EntryByID returns the entry of a settlement id: a settlement or a
// reversal (the seq of a credit or an opening balance names no settlement).
func (db *DB) EntryByID(settlementID string) (*Entry, bool, error) {
	seq, ok := ParseSettlementID(settlementID)
	if !ok {
		return nil, false, nil
	}
	e, err := db.Entry(seq)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if e.Kind.movesBalanceOnly() {
		return nil, false, nil
	}
	return e, true, nil
}

// ReversedBy returns the id of the reversal of settlementID, if any.
func (db *DB) ReversedBy(settlementID string) (reversalID string, ok bool, err error) {
	seq, valid := ParseSettlementID(settlementID)
	if !valid {
		return "", false, nil
	}
	kb := getKeyBuf()
	kb.b = appendReversedKey(kb.b[:0], seq)
	var rev uint64
	found, err := db.lookup(kb, func(v []byte) (err error) {
		rev, err = decodeSeqValue(v)
		return err
	})
	putKeyBuf(kb)
	if err != nil || !found {
		return "", false, err
	}
	if err := db.waitDurable(rev); errors.Is(err, ErrWriteFailed) {
		// The reversal's batch failed: it stays visible until the
		// restart, but is not durable. The settlement is, and reads of
		// it keep working as for any other: not reversed, as far as the
		// disk is known to say (the reversal was answered 503).
		return "", false, nil
	} else if err != nil {
		return "", false, err
	}
	return SettlementID(rev), true, nil
}

// Scan calls fn with each entry from seq from (1 if 0) up to the durable
// head as of the call, in order, stopping at fn's first error, which it
// returns. fn may keep the entry.
func (db *DB) Scan(from uint64, fn func(*Entry) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return db.scanValues(max(from, 1), db.head.Load().seq, func(seq uint64, v []byte) error {
		e := new(Entry)
		if err := DecodeEntry(v, e); err != nil {
			return fmt.Errorf("ledger: entry %d: %w", seq, err)
		}
		return fn(e)
	})
}

// Pages of scanValues: at most this many entries, or bytes once past it.
const (
	scanPageEntries = 256
	scanPageBytes   = 1 << 20
)

// scanPage is a page of stored entries: seqs[i]'s value is
// buf[ends[i-1]:ends[i]].
type scanPage struct {
	seqs []uint64
	ends []int
	buf  []byte
}

// scanValues calls fn with each stored entry from seq from to seq to
// (inclusive) and its stored value (valid only during the call), in order,
// stopping at fn's first error. It reads a page at a time and closes its
// iterator before calling fn, so fn may block (an export waiting for its
// client) without holding an iterator that Close would find open; once the
// ledger is closed it returns ErrClosed instead of reading on.
func (db *DB) scanValues(from, to uint64, fn func(seq uint64, v []byte) error) error {
	var p scanPage
	for from <= to {
		if err := db.readPage(&p, from, to); err != nil {
			return err
		}
		if len(p.seqs) == 0 {
			return nil
		}
		start := 0
		for i, seq := range p.seqs {
			if err := fn(seq, p.buf[start:p.ends[i]]); err != nil {
				return err
			}
			start = p.ends[i]
		}
		from = p.seqs[len(p.seqs)-1] + 1
	}
	return nil
}

// readPage reads the next page of entries from..to into p, under scanMu.
func (db *DB) readPage(p *scanPage, from, to uint64) (err error) {
	db.scanMu.RLock()
	defer db.scanMu.RUnlock()
	if db.closed.Load() {
		return ErrClosed
	}
	p.seqs, p.ends, p.buf = p.seqs[:0], p.ends[:0], p.buf[:0]
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: appendEntryKey(nil, from), UpperBound: appendEntryKey(nil, to+1)})
	if err != nil {
		return unreadable(err)
	}
	defer func() {
		if cerr := it.Close(); err == nil {
			err = unreadable(cerr)
		}
	}()
	for ok := it.First(); ok && len(p.seqs) < scanPageEntries && len(p.buf) < scanPageBytes; ok = it.Next() {
		p.seqs = append(p.seqs, be.Uint64(it.Key()[1:]))
		p.buf = append(p.buf, it.Value()...)
		p.ends = append(p.ends, len(p.buf))
	}
	return unreadable(it.Error())
}

// Verify walks the whole chain up to the durable head and checks that the
// entries are 1..head without gaps, each decodes, carries its own seq and
// id, links to its predecessor's hash, and hashes to its stored Hash, and
// that the last one is the recorded head. It returns the number of entries
// checked; a broken chain gives a *ChainError naming the first bad seq.
func (db *DB) Verify() (n uint64, err error) {
	if db.closed.Load() {
		return 0, ErrClosed
	}
	head := db.head.Load()
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{pfxEntry},
		UpperBound: appendEntryKey(nil, head.seq+1),
	})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var (
		prev [32]byte
		want uint64 = 1
		e    Entry
		id   []byte
	)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		seq, ok := entryKeySeq(k)
		if !ok {
			return n, &ChainError{Seq: want, Reason: fmt.Sprintf("malformed entry key %x", k)}
		}
		if seq != want {
			return n, &ChainError{Seq: want, Reason: "entry missing"}
		}
		v := it.Value()
		if len(v) < 33 {
			if err := it.Error(); err != nil {
				return n, &ChainError{Seq: seq, Reason: fmt.Sprintf("unreadable: %v", err)}
			}
			return n, &ChainError{Seq: seq, Reason: "entry truncated"}
		}
		if EntryHash(prev, v[:len(v)-32]) != [32]byte(v[len(v)-32:]) {
			// Either the entry's bytes were altered, or it does not follow
			// its predecessor; tell which when it decodes.
			if DecodeEntry(v, &e) == nil && e.PrevHash != prev {
				if e.Seq != seq {
					return n, &ChainError{Seq: seq, Reason: fmt.Sprintf("entry records seq %d (moved or reordered)", e.Seq)}
				}
				return n, &ChainError{Seq: seq, Reason: "previous hash does not match the previous entry"}
			}
			return n, &ChainError{Seq: seq, Reason: "hash does not match the entry's contents (altered)"}
		}
		if err := DecodeEntry(v, &e); err != nil {
			return n, &ChainError{Seq: seq, Reason: fmt.Sprintf("undecodable: %v", err)}
		}
		if e.Seq != seq {
			return n, &ChainError{Seq: seq, Reason: fmt.Sprintf("entry records seq %d (moved or reordered)", e.Seq)}
		}
		if e.PrevHash != prev {
			return n, &ChainError{Seq: seq, Reason: "previous hash does not match the previous entry"}
		}
		id = id[:0]
		if !e.Kind.movesBalanceOnly() {
			id = appendSettlementID(id, seq)
		}
		if !bytes.Equal(id, []byte(e.SettlementID)) {
			return n, &ChainError{Seq: seq, Reason: fmt.Sprintf("settlement id %q does not match seq", e.SettlementID)}
		}
		prev = e.Hash
		n++
		want++
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	if n < head.seq {
		return n, &ChainError{Seq: want, Reason: "entry missing"}
	}
	if prev != head.hash {
		return n, &ChainError{Seq: head.seq, Reason: "last entry's hash does not match the recorded head"}
	}
	return n, nil
}
