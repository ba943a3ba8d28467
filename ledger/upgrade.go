package ledger

import (
	"errors"
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

// upgrade brings a store of format from (1 or 2) to formatBucketed (and
// Open then migrateBalances to storeFormat): it
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
	if err := db.pdb.Set(keyFormat, []byte{formatBucketed, db.bshift}, pebble.Sync); err != nil {
		return fmt.Errorf("ledger: upgrade: %w", err)
	}
	db.log.Info().Uint8("from", from).Uint8("to", formatBucketed).Int("trace_codes", traces).
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

// keyMigrating records how far migrateBalances got: a phase byte (1:
// persons, 2: credits) and the last registry key it migrated.
var keyMigrating = []byte("mmigrating")

// migrateChunk is the number of persons or credits one batch of
// migrateBalances migrates.
const migrateChunk = 4096

// migrateBalances brings a store of formatBucketed to storeFormat: the
// opening balances and credits it holds as registry records only become
// entries of the chain, so that the audit can check them. It appends, in
// key order, a migrated opening balance (KindOpening, Migrated) for every
// person with one that is not 0, then a migrated credit (KindCredit,
// Migrated) for every credit record, whose record then names it. A
// migrated entry states the move the balance record already holds (it
// moves no balance) and, for a credit, the balance its answer gave, which
// a replay keeps answering. Each batch migrates a chunk, marks the store
// format 4 (a gateway of format 3 refuses it from then on) and records
// how far it got under keyMigrating; the last one deletes that record,
// which finishes the upgrade: a crash in between goes on from there at
// the next Open. Runs before the writer
// starts, through a writer of its own.
func (db *DB) migrateBalances() error {
	phase, after := byte(1), []byte(nil)
	if v, err := db.get(keyMigrating); err == nil && len(v) >= 1 && (v[0] == 1 || v[0] == 2) {
		phase, after = v[0], v[1:]
	} else if err != nil && !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("ledger: migrating balances: %w", err)
	}
	w := &writer{db: db, reqs: make([]*request, 0, 1)}
	var openings, credits int
	for phase <= 2 {
		pfx := byte(pfxPerson)
		if phase == 2 {
			pfx = pfxCredit
		}
		type rec struct{ k, v []byte }
		var recs []rec
		lower := []byte{pfx}
		if len(after) > 0 {
			lower = append(append([]byte(nil), after...), 0)
		}
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{pfx + 1}})
		if err != nil {
			return err
		}
		for ok := it.First(); ok && len(recs) < migrateChunk; ok = it.Next() {
			recs = append(recs, rec{append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)})
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("ledger: migrating balances: %w", err)
		}
		last := len(recs) < migrateChunk && phase == 2
		r := &request{done: make(chan struct{}, 1)}
		r.opEntries = func(b *pebble.Batch, app func(*Entry) error) (int, error) {
			for _, x := range recs {
				region, id, ok := splitLP(x.k[1:])
				if !ok {
					return 0, fmt.Errorf("%w: registry key %q", ErrCorrupt, x.k)
				}
				if phase == 1 {
					opening, err := migratedOpening(b, x.k, x.v, string(region), string(id))
					if err != nil {
						return 0, err
					}
					if opening > 0 {
						if err := app(&Entry{Kind: KindOpening, InsuredRegion: string(region), PersonID: string(id),
							BalanceChange: opening, BalanceAfter: opening, Migrated: true}); err != nil {
							return 0, fmt.Errorf("ledger: opening balance of %s/%s: %w", region, id, err)
						}
						openings++
					}
					continue
				}
				c, err := decodeCreditValue(x.v, false)
				if err != nil {
					return 0, fmt.Errorf("credit %s/%s: %w", region, id, err)
				}
				if err := app(&Entry{Kind: KindCredit, RequestID: string(id), InsuredRegion: string(region),
					PersonID: c.person, BalanceChange: c.amount, BalanceAfter: c.after, Migrated: true}); err != nil {
					return 0, fmt.Errorf("ledger: credit %s/%s: %w", region, id, err)
				}
				credits++
			}
			if last {
				if err := b.Delete(keyMigrating, nil); err != nil {
					return 0, err
				}
				return 0, b.Set(keyFormat, []byte{storeFormat, db.bshift}, nil)
			}
			next := []byte{phase}
			switch {
			case len(recs) == migrateChunk:
				next = append(next, recs[len(recs)-1].k...)
			default: // the persons are done: the credits next
				next[0] = 2
			}
			// The format is 4 from the first batch on: a gateway of format
			// 3 cannot read the entries appended so far (nor the credit
			// records that name them), so it must refuse the store as a
			// newer one; readFormat reads it as 3 while keyMigrating says
			// the upgrade is not done.
			if err := b.Set(keyFormat, []byte{storeFormat, db.bshift}, nil); err != nil {
				return 0, err
			}
			return 0, b.Set(keyMigrating, next, nil)
		}
		w.reqs = append(w.reqs[:0], r)
		w.process()
		if r.err != nil {
			return fmt.Errorf("ledger: migrating balances: %w", r.err)
		}
		if last {
			break
		}
		if len(recs) == migrateChunk {
			after = recs[len(recs)-1].k
		} else {
			phase, after = 2, nil
		}
	}
	db.format = storeFormat
	db.log.Info().Uint8("from", formatBucketed).Uint8("to", storeFormat).Int("opening_balances", openings).
		Int("credits", credits).Msg("ledger: store format upgraded: credits and opening balances are entries")
	return nil
}

// migratedOpening is the opening balance of the person of registry record
// (k, v): its opening-balance record, or, in a store written before that
// record existed, the person record's (which the record then gets, so that
// an upsert and the audit read it).
func migratedOpening(b *pebble.Batch, k, v []byte, region, id string) (int64, error) {
	var opening int64
	found, err := getIn(b, appendOpeningKey(nil, region, id), func(v []byte) (err error) {
		opening, err = decodeBalance(v)
		return err
	})
	if err != nil || found {
		return opening, err
	}
	p, err := decodePerson(v)
	if err != nil {
		return 0, fmt.Errorf("ledger: person %s/%s: %w", region, id, err)
	}
	return p.OpeningBalance, b.Set(appendOpeningKey(nil, region, id), be.AppendUint64(nil, uint64(p.OpeningBalance)), nil)
}
