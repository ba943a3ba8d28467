package ledger

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/tlog"
)

// deriver maintains the state derived from entries, in the entry's batch:
// the per-month pair totals and month records (clearing statements), the
// per-hospital rows (reconciliation) and the Merkle tree's stored hashes
// (proofs, checkpoints).
//
// Pair totals and month records are coalesced: updated in memory and
// written by flush once per batch (before any registry operation of the
// batch runs, and before the commit), each touched key once. They stay
// cached across batches — the writer is their only writer, so after a
// commit the cache is what the store holds — and a month's are dropped once
// a later month has begun (commit times never go back, so it is never
// touched again). The Merkle tree's frontier (the last stored hash of each
// level: exactly what tlog reads to add a record) is cached too. A failed
// batch clears everything (reset); the DB accepts no writes after one
// anyway. So in the steady state the derived state costs the writer no
// read at all. The zero value is ready to use.
type deriver struct {
	pairs  map[pairID]*pairState
	months map[Month]*monthState
	latest Month // the latest month touched
	front  [64]frontHash
	hashes []tlog.Hash // prepared stored hashes of the entry being applied
	idx    []int64
	key    []byte
	val    []byte
}

type pairID struct {
	m                 Month
	insured, treating string
}

type pairState struct {
	PairTotals
	dirty bool
}

type monthState struct {
	monthMeta
	dirty bool
}

// frontHash is a cached stored hash: index+1 (0: none) and the hash.
type frontHash struct {
	index1 int64
	hash   tlog.Hash
}

// prepare does every read that apply needs for the sealed entry e, so that a
// failing read refuses the entry before anything of it is written.
func (d *deriver) prepare(r pebble.Reader, e *Entry) error {
	if d.pairs == nil {
		d.pairs, d.months = map[pairID]*pairState{}, map[Month]*monthState{}
	}
	m := MonthOf(e.CommittedAt)
	id := pairID{m, e.InsuredRegion, e.TreatingRegion}
	if _, ok := d.pairs[id]; !ok && !e.Kind.movesBalanceOnly() {
		p := &pairState{PairTotals: PairTotals{InsuredRegion: e.InsuredRegion, TreatingRegion: e.TreatingRegion}}
		d.key = appendPairKey(d.key[:0], m, e.InsuredRegion, e.TreatingRegion)
		if _, err := getFrom(r, d.key, func(v []byte) error { return decodePairValue(v, &p.PairTotals) }); err != nil {
			return fmt.Errorf("ledger: month %s pair %s→%s: %w", m, e.InsuredRegion, e.TreatingRegion, err)
		}
		d.pairs[id] = p
	}
	if _, ok := d.months[m]; !ok {
		mm := &monthState{}
		d.key = appendMonthKey(d.key[:0], pfxMonth, m)
		if _, err := getFrom(r, d.key, func(v []byte) (err error) {
			mm.monthMeta, err = decodeMonthMeta(v)
			return err
		}); err != nil {
			return err
		}
		d.months[m] = mm
	}
	hs, err := tlog.StoredHashes(int64(e.Seq-1), e.Hash[:], frontReader{d, r})
	if err != nil {
		return fmt.Errorf("ledger: Merkle tree at entry %d: %w", e.Seq, err)
	}
	d.hashes = hs
	return nil
}

// frontReader serves stored hashes from the cached frontier, falling back
// to the store.
type frontReader struct {
	d *deriver
	r pebble.Reader
}

func (f frontReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	f.d.idx = f.d.idx[:0]
	for i, idx := range indexes {
		level, _ := tlog.SplitStoredHashIndex(idx)
		if c := &f.d.front[level]; c.index1 == idx+1 {
			out[i] = c.hash
			continue
		}
		f.d.idx = append(f.d.idx, idx)
	}
	if len(f.d.idx) == 0 {
		return out, nil
	}
	read, err := hashReader{f.r}.ReadHashes(f.d.idx)
	if err != nil {
		return nil, err
	}
	for i, j := 0, 0; i < len(indexes); i++ {
		level, _ := tlog.SplitStoredHashIndex(indexes[i])
		if f.d.front[level].index1 != indexes[i]+1 {
			out[i] = read[j]
			j++
		}
	}
	return out, nil
}

