package ledger

import (
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// traceFilter is an in-memory Bloom filter over every trace code the store
// has ever marked. Almost every code a bill carries is new, and proving a
// key absent from Pebble costs a lookup in every overlapping table: trace
// codes are random, so every L0 table overlaps them all, and the lookups
// grew from microseconds to the gateway's main cost as the ledger grew
// (bench/RESULTS.md). The filter answers "never marked" from memory; only
// a possible hit (a marked code, or a false positive, about 1 % at the
// start) goes to the store.
//
// It is built when the store opens (a scan of the trace-code keys) and a
// settlement's codes are added after its commit and before their
// reservations are released (tracecodes.go), so a code can never be
// marked in the store yet unknown to the filter by the time another entry
// may check it. Words are set with atomic OR: checks run concurrently.
type traceFilter struct {
	seed  maphash.Seed
	words []atomic.Uint64
	mask  uint64 // number of bits − 1 (a power of two)
}

const traceFilterProbes = 7

func newTraceFilter(expected int) *traceFilter {
	bits := uint64(1 << 24) // 2 MiB at least
	for bits < uint64(expected)*16 {
		bits <<= 1
	}
	return &traceFilter{seed: maphash.MakeSeed(), words: make([]atomic.Uint64, bits/64), mask: bits - 1}
}

func (f *traceFilter) hashes(code []byte) (uint64, uint64) {
	h1 := maphash.Bytes(f.seed, code)
	h2 := h1>>33 | h1<<31 | 1 // odd: every probe distinct
	return h1, h2
}

func (f *traceFilter) add(code []byte) {
	h, d := f.hashes(code)
	for i := 0; i < traceFilterProbes; i++ {
		bit := h & f.mask
		f.words[bit/64].Or(1 << (bit % 64))
		h += d
	}
}

func (f *traceFilter) addString(code string) { f.add([]byte(code)) }

// mayContain is false only for a code never added.
func (f *traceFilter) mayContain(code string) bool {
	h, d := f.hashes([]byte(code))
	for i := 0; i < traceFilterProbes; i++ {
		bit := h & f.mask
		if f.words[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
		h += d
	}
	return true
}

// loadTraceFilter builds the filter from every trace-code key in the store.
func (db *DB) loadTraceFilter() error {
	began := time.Now()
	lower := []byte{pfxTrace}
	upper := []byte{pfxTrace + 1}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var codes [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		codes = append(codes, append([]byte(nil), it.Key()[1:]...))
	}
	if err := it.Close(); err != nil {
		return err
	}
	f := newTraceFilter(len(codes) + 1_000_000)
	for _, c := range codes {
		f.add(c)
	}
	db.tfilter = f
	if len(codes) > 0 {
		db.log.Info().Int("trace_codes", len(codes)).Dur("took", time.Since(began)).Msg("ledger: trace-code filter built")
	}
	return nil
}
