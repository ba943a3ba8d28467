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
// a possible hit (a written key, or a false positive, about 0.1 % while the
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
//
// The filter is blocked: all probes of a key fall in one 512-bit block, a
// 64-byte cache line, so a check or an add costs one cache miss rather than
// one per probe. At 10 million entries the trace-code filter alone is
// ≈ 280 MB and every probe of a plain Bloom filter missed the caches; a
// settlement checks and adds ≈ 30 keys. At 16 bits a key the false-positive
// rate is ≈ 0.1 % (a plain filter: 0.05 %), and a false positive costs
// only a lookup in the store.
type keyFilter struct {
	seed   maphash.Seed
	words  []atomic.Uint64 // blocks of keyFilterBlockWords words
	blocks uint64          // a power of two
}

const (
	keyFilterProbes     = 7
	keyFilterBlockWords = 8 // 512 bits
	keyFilterBlockBits  = 9 // log2(512): the bits of a probe
)

func newKeyFilter(expected int) *keyFilter {
	bits := uint64(1 << 24) // 2 MiB at least
	for bits < uint64(expected)*16 {
		bits <<= 1
	}
	// Slices this large are page-aligned, so blocks are cache lines.
	return &keyFilter{seed: maphash.MakeSeed(), words: make([]atomic.Uint64, bits/64), blocks: bits / 512}
}

// locate returns the first word of key's block and the bits of its probes
// (keyFilterProbes × 9 bits of a second, mixed hash).
func (f *keyFilter) locate(key []byte) (block uint64, probes uint64) {
	h := maphash.Bytes(f.seed, key)
	// The block from the high 32 bits; the probes from all 64, through
	// splitmix64's finalizer, so that they are independent of the block.
	block = (h >> 32) * f.blocks >> 32 * keyFilterBlockWords
	p := (h ^ h>>30) * 0xbf58476d1ce4e5b9
	p = (p ^ p>>27) * 0x94d049bb133111eb
	return block, p ^ p>>31
}

func (f *keyFilter) add(key []byte) {
	block, p := f.locate(key)
	w := f.words[block : block+keyFilterBlockWords : block+keyFilterBlockWords]
	for i := 0; i < keyFilterProbes; i++ {
		bit := p & (1<<keyFilterBlockBits - 1)
		w[bit/64].Or(1 << (bit % 64))
		p >>= keyFilterBlockBits
	}
}

func (f *keyFilter) addString(key string) { f.add([]byte(key)) }

// mayContain is false only for a key never added.
func (f *keyFilter) mayContain(key string) bool { return f.mayContainBytes([]byte(key)) }

// mayContainBytes is mayContain for a key in bytes.
func (f *keyFilter) mayContainBytes(key []byte) bool {
	block, p := f.locate(key)
	w := f.words[block : block+keyFilterBlockWords : block+keyFilterBlockWords]
	for i := 0; i < keyFilterProbes; i++ {
		bit := p & (1<<keyFilterBlockBits - 1)
		if w[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
		p >>= keyFilterBlockBits
	}
	return true
}

// loadFilters builds the trace-code, idempotency and counters filters from
// the keys in the store.
func (db *DB) loadFilters() error {
	var err error
	if db.tfilter, err = db.loadFilter(pfxTrace, bucketKeyLen, "trace codes"); err != nil {
		return err
	}
	if db.ifilter, err = db.loadFilter(pfxIdem, bucketKeyLen, "idempotency keys"); err != nil {
		return err
	}
	db.cfilter, err = db.loadFilter(pfxCounters, 1, "counters keys")
	return err
}

// loadFilter builds a filter over the keys with prefix p, without their
// first header bytes (the prefix, and a bucket: bucketed.go).
func (db *DB) loadFilter(p byte, header int, what string) (*keyFilter, error) {
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
		f.add(it.Key()[header:])
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("ledger: %s filter: %w", what, err)
	}
	if n > 0 {
		db.log.Info().Int("keys", n).Str("kind", what).Dur("took", time.Since(began)).Msg("ledger: key filter built")
	}
	return f, nil
}