// apply adds e's derived writes (after prepare).
func (d *deriver) apply(e *Entry, set func(k, v []byte)) {
	m := MonthOf(e.CommittedAt)
	// Credits and opening balances are in the chain, the tree and the
	// month's range of entries, but in no pair's totals (clearing) and no
	// hospital's rows.
	balanceOnly := e.Kind.movesBalanceOnly()
	if !balanceOnly {
		p := d.pairs[pairID{m, e.InsuredRegion, e.TreatingRegion}]
		if e.Kind == KindReversal {
			p.Reversals++
		} else {
			p.Settlements++
		}
		p.Amounts.add(&e.Amounts)
		p.dirty = true
	}
	mm := d.months[m]
	if mm.first == 0 {
		mm.first = e.Seq
	}
	mm.last, mm.hash, mm.dirty = e.Seq, e.Hash, true
	d.latest = max(d.latest, m)

	var rev uint64
	if e.Kind == KindReversal {
		rev, _ = ParseSettlementID(e.Reverses)
	}
	if !balanceOnly {
		d.key = appendHospitalRowKey(d.key[:0], e.Hospital, e.CommittedAt, e.Seq)
		d.val = appendHospitalRowValue(d.val[:0], e, rev)
		set(d.key, d.val)
	}

	// hashes[0] is the leaf (level 0), which is not stored: it is
	// computed from the entry's Hash when needed (merkle.go).
	idx := tlog.StoredHashIndex(0, int64(e.Seq-1))
	for i := range d.hashes {
		if i > 0 {
			d.key = appendTreeKey(d.key[:0], idx+int64(i))
			set(d.key, d.hashes[i][:])
		}
		level, _ := tlog.SplitStoredHashIndex(idx + int64(i))
		d.front[level] = frontHash{idx + int64(i) + 1, d.hashes[i]}
	}
	d.hashes = d.hashes[:0]
}

// flush writes the pair totals and month records changed since the last
// flush into b, and drops those of months before the latest.
func (d *deriver) flush(b *pebble.Batch) error {
	for id, p := range d.pairs {
		if p.dirty {
			d.key = appendPairKey(d.key[:0], id.m, id.insured, id.treating)
			d.val = appendPairValue(d.val[:0], &p.PairTotals)
			if err := b.Set(d.key, d.val, nil); err != nil {
				return err
			}
			p.dirty = false
		}
		if id.m < d.latest {
			delete(d.pairs, id)
		}
	}
	for m, mm := range d.months {
		if mm.dirty {
			d.key = appendMonthKey(d.key[:0], pfxMonth, m)
			d.val = appendMonthMeta(d.val[:0], &mm.monthMeta)
			if err := b.Set(d.key, d.val, nil); err != nil {
				return err
			}
			mm.dirty = false
		}
		if m < d.latest {
			delete(d.months, m)
		}
	}
	return nil
}

// reset forgets everything cached (after a failed batch).
func (d *deriver) reset() {
	clear(d.pairs)
	clear(d.months)
	d.latest = 0
	d.front = [64]frontHash{}
	d.hashes = d.hashes[:0]
}

// getFrom is getIn for any reader.
func getFrom(r pebble.Reader, key []byte, fn func(v []byte) error) (found bool, err error) {
	v, closer, err := r.Get(key)
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

// derivedPrefixes are the key prefixes of derived state, which rebuild
// recomputes from the entries.
var derivedPrefixes = []byte{pfxPair, pfxMonth, pfxHospRow, pfxTree}

// rebuildDerived recomputes every derived record from the entries, in
// batches: a store of format 1 (written before derived state existed) is
// upgraded on Open, and a crash in the middle simply runs it again, as the
// format is written only once every step of the upgrade is done
// (upgrade.go). Closed months are not touched (a format-1 store has none).
func (db *DB) rebuildDerived(head uint64) error {
	b := db.pdb.NewIndexedBatch()
	for _, p := range derivedPrefixes {
		if err := b.DeleteRange([]byte{p}, []byte{p + 1}, nil); err != nil {
			return err
		}
	}
	d := &deriver{}
	var werr error
	set := func(k, v []byte) {
		if werr == nil {
			werr = b.Set(k, v, nil)
		}
	}
	commit := func() error {
		if err := d.flush(b); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return err
		}
		_ = b.Close()
		b = db.pdb.NewIndexedBatch()
		return nil
	}
	n := 0
	err := db.Scan(1, func(e *Entry) error {
		if e.Seq > head {
			return nil
		}
		if err := d.prepare(b, e); err != nil {
			return err
		}
		d.apply(e, set)
		if n++; n%4096 == 0 {
			return commit()
		}
		return nil
	})
	if err == nil {
		err = commit()
	}
	_ = b.Close()
	if err != nil {
		return fmt.Errorf("ledger: rebuilding derived state: %w", err)
	}
	db.log.Info().Uint64("entries", head).Msg("ledger: derived state (month totals, hospital rows, Merkle tree) rebuilt")
	return nil
}
