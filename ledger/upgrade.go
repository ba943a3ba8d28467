package ledger

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Prefixes of the unbucketed records of formats 1 and 2:
//
//	t | trace code                   -> owner seq (8) | freeing reversal seq (8)
//	k | lp(hospital) | request id    -> body sha256 (32) | seq (8)
const (
	pfxTraceFlat = 't'
	pfxIdemFlat  = 'k'
)

// upgradeChunk is the number of records an upgrade batch moves.
const upgradeChunk = 1 << 16

// upgrade brings a store of format from (1 or 2) to storeFormat: it
// rebuilds the derived state of a format-1 store, moves the trace-code and
// idempotency records into their buckets (bucketed.go), and writes the
// format last. Each batch moves records from the old prefix to the new one
// (set and delete together), so a crash at any point leaves every record
// in exactly one place, and Open, finding the old format, goes on from
// there.
func (db *DB) upgrade(from byte, head uint64) error {
	if from == 1 {
		if err := db.rebuildDerived(head); err != nil {
			return err
		}
	}
	traces, err := db.moveFlat(pfxTraceFlat, pfxTrace, func(v []byte) (uint64, error) {
		owner, _, err := decodeTraceValue(v)
		return owner, err
	})
	if err != nil {
		return fmt.Errorf("ledger: upgrading trace codes: %w", err)
	}
	idems, err := db.moveFlat(pfxIdemFlat, pfxIdem, func(v []byte) (uint64, error) {
		id, err := decodeIdemValue(v)
		return id.Seq, err
	})
	if err != nil {
		return fmt.Errorf("ledger: upgrading idempotency keys: %w", err)
	}
	if err := db.pdb.Set(keyFormat, []byte{storeFormat, db.bshift}, pebble.Sync); err != nil {
		return fmt.Errorf("ledger: upgrade: %w", err)
	}
	db.log.Info().Uint8("from", from).Uint8("to", storeFormat).Int("trace_codes", traces).
		Int("idempotency_keys", idems).Msg("ledger: store format upgraded")
	return nil
}

// moveFlat moves every record under prefix from to prefix to, in the
// bucket of the seq that seqOf reads from its value.
func (db *DB) moveFlat(from, to byte, seqOf func(v []byte) (uint64, error)) (moved int, err error) {
	lower, upper := []byte{from}, []byte{from + 1}
	var key, next []byte
	for {
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return moved, err
		}
		b := db.pdb.NewBatch()
		n := 0
		for ok := it.First(); ok && n < upgradeChunk; ok = it.Next() {
			k := it.Key()
			seq, err := seqOf(it.Value())
			if err != nil {
				_ = it.Close()
				_ = b.Close()
				return moved, fmt.Errorf("%w: record %q: %v", ErrCorrupt, k, err)
			}
			key = appendBucketHeader(key[:0], to, db.bucket(seq))
			key = append(key, k[1:]...)
			_ = b.Set(key, it.Value(), nil)
			_ = b.Delete(k, nil)
			// The next chunk starts after this key, past its tombstone.
			next = append(append(next[:0], k...), 0)
			n++
		}
		if err := it.Close(); err != nil {
			_ = b.Close()
			return moved, err
		}
		if n == 0 {
			_ = b.Close()
			return moved, nil
		}
		lower = append([]byte(nil), next...) // the iterator held the old bound
		if err := b.Commit(pebble.Sync); err != nil {
			return moved, err
		}
		_ = b.Close()
		moved += n
	}
}
