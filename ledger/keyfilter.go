package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
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
// a possible hit (a written key, or a false positive, about 0.1 % for each
// link of the filter, see below) goes to the store.
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
//
// It grows: a filter is a chain of such Bloom filters (links). Keys are
// added to the newest link; once it holds the number of keys it was sized
// for, a new link twice the size of all before it is started, and a lookup
// asks every link. Without growth a gateway that runs long enough saturates
// its filter (a filter sized at open for a million more codes, filled with
// four million, answers "maybe" for a fifth of new codes), and every
// "maybe" is a search of the store (bucketed.go).
//
// It hashes with a seeded xxhash rather than hash/maphash so that it can be
// saved and loaded again (keyfilter_file.go).
type keyFilter struct {
	seed  uint64
	links atomic.Pointer[[]*filterLink] // oldest first
	grow  sync.Mutex                    // serializes adding a link
}

// filterLink is one blocked Bloom filter of a keyFilter.
type filterLink struct {
	words    []atomic.Uint64 // blocks of keyFilterBlockWords words
	blocks   uint64
	capacity int64        // keys it was sized for, at keyFilterBitsPerKey
	n        atomic.Int64 // keys added (a key added twice counts twice)
}

const (
	keyFilterProbes     = 7
	keyFilterBlockWords = 8 // 512 bits
	keyFilterBlockBits  = 9 // log2(512): the bits of a probe
	keyFilterBitsPerKey = 16
	// keyFilterMinKeys is the least a filter is sized for (2 MiB).
	keyFilterMinKeys = 1 << 20
)

// newKeyFilter returns an empty filter sized for expected keys (at least
// keyFilterMinKeys).
func newKeyFilter(expected int) *keyFilter {
	return newKeyFilterOf(max(int64(expected), keyFilterMinKeys))
}

// newKeyFilterOf returns an empty filter whose first link holds capacity.
func newKeyFilterOf(capacity int64) *keyFilter {
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		panic(err) // crypto/rand does not fail
	}
	f := &keyFilter{seed: binary.LittleEndian.Uint64(seed[:])}
	links := []*filterLink{newFilterLink(capacity)}
	f.links.Store(&links)
	return f
}

func newFilterLink(capacity int64) *filterLink {
	blocks := (uint64(capacity)*keyFilterBitsPerKey + 511) / 512
	// Slices this large are page-aligned, so blocks are cache lines.
	return &filterLink{words: make([]atomic.Uint64, blocks*keyFilterBlockWords), blocks: blocks, capacity: capacity}
}

// hash is the key's 64-bit hash under the filter's seed.
func (f *keyFilter) hash(key []byte) uint64 {
	h := xxhash.Sum64(key) ^ f.seed
	// splitmix64's finalizer: every bit of h depends on every bit of the
	// seed, so the seed decides where a key's block is.
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// locate returns the first word of h's block in l and the bits of its
// probes (keyFilterProbes × 9 bits of a second mix of h).
func (l *filterLink) locate(h uint64) (block uint64, probes uint64) {
	block = (h >> 32) * l.blocks >> 32 * keyFilterBlockWords
	p := (h ^ h>>33) * 0xff51afd7ed558ccd // murmur3's finalizer
	p = (p ^ p>>33) * 0xc4ceb9fe1a85ec53
	return block, p ^ p>>33
}

func (l *filterLink) add(h uint64) {
	block, p := l.locate(h)
	w := l.words[block : block+keyFilterBlockWords : block+keyFilterBlockWords]
	for i := 0; i < keyFilterProbes; i++ {
		bit := p & (1<<keyFilterBlockBits - 1)
		w[bit/64].Or(1 << (bit % 64))
		p >>= keyFilterBlockBits
	}
}

func (l *filterLink) has(h uint64) bool {
	block, p := l.locate(h)
	w := l.words[block : block+keyFilterBlockWords : block+keyFilterBlockWords]
	for i := 0; i < keyFilterProbes; i++ {
		bit := p & (1<<keyFilterBlockBits - 1)
		if w[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
		p >>= keyFilterBlockBits
	}
	return true
}

func (f *keyFilter) add(key []byte) {
	links := *f.links.Load()
	l := links[len(links)-1]
	l.add(f.hash(key))
	switch n := l.n.Add(1); {
	case n == l.capacity/4*3:
		// Allocating and zeroing a link of hundreds of megabytes takes
		// a while: not on the caller's time (the writer adds keys)...
		go f.extend(l)
	case n >= l.capacity:
		// ... unless it has not happened yet: then every add waits for
		// it, so that no link is filled much past its capacity.
		f.extend(l)
	}
}

// extend starts a new link after full, if full is still the newest: twice as big as all links so far, so that a
// filter grown from a million keys to a billion has eleven links.
func (f *keyFilter) extend(full *filterLink) {
	f.grow.Lock()
	defer f.grow.Unlock()
	links := *f.links.Load()
	if links[len(links)-1] != full {
		return
	}
	var total int64
	for _, l := range links {
		total += l.capacity
	}
	grown := append(links[:len(links):len(links)], newFilterLink(2*total))
	f.links.Store(&grown)
}

func (f *keyFilter) addString(key string) { f.add([]byte(key)) }

// mayContain is false only for a key never added.
func (f *keyFilter) mayContain(key string) bool { return f.mayContainBytes([]byte(key)) }

// mayContainBytes is mayContain for a key in bytes.
func (f *keyFilter) mayContainBytes(key []byte) bool {
	h := f.hash(key)
	links := *f.links.Load()
	for i := len(links) - 1; i >= 0; i-- {
		if links[i].has(h) {
			return true
		}
	}
	return false
}

// loadFilters builds the trace-code, idempotency and counters filters from
// the keys in the store.
func (db *DB) loadFilters() error {
	err := db.loadSavedFilters()
	if err == nil {
		return nil
	}
	if err != errNoFilterFile {
		db.log.Warn().Err(err).Msg("ledger: saved key filters not used; building them from the keys")
	}
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
	// Room for half as many again before the filter grows a link.
	f := newKeyFilter(n + n/2)
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
