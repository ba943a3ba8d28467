package ledger

import (
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// keyFilter is an in-memory Bloom filter over every key of one kind the
// store holds: trace codes (tfilter), idempotency keys (ifilter) and
// counters keys (cfilter: a person's year without settlements has none).
// Almost every code a bill carries and every request id is new, and proving
// a key absent from Pebble costs a lookup in every overlapping table: the
// keys are random, so every L0 table overlaps them all, and the lookups
// grew from microseconds to the gateway's main cost as the ledger grew
// (bench/RESULTS.md). The filter answers "never written" from memory; only
// a possible hit (a written key, or a false positive, about 1 % while the
// store holds fewer keys than the filter was sized for) goes to the store.
//
// It is built when the store opens (a scan of the keys) and a key is added
// no later than it becomes visible: a settlement's trace codes after its
// commit and before their reservations are released (tracecodes.go), an
// idempotency or counters key when the writer puts it into a batch
// (writer.go). So a
// key can never be in the store yet unknown to the filter by the time
// another request may look for it. Words are set with atomic OR: lookups
// run concurrently.
type keyFilter struct {
	seed  maphash.Seed
	words []atomic.Uint64
	mask  uint64 // number of bits − 1 (a power of two)
}

const keyFilterProbes = 7

func newKeyFilter(expected int) *keyFilter {
	bits := uint64(1 << 24) // 2 MiB at least
	for bits < uint64(expected)*16 {
		bits <<= 1
	}
	return &keyFilter{seed: maphash.MakeSeed(), words: make([]atomic.Uint64, bits/64), mask: bits - 1}
}

func (f *keyFilter) hashes(code []byte) (uint64, uint64) {
	h1 := maphash.Bytes(f.seed, code)
	h2 := h1>>33 | h1<<31 | 1 // odd: every probe distinct
	return h1, h2
}

func (f *keyFilter) add(code []byte) {
	h, d := f.hashes(code)
	for i := 0; i < keyFilterProbes; i++ {
		bit := h & f.mask
		f.words[bit/64].Or(1 << (bit % 64))
		h += d
	}
}

func (f *keyFilter) addString(code string) { f.add([]byte(code)) }

// mayContain is false only for a key never added.
func (f *keyFilter) mayContain(code string) bool { return f.mayContainBytes([]byte(code)) }

// mayContainBytes is mayContain for a key in bytes.
func (f *keyFilter) mayContainBytes(code []byte) bool {
	h, d := f.hashes(code)
	for i := 0; i < keyFilterProbes; i++ {
		bit := h & f.mask
		if f.words[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
		h += d
	}
	return true
}

// loadFilters builds the trace-code, idempotency and counters filters from
// the keys in the store.
func (db *DB) loadFilters() error {
	var err error
	if db.tfilter, err = db.loadFilter(pfxTrace, "trace codes"); err != nil {
		return err
	}
	if db.ifilter, err = db.loadFilter(pfxIdem, "idempotency keys"); err != nil {
		return err
	}
	db.cfilter, err = db.loadFilter(pfxCounters, "counters keys")
	return err
}

// loadFilter builds a filter over the keys with prefix p (without it).
func (db *DB) loadFilter(p byte, what string) (*keyFilter, error) {
	began := time.Now()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		return nil, err
	}
	// Counted first so that the filter is sized once, without holding
	// every key in memory.
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	f := newKeyFilter(n + 1_000_000)
	for ok := it.First(); ok; ok = it.Next() {
		f.add(it.Key()[1:])
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("ledger: %s filter: %w", what, err)
	}
	if n > 0 {
		db.log.Info().Int("keys", n).Str("kind", what).Dur("took", time.Since(began)).Msg("ledger: key filter built")
	}
	return f, nil
}
