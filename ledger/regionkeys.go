package ledger

import (
	"bytes"
	"fmt"
	"hash/maphash"

	"github.com/cockroachdb/pebble/v2"
)

// Region idempotency keys make a region's registry write (a persons
// upsert, a catalog upsert or replacement) safe to retry, as a hospital's
// request_id makes a settlement: a region's job whose first attempt timed
// out but was applied, and that retries after another change was made,
// would otherwise undo that change (a person's scheme, a catalog price).
// The key's record is written in the batch of the write it guards, so a
// crash never leaves one without the other; a retry under the key gets
// the first answer back and writes nothing.

// pfxRegionKey keys them:
//
//	R | lp(region) | key -> lp(route) | body sha256 (32) | the first answer
const pfxRegionKey = 'R'

func appendRegionKeyKey(b []byte, region, key string) []byte {
	b = append(b, pfxRegionKey)
	b = appendLP(b, region)
	return append(b, key...)
}

// RegionKey is the idempotency key of one region write.
type RegionKey struct {
	Region string   // the region whose token sent the write: keys are per region
	Key    string   // the key the region chose
	Route  string   // the write it was used for: method and path
	Body   [32]byte // sha256 of the request body
}

// RegionKeyConflictError is a region's key reused for another route or
// another body.
type RegionKeyConflictError struct {
	Key        string
	Route      string // the route the key was first used for
	OtherRoute bool   // false: the same route with another body
}

func (e *RegionKeyConflictError) Error() string {
	if e.OtherRoute {
		return fmt.Sprintf("ledger: key %s was already used for %s", e.Key, e.Route)
	}
	return fmt.Sprintf("ledger: key %s was already used for %s with another body", e.Key, e.Route)
}

// match is what a retry under k gets from the record v: the first
// answer, or a conflict.
func (k *RegionKey) match(v []byte) ([]byte, error) {
	route, rest, ok := splitLP(v)
	if !ok || len(rest) < 32 {
		return nil, fmt.Errorf("%w: region key record %s/%q of %d bytes", ErrCorrupt, k.Region, k.Key, len(v))
	}
	if string(route) != k.Route {
		return nil, &RegionKeyConflictError{Key: k.Key, Route: string(route), OtherRoute: true}
	}
	if !bytes.Equal(rest[:32], k.Body[:]) {
		return nil, &RegionKeyConflictError{Key: k.Key, Route: string(route)}
	}
	// Never nil, however short: nil says "not a replay".
	answer := make([]byte, len(rest)-32)
	copy(answer, rest[32:])
	return answer, nil
}

func (k *RegionKey) valid() error {
	if k.Region == "" || k.Key == "" || k.Route == "" {
		return invalidRecord("region key: empty region, key or route")
	}
	return nil
}

// lockRegionKey holds k's stripe until unlock: a persons upsert writes
// its chunks under k one after the other (db.go: UpsertPersonsLocking),
// and no other write under k may come between its check of k and its
// record.
func (db *DB) lockRegionKey(k *RegionKey) (unlock func()) {
	var h maphash.Hash
	h.SetSeed(regionKeySeed)
	h.WriteString(k.Region)
	h.WriteByte(0)
	h.WriteString(k.Key)
	mu := &db.regionKeys[h.Sum64()%uint64(len(db.regionKeys))]
	mu.Lock()
	return mu.Unlock
}

var regionKeySeed = maphash.MakeSeed()

