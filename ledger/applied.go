package ledger

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Applied records remember which version of an outside source of registry
// records (the gateway's world directory: a region's catalog file, its
// persons file) was last written into the store, by a digest of what was
// written. A restart with the same source then writes nothing: regions may
// have changed those records through the API since, and writing the source
// again would silently undo that (a catalog code added, a person's
// registration changed).

// pfxApplied: w | name -> sha256 of what was last applied under name.
const pfxApplied = 'w'

func appendAppliedKey(b []byte, name string) []byte {
	b = append(b, pfxApplied)
	return append(b, name...)
}

// Applied returns the digest last recorded under name by SetApplied.
func (db *DB) Applied(name string) (digest [32]byte, ok bool, err error) {
	kb := getKeyBuf()
	kb.b = appendAppliedKey(kb.b[:0], name)
	ok, err = db.lookup(kb, func(v []byte) error {
		if len(v) != len(digest) {
			return fmt.Errorf("%w: applied record %q of %d bytes", ErrCorrupt, name, len(v))
		}
		copy(digest[:], v)
		return nil
	})
	putKeyBuf(kb)
	return digest, ok, err
}

// SetApplied records digest under name, through the writer and synced.
func (db *DB) SetApplied(name string, digest [32]byte) error {
	if name == "" {
		return invalidRecord("applied record: empty name")
	}
	k := appendAppliedKey(nil, name)
	v := append([]byte(nil), digest[:]...)
	r := &request{done: make(chan struct{}, 1)}
	r.op = func(b *pebble.Batch) (int, error) {
		return 1, b.Set(k, v, nil)
	}
	_, err := db.submit(r)
	return err
}

// SetAppliedAll records every digest of recs under its name, in one batch
// through the writer, synced.
func (db *DB) SetAppliedAll(recs map[string][32]byte) error {
	for name := range recs {
		if name == "" {
			return invalidRecord("applied record: empty name")
		}
	}
	if len(recs) == 0 {
		return nil
	}
	type rec struct{ k, v []byte }
	rs := make([]rec, 0, len(recs))
	for name, d := range recs {
		rs = append(rs, rec{appendAppliedKey(nil, name), append([]byte(nil), d[:]...)})
	}
	r := &request{done: make(chan struct{}, 1)}
	r.op = func(b *pebble.Batch) (int, error) {
		for _, x := range rs {
			if err := b.Set(x.k, x.v, nil); err != nil {
				return 0, err
			}
		}
		return len(rs), nil
	}
	_, err := db.submit(r)
	return err
}
