package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/engine/abi"
)

// DefaultCacheSize is the block cache of a ledger opened without
// Options.CacheSize: 1 GiB.
//
// Why that much: a lookup that the in-memory key filters cannot answer (a
// false positive, a retried request) asks Pebble once per bucket
// (bucketed.go), and each ask reads the bloom filter block of a table of
// that bucket, megabytes for a large table. At 10 million entries the
// tables' filter blocks alone are ≈ 175 MB; with the former 128 MB cache
// they were read from the files again and again: on a 40 million entry
// ledger these lookups took about 8 % of the gateway's CPU, and 1–1.4 %
// with 1 GiB (bench/RESULTS.md, "growth to 40 million entries"). The cache
// only takes memory as blocks are read: an empty ledger uses little of it.
const DefaultCacheSize = 1 << 30

// Options configure Open.
type Options struct {
	FS       vfs.FS           // nil: the real disk (vfs.Default)
	Logger   zerolog.Logger   // also receives pebble's own log lines
	Now      func() time.Time // nil: time.Now; stamps Entry.CommittedAt
	MaxBatch int              // entries per group commit; 0: 512
	// CacheSize is the bytes of Pebble's block cache; 0: DefaultCacheSize.
	CacheSize int64
	// DirectWALSync makes the write-ahead log's syncs direct system calls
	// that keep their Go processor (walsync.go): less CPU a settlement at
	// moderate load with two or more processors, but a sync that never
	// returns then stops the whole process. Linux and the real disk (FS nil or
	// vfs.Default) only; ignored otherwise.
	DirectWALSync bool
	// MinFreeBytes: writes are refused with ErrLowDisk while the disk of
	// the ledger's directory has less free space (diskfree.go); 0: never.
	MinFreeBytes uint64
	// FreeSpace, when not nil, replaces the reading of the free space
	// (statfs) of the ledger's directory: tests, and file systems that
	// report it otherwise.
	FreeSpace func(dir string) (uint64, error)

	// bucketShift, when not 0, is the bucket shift of a store created or
	// upgraded by this Open (bucketed.go): tests use small buckets.
	bucketShift uint8
	// yield, when not nil, replaces runtime.Gosched after each write to a
	// table or blob file (yieldfs.go): tests count the calls.
	yield func()
}

// Idem is what an idempotency key (hospital, request id) maps to.
type Idem struct {
	BodyHash     [32]byte
	Seq          uint64
	SettlementID string
}

// DB is the ledger. All methods are safe for concurrent use.
type DB struct {
	pdb      *pebble.DB
	fs       vfs.FS
	dir      string
	log      zerolog.Logger
	now      func() time.Time
	maxBatch int

	// head is the last durable entry: its seq is the durable watermark.
	head atomic.Pointer[headState]
	// notify is closed (and replaced) whenever head advances, the DB fails
	// or closes; waiters for durability block on it.
	notify atomic.Pointer[chan struct{}]
	failed atomic.Bool
	closed atomic.Bool
	// lowDisk is set while the disk has less than minFree bytes free
	// (diskfree.go).
	lowDisk   atomic.Bool
	minFree   uint64
	freeSpace func(dir string) (uint64, error)
	// diskUnreadable: the last reading failed (owned by the watcher).
	diskUnreadable bool
	// syncFailed is set by the syncer (writer.go: finish) at the first
	// failed batch; every batch after it fails too. Unlike failed, which
	// the writer also sets as soon as it cannot hand a batch to Pebble,
	// it is set only once every batch before the failed one is finished:
	// from then on the durable head does not move again.
	syncFailed atomic.Bool
	// commits counts committed batches (for benchmarks and metrics).
	commits atomic.Uint64
	// stalls counts Pebble write stalls (events.go).
	stalls atomic.Uint64
	// stalled is the time commits spent in ended write stalls, in ns.
	stalled atomic.Int64

	// floor is the earliest commit time the writer may stamp: the previous
	// entry's, or the end of the last closed month if later. Owned by the
	// writer goroutine (set by load before it starts).
	floor int64

	// bshift is the store's bucket shift, sealed the seq of the last entry
	// the writer sealed (bucketed.go).
	bshift uint8
	sealed atomic.Uint64
	// format is the store's layout version (keys.go: storeFormat).
	format byte

	// traces are the trace codes of entries being appended (tracecodes.go).
	traces traceReservations
	// tfilter knows every trace code ever marked, ifilter every
	// idempotency key ever used, cfilter every counters key ever written
	// (keyfilter.go).
	tfilter, ifilter, cfilter *keyFilter
	// rebuilds counts the filter rebuilds under way (keyfilter.go); once
	// rebuildStop is set (by Close) no more start.
	rebuildMu   sync.Mutex
	rebuildStop bool
	rebuilds    sync.WaitGroup
	rebuilding  atomic.Int32
	// appending counts the Appends under way (writer.go).
	appending atomic.Int64
	// regionKeys are stripes of the region idempotency keys, held by a
	// write under a key (regionkeys.go: lockRegionKey).
	regionKeys [64]sync.Mutex
	// rebuildHook, set by tests, is called as a rebuild starts adding keys
	// to the new filter (1) and once its scan's snapshot is taken (2).
	rebuildHook func(stage int)
	// hot caches persons, balances and counters (hotcache.go).
	hot *hotCache

	hospitals atomic.Pointer[map[string]Hospital]
	catalogs  atomic.Pointer[map[string]*Catalog]
	names     interner

	reqs       chan *request
	quit       chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	// observer, when set, is told of every commit (stats.go).
	observer atomic.Pointer[CommitObserver]
	// applying and syncing are when the batch being handed to Pebble
	// (writer) and the batch whose WAL sync is awaited (syncer) began
	// (unix ns; 0: none), for CommitWaiting (stats.go).
	applying, syncing atomic.Int64
	// closedSynced holds the months whose close is known to be on disk
	// (months.go: closeSynced).
	closedSynced sync.Map
	// readErrors counts the failed reads of the store, readErrorAt is
	// the last one's time (unix ns; unreadable.go).
	readErrors  atomic.Uint64
	readErrorAt atomic.Int64
	// scanMu is held (read) while Scan and ScanRaw read a page of entries
	// and while HospitalRows reads; Close takes it before closing the store
	// (read.go: readPage).
	scanMu sync.RWMutex
}

