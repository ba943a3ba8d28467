package ledger

import (
	"bytes"
	"errors"
	"hash/maphash"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
)

// hotCache keeps the committed values of the keys every settlement reads
// twice (once by the gateway to build the policy's input, once by the
// writer to apply the entry): the person's registry record, balance and
// year's counters. Reading them from Pebble was a fifth of the gateway's
// CPU (bench/RESULTS.md): a point read walks the memtables and every
// overlapping table.
//
// It is a write-through cache with one writer. The ledger's syncer
// goroutine (writer.go: finish) — the only one that stores into it — stores
// what a batch wrote once the batch is durable and before its entries are
// answered, so a reader that comes after the answer (the next settlement of
// the same person, which the gateway serializes) sees it. A batch that ran a registry operation
// (person upserts, credits, …) is read back record by record instead
// (storeBatch): those write keys the writer does not track one by one.
//
// A reader that misses reads the store and offers the value back, which is
// taken only if nothing was stored for the key meanwhile and the shard was
// not cleared since the reader looked (its epoch): a value read before a
// newer one was committed can then never replace it. Each shard is cleared
// when it grows past its bound; the cache only ever saves reads.
type hotCache struct {
	seed   maphash.Seed
	shards [hotShards]hotShard
}

const (
	hotShards   = 64
	hotShardMax = 8192 // 512 Ki keys in all: a few hundred bytes each
)

type hotShard struct {
	mu    sync.RWMutex
	epoch uint64
	m     map[string]hotValue
}

// hotValue is a cached value; absent records that the key does not exist.
// Values are never modified in place: readers may hold them.
type hotValue struct {
	v      []byte
	absent bool
}

func newHotCache() *hotCache {
	c := &hotCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]hotValue)
	}
	return c
}

func (c *hotCache) shard(key []byte) *hotShard {
	return &c.shards[maphash.Bytes(c.seed, key)%hotShards]
}

// lookup returns the cached value of key; cached is false on a miss, and
// epoch is then what offer needs.
func (c *hotCache) lookup(key []byte) (v hotValue, cached bool, epoch uint64) {
	s := c.shard(key)
	s.mu.RLock()
	v, cached = s.m[string(key)]
	epoch = s.epoch
	s.mu.RUnlock()
	return v, cached, epoch
}

// offer caches v for key, read from the store after a miss at epoch, unless
// something newer may exist.
func (c *hotCache) offer(key []byte, v hotValue, epoch uint64) {
	s := c.shard(key)
	s.mu.Lock()
	if s.epoch == epoch {
		if _, ok := s.m[string(key)]; !ok {
			if len(s.m) >= hotShardMax {
				// Clearing makes what this reader read unsafe to keep too.
				clear(s.m)
				s.epoch++
			} else {
				s.m[string(key)] = v
			}
		}
	}
	s.mu.Unlock()
}

// store records the committed value of key (syncer only).
func (c *hotCache) store(key string, v hotValue) {
	s := c.shard([]byte(key))
	s.mu.Lock()
	if _, present := s.m[key]; !present && len(s.m) >= hotShardMax {
		clear(s.m)
		s.epoch++
	}
	s.m[key] = v
	s.mu.Unlock()
}

// clear forgets everything (syncer only).
func (c *hotCache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.epoch++
		s.mu.Unlock()
	}
}

// cachedGet is lookup for the keys of the hot cache: fn sees the value
// (not to be retained or modified) when the key exists.
func (db *DB) cachedGet(key []byte, fn func(v []byte) error) (found bool, err error) {
	if key[0] == pfxCounters && !db.cfilter.mayContainBytes(key[1:]) {
		// A person's first settlement of a year: no counters yet, known
		// from memory (keyfilter.go).
		return false, nil
	}
	hv, cached, epoch := db.hot.lookup(key)
	if !cached {
		v, closer, gerr := db.pdb.Get(key)
		switch {
		case errors.Is(gerr, pebble.ErrNotFound):
			hv = hotValue{absent: true}
		case gerr != nil:
			return false, unreadable(gerr)
		default:
			hv = hotValue{v: append([]byte(nil), v...)}
			if cerr := closer.Close(); cerr != nil {
				// A value Pebble could not read (read.go: lookup):
				// neither cached nor taken as what is stored.
				return false, unreadable(cerr)
			}
		}
		db.hot.offer(key, hv, epoch)
	}
	if hv.absent {
		return false, nil
	}
	return true, fn(hv.v)
}

// preloadHot fills the cache from the store when it opens, up to half its
// bound, so that a restarted gateway does not pay a store read for each
// person it meets again: the registry records, balances and counters.
func (db *DB) preloadHot() error {
	for _, p := range []byte{pfxPerson, pfxBalance, pfxCounters} {
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			s := db.hot.shard(it.Key())
			if len(s.m) >= hotShardMax/2 {
				continue
			}
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return err
			}
			s.m[string(it.Key())] = hotValue{v: append([]byte(nil), v...)}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

// storeBatch records what a durable batch wrote to the cache's keys (syncer
// only). Anything but a plain set or delete of a key clears the cache.
func (c *hotCache) storeBatch(repr []byte) {
	r := batchrepr.Read(repr)
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			c.clear()
			return
		}
		if !ok {
			return
		}
		if kind == pebble.InternalKeyKindRangeDelete {
			// A catalog replaced whole is a range deletion of its
			// prefix: it leaves the cache alone.
			if rangeTouchesHot(k, v) {
				c.clear()
			}
			continue
		}
		if len(k) == 0 || !hotPrefix(k[0]) {
			continue
		}
		switch kind {
		case pebble.InternalKeyKindSet:
			c.store(string(k), hotValue{v: append([]byte(nil), v...)})
		case pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete:
			c.store(string(k), hotValue{absent: true})
		default:
			c.clear()
		}
	}
}

func hotPrefix(p byte) bool { return p == pfxPerson || p == pfxBalance || p == pfxCounters }

// rangeTouchesHot reports whether [start, end) holds keys of a cached
// prefix.
func rangeTouchesHot(start, end []byte) bool {
	for _, p := range []byte{pfxPerson, pfxBalance, pfxCounters} {
		if bytes.Compare(start, []byte{p + 1}) < 0 && bytes.Compare(end, []byte{p}) > 0 {
			return true
		}
	}
	return false
}
