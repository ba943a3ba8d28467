package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"runtime"
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
// no later than it becomes visible: a settlement's trace codes when they
// are checked, before the commit (and again after it if the filter was
// rebuilt meanwhile), always before their reservations are released
// (tracecodes.go); an idempotency or counters key when the writer puts it
// into a batch (writer.go). So a key can never be in the store yet unknown
// to the filter by the time another request may look for it. Words are set
// with atomic OR: lookups run concurrently.
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
// A chain of many links answers "maybe" more often (about 0.1 % a full
// link) and costs a cache miss a link for every new key, so once a filter
// has maxFilterLinks links it is rebuilt in the background into one link
// from the keys in the store (rebuildFilter), then swapped in.
//
// It hashes with a seeded xxhash rather than hash/maphash so that it can be
// saved and loaded again (keyfilter_file.go).
type keyFilter struct {
	state atomic.Pointer[filterState]
	grow  sync.Mutex // serializes replacing state
	// next, while the filter is being rebuilt, is the new state: every key
	// added goes to it too.
	next atomic.Pointer[filterState]
	// onFull, if set, is called once the filter has maxFilterLinks links,
	// and again each time it gains one after that; it must not block.
	onFull func()
}

// filterState is a filter's hash seed and links, replaced whole.
type filterState struct {
	seed  uint64
	links []*filterLink // oldest first
}

// filterLink is one blocked Bloom filter of a keyFilter.
type filterLink struct {
	words    []atomic.Uint64 // blocks of keyFilterBlockWords words
	blocks   uint64
	capacity int64        // keys it was sized for, at keyFilterBitsPerKey
	n        atomic.Int64 // keys added (see keyFilter.add)
	// extending is set once a background extend was started for it.
	extending atomic.Bool
}

const (
	keyFilterProbes     = 7
	keyFilterBlockWords = 8 // 512 bits
	keyFilterBlockBits  = 9 // log2(512): the bits of a probe
	keyFilterBitsPerKey = 16
	// keyFilterMinKeys is the least a filter is sized for (2 MiB).
	keyFilterMinKeys = 1 << 20
	// maxFilterLinks is the number of links that starts a rebuild.
	maxFilterLinks = 3
)

// newKeyFilter returns an empty filter sized for expected keys (at least
// keyFilterMinKeys).
func newKeyFilter(expected int) *keyFilter {
	return newKeyFilterOf(max(int64(expected), keyFilterMinKeys))
}

// newKeyFilterOf returns an empty filter whose first link holds capacity.
func newKeyFilterOf(capacity int64) *keyFilter {
	f := &keyFilter{}
	f.state.Store(newFilterState(capacity))
	return f
}

// newFilterState returns a new seed and one empty link of capacity.
func newFilterState(capacity int64) *filterState {
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		panic(err) // crypto/rand does not fail
	}
	return &filterState{seed: binary.LittleEndian.Uint64(seed[:]), links: []*filterLink{newFilterLink(capacity)}}
}

func newFilterLink(capacity int64) *filterLink {
	return newFilterLinkOf((uint64(capacity)*keyFilterBitsPerKey+511)/512, capacity)
}

// newFilterLinkOf returns an empty link of blocks, sized for capacity keys.
// Its words are outside the Go heap (mapWords) and are released once the
// link is unreachable; every method that reads the words keeps the link
// alive until it is done with them (runtime.KeepAlive).
func newFilterLinkOf(blocks uint64, capacity int64) *filterLink {
	// Mappings are page-aligned, so blocks are cache lines.
	words, mem := mapWords(blocks * keyFilterBlockWords)
	l := &filterLink{words: words, blocks: blocks, capacity: capacity}
	if mem != nil {
		runtime.AddCleanup(l, unmapWords, mem)
	}
	return l
}