type headState struct {
	seq  uint64
	hash [32]byte
}

// Catalog is one treating region's catalog, immutable once published.
type Catalog struct {
	region  string
	entries map[string]CatalogEntry
}

// Region is the catalog's region code.
func (c *Catalog) Region() string { return c.region }

// Lookup returns the entry of code. It does not allocate.
func (c *Catalog) Lookup(code string) (CatalogEntry, bool) {
	e, ok := c.entries[code]
	return e, ok
}

// Len is the number of codes in the catalog.
func (c *Catalog) Len() int { return len(c.entries) }

// Entries returns all entries sorted by code (a fresh slice).
func (c *Catalog) Entries() []CatalogEntry {
	out := make([]CatalogEntry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Open opens (creating if needed) the ledger in dir.
func Open(dir string, opts Options) (*DB, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	db := &DB{
		log:        opts.Logger,
		now:        opts.Now,
		maxBatch:   opts.MaxBatch,
		reqs:       make(chan *request),
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),
		hot:        newHotCache(),
		bshift:     opts.bucketShift,
		fs:         fs,
		dir:        dir,
		minFree:    opts.MinFreeBytes,
		freeSpace:  opts.FreeSpace,
	}
	if db.freeSpace == nil {
		db.freeSpace = diskFree
	}
	if db.bshift == 0 {
		db.bshift = defaultBucketShift
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.maxBatch <= 0 {
		db.maxBatch = 512
	}
	yfs := newYieldFS(fs, opts.yield) // yieldfs.go
	yfs.onReadErr = db.noteReadError  // unreadable.go
	var pfs vfs.FS = yfs
	// Only the operating system's files: a filesystem given in
	// Options.FS (tests injecting faults) keeps its own syncs.
	directSync := opts.DirectWALSync && fs == vfs.Default && directSyncSupported
	if directSync {
		pfs = directSyncFS{pfs} // walsync.go
	}
	popts := &pebble.Options{
		FS:                 pfs,
		Logger:             pebbleLogger{opts.Logger},
		FormatMajorVersion: pebble.FormatNewest,
		// Most reads on the settlement path look for keys that do not exist
		// (a new idempotency key, trace codes never sold): bloom filters
		// answer those without reading data blocks. A larger cache keeps
		// the recent entries and indexes in memory.
		CacheSize: opts.CacheSize,
		// 32 MiB, not 64: a settlement's ≈ 20 keys go into a smaller
		// skiplist. With two servers side by side (both with the L0
		// threshold below) a settlement cost 5.8 % less CPU at 1,800/s
		// each (4 of 4 pairs), the closed loop served 0.7–8.3 % more
		// (4 of 4), and the p50 was lower in 8 of 8 (bench/RESULTS.md,
		// "L0 compactions after 8 flushes, again"). 256 MiB cost 15 %
		// more CPU.
		MemTableSize: 32 << 20,
		// A compaction out of L0 waits for 8 flushes (Pebble's default
		// is 4): every flush spans the whole newest bucket's key space, so
		// each L0 compaction rewrites most of the base level, and with 8
		// it does so half as often. Writes stop at 24 sublevels: three
		// times the threshold, as Pebble's 12 is of its 4.
		// Before compactions yielded (yieldfs.go) the larger compactions
		// doubled make bench's open-loop p99; since they yield, 90 s at
		// 3,600/s (about half the closed-loop maximum) had a lower p99
		// with 8 in 5 of 5 pairs, at 4 % less CPU, and two servers side
		// by side in closed loop used 3.8 % less CPU a settlement with 8
		// in 6 of 6 pairs (bench/RESULTS.md, "L0 compactions after 8
		// flushes, again").
		L0CompactionThreshold: 8,
		L0StopWritesThreshold: 24,
	}
	if popts.CacheSize <= 0 {
		popts.CacheSize = DefaultCacheSize
	}
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// Entries are most of the bytes and never change: stored apart from
	// the keys (blob files), they are written once instead of once per
	// level a compaction moves their keys through. The small records
	// (indexes, counters, tree hashes) stay in the tables. Nothing is ever
	// deleted, so blob files are never rewritten to reclaim space.
	popts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           256,
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     time.Hour,
			TargetGarbageRatio:    1.0,
		}
	}
	popts.EventListener = db.events()
	pdb, err := pebble.Open(dir, popts)
	if errors.Is(err, syscall.EAGAIN) {
		// The directory's LOCK is another process's: say so rather than
		// "resource temporarily unavailable".
		return nil, fmt.Errorf("ledger: open %s: locked by another process (is another gateway, or medgate audit, using it?): %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	db.pdb = pdb
	if err := db.load(); err != nil {
		_ = pdb.Close()
		return nil, err
	}
	if err := db.loadFilters(); err != nil {
		_ = pdb.Close()
		return nil, err
	}
	if err := db.preloadHot(); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("ledger: preload: %w", err)
	}
	ch := make(chan struct{})
	db.notify.Store(&ch)
	if db.format == formatBucketed {
		if err := db.migrateBalances(); err != nil {
			_ = pdb.Close()
			return nil, err
		}
	}
	go db.run()
	db.watchFilters()
	db.watchDisk()
	h := db.head.Load()
	db.log.Info().Str("dir", dir).Uint64("head_seq", h.seq).
		Int("hospitals", len(*db.hospitals.Load())).Int("catalogs", len(*db.catalogs.Load())).
		Bool("direct_wal_sync", directSync).
		Msg("ledger opened")
	return db, nil
}

// load reads the format marker, the chain head and the in-memory registry.
func (db *DB) load() error {
	_, err := db.get(keyFormat)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		b := db.pdb.NewBatch()
		_ = b.Set(keyFormat, []byte{storeFormat, db.bshift}, nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("ledger: init: %w", err)
		}
		_ = b.Close()
		db.format = storeFormat
	case err != nil:
		return fmt.Errorf("ledger: read format: %w", err)
	default:
		shift := db.bshift // for an upgrade: this Open's
		if err := db.readFormat(); err != nil {
			return err
		}
		if db.format < formatBucketed {
			// An older layout without a shift: upgraded below, once the
			// head is known.
			db.bshift = shift
		}
	}

	h := &headState{}
	v, err := db.get(keyHead)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("ledger: read head: %w", err)
	default:
		if h.seq, h.hash, err = decodeHead(v); err != nil {
			return err
		}
	}
	// The head is written in the same batch as its entry; check they agree
	// and that nothing lies beyond it.
	if h.seq > 0 {
		var kb [9]byte
		v, err := db.get(appendEntryKey(kb[:0], h.seq))
		if err != nil {
			return fmt.Errorf("ledger: head entry %d: %w", h.seq, err)
		}
		if len(v) < 32 || [32]byte(v[len(v)-32:]) != h.hash {
			return fmt.Errorf("%w: head hash does not match entry %d", ErrCorrupt, h.seq)
		}
		var e Entry
		if err := DecodeEntry(v, &e); err != nil {
			return fmt.Errorf("ledger: head entry %d: %w", h.seq, err)
		}
		db.floor = e.CommittedAt
	}
	var kb [9]byte
	if _, err := db.get(appendEntryKey(kb[:0], h.seq+1)); err == nil {
		return fmt.Errorf("%w: entry %d exists beyond the head", ErrCorrupt, h.seq+1)
	}
	db.head.Store(h)
	db.sealed.Store(h.seq)
	if db.format < formatBucketed {
		if err := db.upgrade(db.format, h.seq); err != nil {
			return err
		}
		db.format = formatBucketed
	}
	closedEnd, err := lastClosedEnd(db.pdb)
	if err != nil {
		return fmt.Errorf("ledger: closed months: %w", err)
	}
	db.floor = max(db.floor, closedEnd)
	if err := db.loadClosedSynced(); err != nil {
		return fmt.Errorf("ledger: closed months: %w", err)
	}

	hs := map[string]Hospital{}
	cats := map[string]*Catalog{}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{pfxHospital}, UpperBound: []byte{pfxHospital + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		id := string(it.Key()[1:])
		h, err := decodeHospital(id, it.Value())
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("ledger: hospital %q: %w", id, err)
		}
		hs[id] = h
	}
	if err := it.Close(); err != nil {
		return err
	}
	it, err = db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{pfxCatalog}, UpperBound: []byte{pfxCatalog + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		region, code, ok := splitLP(it.Key()[1:])
		if !ok {
			_ = it.Close()
			return fmt.Errorf("%w: catalog key %q", ErrCorrupt, it.Key())
		}
		c := cats[string(region)]
		if c == nil {
			c = &Catalog{region: string(region), entries: map[string]CatalogEntry{}}
			cats[c.region] = c
		}
		e, err := decodeCatalogEntry(string(code), it.Value())
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("ledger: catalog %s code %q: %w", region, code, err)
		}
		c.entries[e.Code] = e
	}
	if err := it.Close(); err != nil {
		return err
	}
	db.hospitals.Store(&hs)
	db.catalogs.Store(&cats)
	return nil
}

