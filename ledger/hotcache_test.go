package ledger

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"medgate/engine/abi"
)

// A reader's offer never replaces a newer value, nor survives a clear.
func TestHotCacheOffer(t *testing.T) {
	c := newHotCache()
	k := []byte("bkey")
	_, cached, ep := c.lookup(k)
	if cached {
		t.Fatal("empty cache hit")
	}
	// The writer stores a newer value between the reader's miss and offer.
	c.store(string(k), hotValue{v: []byte("new")})
	c.offer(k, hotValue{v: []byte("old")}, ep)
	if v, _, _ := c.lookup(k); string(v.v) != "new" {
		t.Fatalf("offer replaced a stored value: %q", v.v)
	}
	// A clear between miss and offer drops the offer.
	k2 := []byte("bother")
	_, _, ep = c.lookup(k2)
	c.clear()
	c.offer(k2, hotValue{absent: true}, ep)
	if _, cached, _ := c.lookup(k2); cached {
		t.Fatal("offer taken across a clear")
	}
	// An offer at the current epoch is taken.
	_, _, ep = c.lookup(k2)
	c.offer(k2, hotValue{absent: true}, ep)
	if v, cached, _ := c.lookup(k2); !cached || !v.absent {
		t.Fatal("offer not taken")
	}
	// A full shard is cleared rather than grown, and the offer that found
	// it full is dropped.
	s := c.shard(k2)
	for i := 0; len(s.m) < hotShardMax; i++ {
		s.m[string(rune(i))+"x"] = hotValue{}
	}
	k3 := k2
	for c.shard(k3) != s || string(k3) == string(k2) {
		k3 = append([]byte(nil), append(k3, 'y')...)
	}
	_, _, ep = c.lookup(k3)
	c.offer(k3, hotValue{}, ep)
	if len(s.m) != 0 || s.epoch == ep {
		t.Fatalf("full shard: %d keys, epoch %d", len(s.m), s.epoch)
	}
}