// hash is the key's 64-bit hash under the seed.
func (st *filterState) hash(key []byte) uint64 {
	h := xxhash.Sum64(key) ^ st.seed
	// splitmix64's finalizer: every bit of h depends on every bit of the
	// seed, so the seed decides where a key's block is.
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// keys is the number of keys added to all links: the distinct keys, but for
// false positives and for a key added twice at once or to two links.
func (st *filterState) keys() int64 {
	var n int64
	for _, l := range st.links {
		n += l.n.Load()
	}
	return n
}

// locate returns the first word of h's block in l and the bits of its
// probes (keyFilterProbes × 9 bits of a second mix of h).
func (l *filterLink) locate(h uint64) (block uint64, probes uint64) {
	block = (h >> 32) * l.blocks >> 32 * keyFilterBlockWords
	p := (h ^ h>>33) * 0xff51afd7ed558ccd // murmur3's finalizer
	p = (p ^ p>>33) * 0xc4ceb9fe1a85ec53
	return block, p ^ p>>33
}

func (l *filterLink) add(h uint64) int64 {
	block, p := l.locate(h)
	w := l.words[block : block+keyFilterBlockWords : block+keyFilterBlockWords]
	for i := 0; i < keyFilterProbes; i++ {
		bit := p & (1<<keyFilterBlockBits - 1)
		w[bit/64].Or(1 << (bit % 64))
		p >>= keyFilterBlockBits
	}
	return l.n.Add(1)
}

// addNew adds h unless l has it already, and returns the keys l holds
// then, or 0 if h was not added.
func (l *filterLink) addNew(h uint64) int64 {
	if l.has(h) {
		return 0
	}
	return l.add(h)
}

// touch loads and returns the word of h's first probe in l: loading it
// early brings h's block into the cache (see mayContainEach).
func (l *filterLink) touch(h uint64) uint64 {
	block, p := l.locate(h)
	bit := p & (1<<keyFilterBlockBits - 1)
	w := l.words[block+bit/64].Load()
	runtime.KeepAlive(l)
	return w
}

// hasGiven is has(h), given first, the word touch(h) returned: that
// probe's word was loaded then.
func (l *filterLink) hasGiven(h, first uint64) bool {
	block, p := l.locate(h)
	if bit := p & (1<<keyFilterBlockBits - 1); first&(1<<(bit%64)) == 0 {
		return false
	}
	defer runtime.KeepAlive(l)
	w := l.words[block : block+keyFilterBlockWords : block+keyFilterBlockWords]
	for i := 1; i < keyFilterProbes; i++ {
		p >>= keyFilterBlockBits
		bit := p & (1<<keyFilterBlockBits - 1)
		if w[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

func (l *filterLink) has(h uint64) bool {
	block, p := l.locate(h)
	defer runtime.KeepAlive(l)
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

// add adds key. A key the newest link already answers "maybe" for is not
// added again (the counters key of a person's year is added by every
// settlement): adding it would set no bit, and counting it would make
// the filter grow as if it held more keys.
func (f *keyFilter) add(key []byte) {
	if next := f.next.Load(); next != nil {
		next.links[0].addNew(next.hash(key))
	}
	st := f.state.Load()
	f.addTo(st.links[len(st.links)-1], st.hash(key))
}

// addTo adds hash h to l, the newest link, and extends the filter when l
// is filling up.
func (f *keyFilter) addTo(l *filterLink, h uint64) {
	switch n := l.addNew(h); {
	case n == 0:
	case n >= l.capacity/4*3 && n < l.capacity && l.extending.CompareAndSwap(false, true):
		// Allocating and zeroing a link of hundreds of megabytes takes
		// a while: not on the caller's time (the writer adds keys)...
		// Once per link, and also for a link that a rebuild filled
		// past three quarters before it was swapped in (its adds
		// during the rebuild are not counted here).
		go f.extend(l)
	case n >= l.capacity:
		// ... unless it has not happened yet: then every add waits for
		// it, so that no link is filled much past its capacity.
		f.extend(l)
	}
}

// extend starts a new link after full, if full is still the newest: twice
// as big as all links so far, so that a filter grown from a million keys
// to a billion has eleven links (if it is not rebuilt meanwhile).
func (f *keyFilter) extend(full *filterLink) {
	f.grow.Lock()
	defer f.grow.Unlock()
	st := f.state.Load()
	if st.links[len(st.links)-1] != full {
		return
	}
	var total int64
	for _, l := range st.links {
		total += l.capacity
	}
	links := append(st.links[:len(st.links):len(st.links)], newFilterLink(2*total))
	f.state.Store(&filterState{seed: st.seed, links: links})
	if len(links) >= maxFilterLinks && f.onFull != nil {
		f.onFull()
	}
}

func (f *keyFilter) addString(key string) { f.add([]byte(key)) }

// filterBatch is the number of keys addEach and mayContainEach take at once.
const filterBatch = 64

// addEach adds every key of keys: add for each, with their cache misses
// overlapped (see mayContainEach).
func (f *keyFilter) addEach(keys []string) {
	if f.next.Load() != nil {
		// A rebuild is under way (rare): each key goes to both states.
		for _, k := range keys {
			f.addString(k)
		}
		return
	}
	// A rebuild begun from here on scans the store for these keys, which
	// are in it already (Append adds them here after their commit), just
	// as for a key added by add after its check of next.
	var hs [filterBatch]uint64
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), filterBatch)]
		keys = keys[len(chunk):]
		st := f.state.Load()
		l := st.links[len(st.links)-1]
		h := hashAll(st, chunk, &hs)
		for _, x := range h {
			l.touch(x)
		}
		for _, x := range h {
			f.addTo(l, x)
		}
	}
}

// mayContainEach reports which of keys may have been added: bit i of the
// result is mayContain(keys[i]); keys holds at most filterBatch keys.
//
// Why not mayContain in a loop: a bill's ≈ 14 trace codes are ≈ 14 cache
// misses into a filter of up to hundreds of megabytes, and a loop that
// tests each key before it loads the next waits for them one after the
// other. Here every key's block is loaded first (independent loads, which
// the CPU keeps in flight together), then tested.
func (f *keyFilter) mayContainEach(keys []string) uint64 {
	st := f.state.Load()
	var hs [filterBatch]uint64
	return st.mayContainHashes(hashAll(st, keys, &hs))
}

// mayContainThenAdd is mayContainEach(keys) followed by addEach(keys), at
// the cost of one cache miss a key instead of two: the add finds the
// newest link's blocks in the cache.
func (f *keyFilter) mayContainThenAdd(keys []string) uint64 {
	if f.next.Load() != nil {
		maybe := f.mayContainEach(keys)
		f.addEach(keys)
		return maybe
	}
	st := f.state.Load()
	var hs [filterBatch]uint64
	h := hashAll(st, keys, &hs)
	maybe := st.mayContainHashes(h)
	l := st.links[len(st.links)-1]
	for i := range h {
		f.addTo(l, h[i])
	}
	return maybe
}

// hashAll hashes keys (at most filterBatch) into hs under st's seed.
func hashAll(st *filterState, keys []string, hs *[filterBatch]uint64) []uint64 {
	if len(keys) > filterBatch {
		panic("ledger: key filter: more than filterBatch keys at once")
	}
	for i, k := range keys {
		hs[i] = st.hash([]byte(k))
	}
	return hs[:len(keys)]
}

// mayContainHashes is mayContainEach for keys of hashes hs.
func (st *filterState) mayContainHashes(hs []uint64) uint64 {
	var first [filterBatch]uint64
	unknown := uint64(1)<<len(hs) - 1 // keys no link has answered "maybe" for
	if len(hs) == filterBatch {
		unknown = ^uint64(0)
	}
	var maybe uint64
	for li := len(st.links) - 1; li >= 0 && unknown != 0; li-- {
		l := st.links[li]
		for i, h := range hs {
			if unknown&(1<<i) != 0 {
				first[i] = l.touch(h)
			}
		}
		for i, h := range hs {
			if unknown&(1<<i) != 0 && l.hasGiven(h, first[i]) {
				maybe |= 1 << i
				unknown &^= 1 << i
			}
		}
	}
	return maybe
}

// changedSince reports whether a key added to st may be missing from the
// filter now or after a rebuild under way: the filter was rebuilt or grown
// since st, or a rebuild (which scans the store, see beginRebuild) is under
// way. A key added before its commit (tracecodes.go) is added again then.
func (f *keyFilter) changedSince(st *filterState) bool {
	return f.next.Load() != nil || f.state.Load() != st
}

// mayContain is false only for a key never added.
func (f *keyFilter) mayContain(key string) bool { return f.mayContainBytes([]byte(key)) }

// mayContainBytes is mayContain for a key in bytes.
func (f *keyFilter) mayContainBytes(key []byte) bool {
	st := f.state.Load()
	h := st.hash(key)
	for i := len(st.links) - 1; i >= 0; i-- {
		if st.links[i].has(h) {
			return true
		}
	}
	return false
}

// beginRebuild makes every key added from now on go also to a new state of
// one link sized for capacity, and returns it; nil if a rebuild is
// already under way.
func (f *keyFilter) beginRebuild(capacity int64) *filterState {
	f.grow.Lock()
	defer f.grow.Unlock()
	if f.next.Load() != nil {
		return nil
	}
	next := newFilterState(capacity)
	f.next.Store(next)
	return next
}

// endRebuild swaps next in (if ok: it holds every key) or drops it.
func (f *keyFilter) endRebuild(next *filterState, ok bool) {
	f.grow.Lock()
	defer f.grow.Unlock()
	if ok {
		// Adds between these two stores go to next twice: harmless.
		f.state.Store(next)
	}
	f.next.Store(nil)
}

// filterKind is where the keys of a filter are: under prefix, each
// without its first header bytes (the prefix, and a bucket: bucketed.go).
type filterKind struct {
	prefix byte
	header int
	what   string
	room   int // keys a filter built at open has room for, at least
}

var (
	traceFilterKind    = filterKind{pfxTrace, bucketKeyLen, "trace codes", 16 << 20}    // 32 MB
	idemFilterKind     = filterKind{pfxIdem, bucketKeyLen, "idempotency keys", 2 << 20} // 4 MB
	countersFilterKind = filterKind{pfxCounters, 1, "counters keys", keyFilterMinKeys}  // 2 MB
)

// loadFilters loads the trace-code, idempotency and counters filters
// (keyfilter_file.go) or builds them from the keys in the store.
func (db *DB) loadFilters() error {
	err := db.loadSavedFilters()
	if err != nil {
		if err != errNoFilterFile {
			db.log.Warn().Err(err).Msg("ledger: saved key filters not used; building them from the keys")
		}
		if db.tfilter, err = db.loadFilter(traceFilterKind); err != nil {
			return err
		}
		if db.ifilter, err = db.loadFilter(idemFilterKind); err != nil {
			return err
		}
		if db.cfilter, err = db.loadFilter(countersFilterKind); err != nil {
			return err
		}
	}
	return nil
}

// watchFilters arranges for each filter to be rebuilt once it has
// maxFilterLinks links, starting with those that have them already. The
// writer must be running (a rebuild waits for its batches).
func (db *DB) watchFilters() {
	for _, kf := range []struct {
		f    *keyFilter
		kind filterKind
	}{{db.tfilter, traceFilterKind}, {db.ifilter, idemFilterKind}, {db.cfilter, countersFilterKind}} {
		f, kind := kf.f, kf.kind
		f.grow.Lock()
		f.onFull = func() { db.startRebuild(f, kind) }
		full := len(f.state.Load().links) >= maxFilterLinks
		f.grow.Unlock()
		if full {
			db.startRebuild(f, kind)
		}
	}
}

// startRebuild rebuilds f in the background, unless the store is closing.
func (db *DB) startRebuild(f *keyFilter, kind filterKind) {
	db.rebuildMu.Lock()
	defer db.rebuildMu.Unlock()
	if db.rebuildStop {
		return
	}
	db.rebuilds.Add(1)
	db.rebuilding.Add(1)
	go func() {
		defer db.rebuilds.Done()
		defer db.rebuilding.Add(-1)
		db.rebuildFilter(f, kind)
	}()
}

// FilterRebuilds is the number of key filters being rebuilt.
func (db *DB) FilterRebuilds() int { return int(db.rebuilding.Load()) }

// rebuildFilter rebuilds f into one link from the keys in the store, while
// keys go on being added, and swaps it in. It gives up (keeping f as it
// is) if the store closes or fails meanwhile.
func (db *DB) rebuildFilter(f *keyFilter, kind filterKind) {
	began := time.Now()
	old := f.state.Load()
	next := f.beginRebuild(max(2*old.keys(), keyFilterMinKeys))
	if next == nil {
		return // under way
	}
	ok := false
	defer func() { f.endRebuild(next, ok) }()
	// From here on every key added goes to next too. A key added before
	// is in the store by the time the entries sealed so far are durable:
	// the writer adds an idempotency or counters key while it builds the
	// batch, after sealing its entry; Append adds trace codes after the
	// commit. So the scan starts after that.
	if db.rebuildHook != nil {
		db.rebuildHook(1)
	}
	if err := db.waitDurable(db.sealed.Load()); err != nil {
		return
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{kind.prefix}, UpperBound: []byte{kind.prefix + 1}})
	if err != nil {
		return
	}
	if db.rebuildHook != nil {
		db.rebuildHook(2)
	}
	l := next.links[0]
	n := 0
	chunk := time.Now()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if len(k) < kind.header {
			// A damaged store; loadFilter refuses it at the next open.
			_ = it.Close()
			db.log.Error().Hex("key", k).Str("kind", kind.what).Msg("ledger: key filter rebuild stopped: a key shorter than its header")
			return
		}
		l.add(next.hash(k[kind.header:]))
		if n++; n%(1<<16) == 0 {
			// At most half of one core: the gateway goes on serving (a
			// rebuild of 140 M keys scans for two minutes at full speed).
			select {
			case <-db.quit:
				_ = it.Close()
				return
			case <-time.After(time.Since(chunk)):
			}
			chunk = time.Now()
		}
	}
	if err := it.Close(); err != nil {
		db.log.Warn().Err(err).Str("kind", kind.what).Msg("ledger: key filter rebuild failed")
		return
	}
	ok = true
	db.log.Info().Str("kind", kind.what).Int("links_before", len(old.links)).Int("keys", n).
		Int64("capacity", l.capacity).Dur("took", time.Since(began)).Msg("ledger: key filter rebuilt")
}