// get returns a copy of the value of key.
func (db *DB) get(key []byte) ([]byte, error) {
	v, closer, err := db.pdb.Get(key)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

// Close stops accepting writes, lets the writer finish what is queued,
// and closes the store. It is safe to call more than once; later calls return
// nil. No method may be called after Close returns (they return ErrClosed on
// a best-effort basis).
func (db *DB) Close() error {
	first := false
	db.closeOnce.Do(func() {
		first = true
		db.closed.Store(true)
		close(db.quit)
		<-db.writerDone
		db.broadcast()
		db.stopRebuilds()
		if !db.failed.Load() && db.appendsDone(5*time.Second) {
			// Not fatal: the next Open builds them from the keys.
			if err := db.saveFilters(); err != nil {
				db.log.Warn().Err(err).Msg("ledger: the next open rebuilds the key filters")
			}
		}
		// No scan reads a page from here on (it sees closed), and none
		// holds an iterator between pages.
		db.scanMu.Lock()
		db.closeErr = db.closePebble()
		db.scanMu.Unlock()
		h := db.head.Load()
		db.log.Info().Uint64("head_seq", h.seq).Err(db.closeErr).Msg("ledger closed")
	})
	if !first {
		return nil
	}
	return db.closeErr
}

// appendsDone waits (up to d) for the Appends under way to return: one the
// writer answered adds its entry's trace codes to the filter afterwards
// (tracecodes.go), and a saved filter must hold the codes of every entry up
// to the head it names. If they do not drain, Close saves nothing: the file
// of an earlier close, if any, stays valid (Open adds the entries since).
func (db *DB) appendsDone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for db.appending.Load() > 0 {
		if time.Now().After(deadline) {
			db.log.Warn().Msg("ledger: appends still under way at close; key filters not saved")
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// closeFlushWait bounds the flush Close makes: long enough for a memtable
// of any size on a working disk.
const closeFlushWait = 30 * time.Second

func (db *DB) closePebble() (err error) {
	defer func() {
		// After a failed commit pebble may complain fatally while closing.
		if r := recover(); r != nil {
			if f, ok := r.(pebbleFatal); ok {
				err = f
				return
			}
			panic(r)
		}
	}()
	if !db.failed.Load() && !db.lowDisk.Load() {
		// Flush the memtable, so that the next Open has no WAL to replay:
		// after a clean close, a start needs no recovery. Not waited for
		// without end: on a full disk a flush fails and is retried for as
		// long as the disk stays full, and a stop must still stop (the
		// WAL holds every answered entry either way).
		done, err := db.pdb.AsyncFlush()
		if err == nil {
			select {
			case <-done:
			case <-time.After(closeFlushWait):
				err = fmt.Errorf("not done after %v (is the disk full?)", closeFlushWait)
			}
		}
		if err != nil {
			db.log.Warn().Err(err).Msg("ledger: flush at close failed; the next open replays the WAL")
		}
	}
	return db.pdb.Close()
}

// broadcast wakes every goroutine waiting in waitDurable.
func (db *DB) broadcast() {
	ch := make(chan struct{})
	old := db.notify.Swap(&ch)
	close(*old)
}

// waitDurable returns once entry seq is durable, or ErrWriteFailed if the
// store failed before it became so.
func (db *DB) waitDurable(seq uint64) error {
	for {
		ch := *db.notify.Load()
		if db.head.Load().seq >= seq {
			return nil
		}
		// Not failed: a batch before the failed one may still become
		// durable (the writer fails a batch it could not hand to Pebble
		// while earlier ones are syncing).
		if db.syncFailed.Load() {
			return ErrWriteFailed
		}
		if db.closed.Load() {
			// The writer is gone; nothing will become durable any more.
			select {
			case <-db.writerDone:
				if db.head.Load().seq >= seq {
					return nil
				}
				return ErrClosed
			default:
			}
		}
		<-ch
	}
}

// --- registry -------------------------------------------------------------

// PutHospitals upserts hospitals by id.
func (db *DB) PutHospitals(hs []Hospital) error {
	for i := range hs {
		if hs[i].ID == "" {
			return invalidRecord("hospital %d: empty id", i)
		}
	}
	if len(hs) == 0 {
		return nil
	}
	hs = append([]Hospital(nil), hs...)
	r := &request{done: make(chan struct{}, 1)}
	r.op = func(b *pebble.Batch) (int, error) {
		var k, v []byte
		for i := range hs {
			k = appendHospitalKey(k[:0], hs[i].ID)
			v = appendHospital(v[:0], &hs[i])
			if err := b.Set(k, v, nil); err != nil {
				return 0, err
			}
		}
		return len(hs), nil
	}
	r.after = func() {
		old := *db.hospitals.Load()
		m := make(map[string]Hospital, len(old)+len(hs))
		for k, v := range old {
			m[k] = v
		}
		for _, h := range hs {
			m[h.ID] = h
		}
		db.hospitals.Store(&m)
	}
	_, err := db.submit(r)
	return err
}

// Hospital returns the hospital of id.
func (db *DB) Hospital(id string) (Hospital, bool) {
	h, ok := (*db.hospitals.Load())[id]
	return h, ok
}

// PutCatalog writes region's catalog: with replace, entries become the whole
// catalog (an empty replace removes it); otherwise entries are upserted by
// code.
func (db *DB) PutCatalog(region string, entries []CatalogEntry, replace bool) error {
	r, err := db.catalogRequest(region, entries, replace)
	if err != nil || r == nil {
		return err
	}
	_, err = db.submit(r)
	return err
}

// catalogRequest is PutCatalog's write, or nil if there is nothing to
// write.
func (db *DB) catalogRequest(region string, entries []CatalogEntry, replace bool) (*request, error) {
	if region == "" {
		return nil, invalidRecord("empty region")
	}
	for i := range entries {
		e := &entries[i]
		if e.Code == "" {
			return nil, invalidRecord("catalog entry %d: empty code", i)
		}
		if e.Class < abi.ClassA || e.Class > abi.ClassC {
			return nil, invalidRecord("catalog entry %q: class %d", e.Code, e.Class)
		}
	}
	if len(entries) == 0 && !replace {
		return nil, nil
	}
	entries = append([]CatalogEntry(nil), entries...)
	r := &request{done: make(chan struct{}, 1)}
	r.op = func(b *pebble.Batch) (int, error) {
		if replace {
			p := appendCatalogPrefix(nil, region)
			if err := b.DeleteRange(p, prefixEnd(p), nil); err != nil {
				return 0, err
			}
		}
		var k, v []byte
		for i := range entries {
			k = appendCatalogKey(k[:0], region, entries[i].Code)
			v = appendCatalogEntry(v[:0], &entries[i])
			if err := b.Set(k, v, nil); err != nil {
				return 0, err
			}
		}
		return len(entries), nil
	}
	r.after = func() {
		old := *db.catalogs.Load()
		m := make(map[string]*Catalog, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		c := &Catalog{region: region}
		if prev := old[region]; prev != nil && !replace {
			c.entries = make(map[string]CatalogEntry, len(prev.entries)+len(entries))
			for k, v := range prev.entries {
				c.entries[k] = v
			}
		} else {
			c.entries = make(map[string]CatalogEntry, len(entries))
		}
		for _, e := range entries {
			c.entries[e.Code] = e
		}
		if len(c.entries) == 0 {
			delete(m, region)
		} else {
			m[region] = c
		}
		db.catalogs.Store(&m)
	}
	return r, nil
}

// Catalog returns the catalog of exactly region (no fallback to the
// prefecture or province: that is the caller's policy).
func (db *DB) Catalog(region string) (*Catalog, bool) {
	c, ok := (*db.catalogs.Load())[region]
	return c, ok
}

// PutPersons upserts insured persons. A person not yet known gets its
// balance set to OpeningBalance, through an opening-balance entry of the
// chain (KindOpening) when it is not 0; a known person's balance is left
// alone. Each chunk of up to PersonsChunk persons is one batch (see
// UpsertPersonsLocking). created counts the new persons. When the same
// person appears more than once, it is as if they were upserted in order.
func (db *DB) PutPersons(ps []Person) (created int, err error) {
	ws, err := db.UpsertPersons(ps)
	for _, w := range ws {
		if w.Created {
			created++
		}
	}
	return created, err
}

// PersonWrite is what an upsert did with one person: Created, or not,
// and then Opening is the opening balance recorded when the person was
// created (the OpeningBalance given was not applied).
type PersonWrite struct {
	Created bool
	Opening int64 // fen; for a person that was already known
}

// UpsertPersons is PutPersons answering, for each of ps in order, whether
// it created the person and, for a known one, the opening balance recorded
// at its creation: a region re-sending a person with another balance must
// be able to see that it was not applied.
func (db *DB) UpsertPersons(ps []Person) ([]PersonWrite, error) {
	ws, _, err := db.UpsertPersonsLocking(nil, ps, nil, nil)
	return ws, err
}

// PersonsChunk is how many persons of an upsert one writer operation
// writes. The writer, which every settlement goes through, reads each
// person of its operation (≈ 5–30 µs a person): a region re-sending its
// whole roster of 300,000 persons as one operation held it for over 10 s.
// In chunks, settlements are written between them (a chunk holds it for
// milliseconds).
const PersonsChunk = 1000

// UpsertPersonsLocking is UpsertPersons, under k when k is not nil (as
// UpsertPersonsKeyed), calling lock, when not nil, with the persons of
// each chunk before writing it and the unlock it returns once the chunk
// is durable (or refused).
//
// A chunk is durable before the next one is written. An error after the
// first chunk leaves the chunks before it written (each is a valid upsert
// of its persons); under k, the key's record is written with the last
// chunk only, so the key is never recorded without the whole upsert, and
// a retry under it re-applies the whole upsert: it then answers the
// persons created by the failed attempt as known, with the opening balance
// they were created with (the one given). With an error, ws is the writes
// of the chunks written before it (of ps[:len(ws)], durable), so that the
// caller can say how far the upsert got rather than that nothing was
// written.
func (db *DB) UpsertPersonsLocking(k *RegionKey, ps []Person, lock func([]Person) (unlock func()), answer func([]PersonWrite) []byte) (ws []PersonWrite, replay []byte, err error) {
	if err := validPersons(ps); err != nil {
		return nil, nil, err
	}
	if k != nil {
		if err := k.valid(); err != nil {
			return nil, nil, err
		}
		// No other write under k between the first chunk's check of it
		// and the last chunk's record: a refused or replayed write must
		// have written nothing.
		defer db.lockRegionKey(k)()
	}
	if len(ps) == 0 {
		if k == nil {
			return nil, nil, nil
		}
		replay, err := db.keyed(k, nil, func() []byte { return answer(nil) })
		return nil, replay, err
	}
	ws = make([]PersonWrite, 0, len(ps))
	for from := 0; from < len(ps); from += PersonsChunk {
		to := min(from+PersonsChunk, len(ps))
		r, cws, err := db.personsRequest(ps[from:to])
		if err != nil {
			return ws, nil, err
		}
		var unlock func()
		if lock != nil {
			unlock = lock(ps[from:to])
		}
		switch {
		case k == nil:
			_, err = db.submit(r)
		case to == len(ps):
			// cws is filled in by the time the answer is asked for.
			replay, err = db.keyed(k, r, func() []byte { return answer(append(ws, cws...)) })
		case from == 0:
			// Refused or replayed under k before anything is written.
			replay, err = db.keyed(k, r, nil)
		default:
			_, err = db.submit(r)
		}
		if unlock != nil {
			unlock()
		}
		if replay != nil {
			return nil, replay, err
		}
		if err != nil {
			return ws, nil, err
		}
		ws = append(ws, cws...)
	}
	return ws, nil, nil
}

func validPersons(ps []Person) error {
	for i := range ps {
		p := &ps[i]
		if p.ID == "" || p.Region == "" {
			return invalidRecord("person %d: empty id or region", i)
		}
		if p.OpeningBalance < 0 {
			return invalidRecord("person %q: negative opening balance", p.ID)
		}
	}
	return nil
}

// personsRequest is the write of an upsert of ps, whose answer it fills in
// ws, or nil if there is nothing to write.
func (db *DB) personsRequest(ps []Person) (*request, []PersonWrite, error) {
	if err := validPersons(ps); err != nil {
		return nil, nil, err
	}
	if len(ps) == 0 {
		return nil, nil, nil
	}
	ps = append([]Person(nil), ps...)
	ws := make([]PersonWrite, len(ps))
	r := &request{done: make(chan struct{}, 1)}
	r.opEntries = func(b *pebble.Batch, app func(*Entry) error) (int, error) {
		type pk struct{ region, id string }
		first := make(map[pk]int, len(ps))
		// Reads first, so that an error leaves the batch untouched. In
		// key order through one iterator: a Get through the indexed batch
		// opens an iterator of its own (≈ 30 µs, twice a known person).
		order := make([]int, 0, len(ps))
		keys := make([][]byte, len(ps))
		for i := range ps {
			key := pk{ps[i].Region, ps[i].ID}
			if _, dup := first[key]; dup {
				continue
			}
			first[key] = i
			order = append(order, i)
			keys[i] = appendPersonKey(nil, ps[i].Region, ps[i].ID)
		}
		// A person's opening key is its person key under another prefix:
		// the same order.
		sort.Slice(order, func(a, b int) bool { return bytes.Compare(keys[order[a]], keys[order[b]]) < 0 })
		it, err := b.NewIter(nil)
		if err != nil {
			return 0, unreadable(err)
		}
		defer it.Close()
		isNew := make([]bool, len(ps))
		known := make([]int, 0, len(order))
		for _, i := range order {
			if _, found, err := seekIn(it, keys[i]); err != nil {
				return 0, err
			} else if found {
				known = append(known, i)
			} else {
				isNew[i] = true
			}
		}
		var k []byte
		for _, i := range known {
			// The opening balance recorded at creation; stores written
			// before that record existed have it in the person record
			// (audit.go).
			k = appendOpeningKey(k[:0], ps[i].Region, ps[i].ID)
			v, found, err := seekIn(it, k)
			if err != nil {
				return 0, err
			}
			if found {
				if ws[i].Opening, err = decodeBalance(v); err != nil {
					return 0, err
				}
				continue
			}
			if _, err := getIn(b, keys[i], func(v []byte) error {
				rec, err := decodePerson(v)
				ws[i].Opening = rec.OpeningBalance
				return err
			}); err != nil {
				return 0, err
			}
		}
		// A person given twice is known from its second line on.
		for i := range ps {
			j := first[pk{ps[i].Region, ps[i].ID}]
			switch {
			case j == i:
				ws[i].Created = isNew[i]
			case isNew[j]:
				ws[i].Opening = ps[j].OpeningBalance
			default:
				ws[i].Opening = ws[j].Opening
			}
		}
		n := 0
		var v []byte
		for i := range ps {
			p := ps[i]
			p.Facts.AccountBalance = 0
			k = appendPersonKey(k[:0], p.Region, p.ID)
			v = appendPerson(v[:0], &p)
			if err := b.Set(k, v, nil); err != nil {
				return 0, err
			}
			if isNew[i] {
				n++
				// What a later upsert of the person answers (and the
				// audit checks against the opening balance's entry).
				k = appendOpeningKey(k[:0], p.Region, p.ID)
				v = be.AppendUint64(v[:0], uint64(p.OpeningBalance))
				if err := b.Set(k, v, nil); err != nil {
					return 0, err
				}
				if p.OpeningBalance == 0 {
					k = appendBalanceKey(k[:0], p.Region, p.ID)
					if err := b.Set(k, v, nil); err != nil {
						return 0, err
					}
					continue
				}
				// A balance is money the person can spend: its opening is
				// an entry of the chain (KindOpening), which sets the
				// balance record, in this same batch.
				if err := app(&Entry{Kind: KindOpening, InsuredRegion: p.Region, PersonID: p.ID,
					BalanceChange: p.OpeningBalance}); err != nil {
					return 0, err
				}
			}
		}
		return n, nil
	}
	return r, ws, nil
}

// seekIn is the value of key at it (valid until it moves), found false
// when absent.
func seekIn(it *pebble.Iterator, key []byte) (v []byte, found bool, err error) {
	if it.SeekGE(key) && bytes.Equal(it.Key(), key) {
		if v, err = it.ValueAndErr(); err != nil {
			return nil, false, unreadable(err)
		}
		return v, true, nil
	}
	if err := it.Error(); err != nil {
		return nil, false, unreadable(err)
	}
	return nil, false, nil
}

// Person returns the registry record of (region, id). Its
// Facts.AccountBalance is 0: the running balance is Balance's.
func (db *DB) Person(region, id string) (Person, bool, error) {
	if db.closed.Load() {
		return Person{}, false, ErrClosed
	}
	kb := getKeyBuf()
	defer putKeyBuf(kb)
	kb.b = appendPersonKey(kb.b[:0], region, id)
	var p Person
	found, err := db.cachedGet(kb.b, func(v []byte) (err error) {
		p, err = decodePerson(v)
		return err
	})
	if err != nil || !found {
		return Person{}, false, err
	}
	return p, true, nil
}

// Balance returns the running personal-account balance of (region, person),
// in fen; 0 for an unknown person.
func (db *DB) Balance(region, person string) (int64, error) {
	if db.closed.Load() {
		return 0, ErrClosed
	}
	kb := getKeyBuf()
	defer putKeyBuf(kb)
	kb.b = appendBalanceKey(kb.b[:0], region, person)
	var bal int64
	_, err := db.cachedGet(kb.b, func(v []byte) (err error) {
		bal, err = decodeBalance(v)
		return err
	})
	return bal, err
}

// Counters appends the counters of (region, person, year) to dst, sorted by
// name; a counter never written (or back at 0) is absent.
func (db *DB) Counters(region, person string, year int32, dst []abi.Counter) ([]abi.Counter, error) {
	if db.closed.Load() {
		return dst, ErrClosed
	}
	kb := getKeyBuf()
	defer putKeyBuf(kb)
	kb.b = appendCountersKey(kb.b[:0], region, person, year)
	_, err := db.cachedGet(kb.b, func(v []byte) error {
		return walkCounters(v, func(name []byte, value int64) {
			dst = append(dst, abi.Counter{Name: db.names.get(name), Value: value})
		})
	})
	return dst, err
}

// interner dedupes counter names so that reading counters does not
// allocate a string per name. The set of names is small (chosen by
// policies); it stops growing at maxInterned.
type interner struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]string]
}

const maxInterned = 4096

func (in *interner) get(b []byte) string {
	if m := in.m.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	in.mu.Lock()
	defer in.mu.Unlock()
	var old map[string]string
	if p := in.m.Load(); p != nil {
		old = *p
	}
	if len(old) >= maxInterned {
		return s
	}
	m := make(map[string]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[s] = s
	in.m.Store(&m)
	return s
}

// pebbleLogger routes pebble's log lines to zerolog. Fatalf panics with a
// pebbleFatal instead of exiting the process: pebble calls it when a commit
// fails (e.g. the WAL cannot be written or synced), and the writer recovers
// it to put the ledger into its failed state.
type pebbleLogger struct{ l zerolog.Logger }

type pebbleFatal struct{ msg string }

func (f pebbleFatal) Error() string { return f.msg }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug().Str("component", "pebble").Msgf(format, args...)
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error().Str("component", "pebble").Msgf(format, args...)
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error().Str("component", "pebble").Msg(msg)
	panic(pebbleFatal{msg})
}