// Reads served from the cache follow every kind of write: entries (one
// batch, no index), credits and person upserts (registry operations), and
// a restart.
func TestHotCacheFollowsWrites(t *testing.T) {
	fs := memFS()
	db, err := Open("data", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPersons([]Person{person("P1", 5000), person("P2", 0)}); err != nil {
		t.Fatal(err)
	}
	// Prime the cache with the state before the batch.
	if b := balance(t, db, "P1"); b != 5000 {
		t.Fatalf("balance = %d", b)
	}
	if got := counters(t, db, "P1", 2026); len(got) != 0 {
		t.Fatalf("counters = %v", got)
	}
	// One batch of settlements only (no index): two of P1 that build on
	// each other, a duplicate key, one that overdraws.
	a := settlement("a", "P1", 20261109, []abi.Counter{{Name: "n", Value: 2}}, -1000, "C1")
	b := settlement("b", "P1", 20261110, []abi.Counter{{Name: "n", Value: 3}, {Name: "m", Value: 1}}, -3000)
	dup := settlement("a", "P1", 20261110, nil, 0)
	poor := settlement("c", "P1", 20261110, nil, -1001)
	other := settlement("d", "P2", 20261110, []abi.Counter{{Name: "n", Value: 7}}, 0)
	errs := runBatch(db, a, b, dup, poor, other)
	var de *DuplicateError
	switch {
	case errs[0] != nil || errs[1] != nil || errs[4] != nil:
		t.Fatalf("errs = %v", errs)
	case !errors.As(errs[2], &de) || de.Existing.Seq != a.Seq:
		t.Fatalf("dup: %v", errs[2])
	case !errors.Is(errs[3], ErrInsufficientBalance):
		t.Fatalf("poor: %v", errs[3])
	}
	check := func(when string, bal int64, n, m int64) {
		t.Helper()
		if got := balance(t, db, "P1"); got != bal {
			t.Fatalf("%s: balance = %d, want %d", when, got, bal)
		}
		if got := counters(t, db, "P1", 2026); got["n"] != n || got["m"] != m {
			t.Fatalf("%s: counters = %v", when, got)
		}
		if got := counters(t, db, "P2", 2026); got["n"] != 7 {
			t.Fatalf("%s: P2 counters = %v", when, got)
		}
	}
	check("after the batch", 1000, 5, 1)
	// A key used in an earlier batch is found through the filter and store.
	if err := runBatch(db, settlement("b", "P2", 20261110, nil, 0))[0]; !errors.As(err, &de) || de.Existing.Seq != b.Seq {
		t.Fatalf("dup of an earlier batch: %v", err)
	}
	// A credit changes the balance behind the entries' back.
	if bal, _, err := db.Credit(region, "P1", "ref-1", 250); err != nil || bal != 1250 {
		t.Fatalf("credit: %d %v", bal, err)
	}
	check("after the credit", 1250, 5, 1)
	mustAppend(t, db, settlement("e", "P1", 20261111, []abi.Counter{{Name: "m", Value: -1}}, -1250))
	check("after spending the credit", 0, 5, 0)
	// A person upsert changes the registry record.
	p := person("P1", 5000)
	p.Facts.Groups = []string{"retired"}
	if _, err := db.PutPersons([]Person{p}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.Person(region, "P1")
	if err != nil || !ok || len(got.Facts.Groups) != 1 || got.Facts.Groups[0] != "retired" {
		t.Fatalf("person after upsert: %+v %v %v", got.Facts, ok, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open("data", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check("after a restart", 0, 5, 0)
	if _, ok, err := db.Idempotency(hospital, "e"); !ok || err != nil {
		t.Fatalf("idempotency key lost across a restart: %v %v", ok, err)
	}
	if _, ok, err := db.Idempotency(hospital, "never"); ok || err != nil {
		t.Fatalf("unknown idempotency key: %v %v", ok, err)
	}
}

// A registry batch large enough for Pebble to apply it as a flushable
// batch (which empties the batch) still reaches the cache. A persons
// upsert is written in chunks of PersonsChunk, so the persons are made
// large enough for one chunk to pass half the memtable.
func TestHotCacheLargeRegistryBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 40 MB batches")
	}
	db, _ := openMem(t)
	ps := make([]Person, 0, 2*PersonsChunk)
	group := strings.Repeat("g", 20_000)
	for i := 0; i < cap(ps); i++ {
		p := person(fmt.Sprintf("LARGE-BATCH-PERSON-%07d", i), int64(i))
		p.Facts.Groups = []string{group}
		ps = append(ps, p)
	}
	if _, err := db.PutPersons(ps); err != nil {
		t.Fatal(err)
	}
	// Pebble applies a batch of half its memtable (32 MiB, db.go) or more
	// as a flushable batch.
	if len(group)*PersonsChunk < 32<<20/2 {
		t.Fatalf("a chunk of %d persons of %d bytes is not a large batch: the test no longer tests what it says", PersonsChunk, len(group))
	}
	last := len(ps) - 1
	for _, i := range []int{0, PersonsChunk - 1, last} {
		for _, k := range [][]byte{appendPersonKey(nil, region, ps[i].ID), appendBalanceKey(nil, region, ps[i].ID)} {
			if _, cached, _ := db.hot.lookup(k); !cached {
				t.Fatalf("person %d: %q not cached after a large batch", i, k)
			}
		}
	}
	if b := balance(t, db, ps[last].ID); b != int64(last) {
		t.Fatalf("balance = %d", b)
	}
}

// Replacing a catalog (a range deletion of its prefix) keeps the cache; a
// range over a cached prefix clears it.
func TestHotCacheRangeDeletions(t *testing.T) {
	db, _ := openMem(t)
	if _, err := db.PutPersons([]Person{person("P1", 700)}); err != nil {
		t.Fatal(err)
	}
	key := appendBalanceKey(nil, region, "P1")
	if _, cached, _ := db.hot.lookup(key); !cached {
		t.Fatal("balance not cached after PutPersons")
	}
	if err := db.PutCatalog("370102", []CatalogEntry{{Code: "XA1", Class: abi.ClassA}}, true); err != nil {
		t.Fatal(err)
	}
	if _, cached, _ := db.hot.lookup(key); !cached {
		t.Fatal("replacing a catalog dropped the cache")
	}
	for _, tc := range []struct {
		start, end string
		touches    bool
	}{
		{"g", "h", false}, {"a", "b", false}, {"q", "z", false},
		{"a", "c", true}, {"b", "b\x00", true}, {"c\x05", "d", true}, {"o", "q", true}, {"a", "z", true},
	} {
		if got := rangeTouchesHot([]byte(tc.start), []byte(tc.end)); got != tc.touches {
			t.Errorf("[%q, %q): touches %v, want %v", tc.start, tc.end, got, tc.touches)
		}
	}
}