// keyed submits r (nil: nothing to write) under k: if k was used before,
// nothing of r is written and replay is the first answer (or the error a
// conflict); otherwise r is written with k's record holding answer(),
// which is called once r's operation has run (on the writer: it must be
// cheap and must not fail, as the batch holds r's writes by then). With
// answer nil, r is written without k's record (the first chunk of a
// persons upsert, whose last chunk records k). The caller holds k's
// stripe (lockRegionKey).
func (db *DB) keyed(k *RegionKey, r *request, answer func() []byte) (replay []byte, err error) {
	if err := k.valid(); err != nil {
		return nil, err
	}
	if r == nil {
		r = &request{done: make(chan struct{}, 1), op: func(*pebble.Batch) (int, error) { return 0, nil }}
	}
	key := appendRegionKeyKey(nil, k.Region, k.Key)
	after := r.after
	replayed := false
	// seen reports whether k was used before (replay set, or a conflict
	// as err). Read first, so that a refused or replayed write leaves the
	// batch untouched; through the batch, so that the same key twice in
	// one batch is one write and a replay.
	seen := func(b *pebble.Batch) (bool, error) {
		var prev []byte
		found, err := getIn(b, key, func(v []byte) error { prev = append(prev, v...); return nil })
		if err != nil || !found {
			return found, err
		}
		replay, err = k.match(prev)
		replayed = err == nil
		return true, err
	}
	record := func(b *pebble.Batch) error {
		if answer == nil {
			return nil
		}
		v := appendLP(nil, k.Route)
		v = append(v, k.Body[:]...)
		v = append(v, answer()...)
		return b.Set(key, v, nil)
	}
	// A write runs as op or, when it may append entries (a persons
	// upsert's opening balances), as opEntries: wrap the one it has.
	if ope := r.opEntries; ope != nil {
		r.opEntries = func(b *pebble.Batch, app func(*Entry) error) (int, error) {
			if found, err := seen(b); found || err != nil {
				return 0, err
			}
			n, err := ope(b, app)
			if err != nil {
				return 0, err
			}
			return n, record(b)
		}
	} else {
		op := r.op
		r.op = func(b *pebble.Batch) (int, error) {
			if found, err := seen(b); found || err != nil {
				return 0, err
			}
			n, err := op(b)
			if err != nil {
				return 0, err
			}
			return n, record(b)
		}
	}
	if after != nil {
		r.after = func() {
			if !replayed {
				after()
			}
		}
	}
	if _, err := db.submit(r); err != nil {
		return nil, err
	}
	return replay, nil
}

// RegionKeyAnswer is the first answer recorded under k (found), a
// *RegionKeyConflictError if k was used for another route or body, or
// neither. It is read through the writer, so that an answer is handed out
// only once the write it answered is durable.
func (db *DB) RegionKeyAnswer(k *RegionKey) (answer []byte, found bool, err error) {
	if err := k.valid(); err != nil {
		return nil, false, err
	}
	key := appendRegionKeyKey(nil, k.Region, k.Key)
	r := &request{done: make(chan struct{}, 1)}
	r.op = func(b *pebble.Batch) (int, error) {
		var prev []byte
		ok, err := getIn(b, key, func(v []byte) error { prev = append(prev, v...); return nil })
		if err != nil || !ok {
			return 0, err
		}
		answer, err = k.match(prev)
		found = err == nil
		return 0, err
	}
	if _, err := db.submit(r); err != nil {
		return nil, false, err
	}
	return answer, found, nil
}

// PutCatalogKeyed is PutCatalog under k: replay is the first answer when
// k was used before (nothing is written); otherwise the catalog is written
// with k's record holding answer().
func (db *DB) PutCatalogKeyed(k *RegionKey, region string, entries []CatalogEntry, replace bool, answer func() []byte) (replay []byte, err error) {
	r, err := db.catalogRequest(region, entries, replace)
	if err != nil {
		return nil, err
	}
	if err := k.valid(); err != nil {
		return nil, err
	}
	defer db.lockRegionKey(k)()
	return db.keyed(k, r, answer)
}

// UpsertPersonsKeyed is UpsertPersons under k: replay is the first answer
// when k was used before (nothing is written, ws is nil); otherwise the
// persons are written, in chunks, with k's record, holding answer(ws),
// written with the last (see UpsertPersonsLocking).
func (db *DB) UpsertPersonsKeyed(k *RegionKey, ps []Person, answer func([]PersonWrite) []byte) (ws []PersonWrite, replay []byte, err error) {
	if k == nil {
		return nil, nil, invalidRecord("region key: nil")
	}
	return db.UpsertPersonsLocking(k, ps, nil, answer)
}

// RecordRegionKey records answer under k for a write that writes nothing
// else (an answer given from the state as it is): a retry then gets that
// answer, whatever has changed since.
func (db *DB) RecordRegionKey(k *RegionKey, answer []byte) (replay []byte, err error) {
	if err := k.valid(); err != nil {
		return nil, err
	}
	defer db.lockRegionKey(k)()
	return db.keyed(k, nil, func() []byte { return answer })
}