// stopRebuilds stops the filter rebuilds under way and waits for them.
func (db *DB) stopRebuilds() {
	db.rebuildMu.Lock()
	db.rebuildStop = true
	db.rebuildMu.Unlock()
	db.rebuilds.Wait()
}

// loadFilter builds a filter over the keys of kind.
func (db *DB) loadFilter(kind filterKind) (*keyFilter, error) {
	began := time.Now()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{kind.prefix}, UpperBound: []byte{kind.prefix + 1}})
	if err != nil {
		return nil, err
	}
	// Counted first so that the filter is sized once, without holding
	// every key in memory.
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	// Room for half as many again before the filter grows a link, and at
	// least kind.room: a new ledger's first million settlements should
	// not grow (and then rebuild) its filters.
	f := newKeyFilter(n + max(n/2, kind.room))
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < kind.header {
			_ = it.Close()
			return nil, fmt.Errorf("%w: %s key %x is shorter than its %d-byte header", ErrCorrupt, kind.what, k, kind.header)
		}
		f.add(k[kind.header:])
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("ledger: %s filter: %w", kind.what, err)
	}
	if n > 0 {
		db.log.Info().Int("keys", n).Str("kind", kind.what).Dur("took", time.Since(began)).Msg("ledger: key filter built")
	}
	return f, nil
}
