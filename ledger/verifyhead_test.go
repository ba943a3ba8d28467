package ledger

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestVerifyStoreSeesEntriesBeyondTheHead: a store whose head record was
// lost or rewritten to an earlier entry still holds the entries after it.
// Open refuses such a store (ErrCorrupt: an entry beyond the head); the
// offline verification and audit said "OK: 0 entries" (or verified up to
// the rewritten head only) and exited 0.
func TestVerifyStoreSeesEntriesBeyondTheHead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		head  func(pdb *pebble.DB) error
		first uint64 // the first entry beyond the damaged head
	}{
		{"head record deleted", func(pdb *pebble.DB) error { return pdb.Delete(keyHead, pebble.Sync) }, 1},
		{"head rewritten to entry 8", func(pdb *pebble.DB) error {
			v, closer, err := pdb.Get(appendEntryKey(nil, 8))
			if err != nil {
				return err
			}
			h := append(be.AppendUint64(nil, 8), v[len(v)-32:]...)
			closer.Close()
			return pdb.Set(keyHead, h, pebble.Sync)
		}, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ledger")
			clk := newTestClock(utc("2026-10-05T02:00:00Z"))
			db, err := Open(dir, Options{Now: clk.now})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, db, 0, 12)
			db.Close()
			pdb, err := rawOpen(dir, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.head(pdb); err != nil {
				t.Fatal(err)
			}
			pdb.Close()
			if db, err := Open(dir, Options{Now: clk.now}); err == nil {
				db.Close()
				t.Fatal("Open accepted the store")
			} else if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v", err)
			}
			rep, err := VerifyStore(dir, nil, nil)
			var ce *ChainError
			if err != nil || rep.OK() || !errors.As(rep.ChainErr, &ce) || ce.Seq != tc.first {
				t.Errorf("VerifyStore = %+v, %v; want a chain error at seq %d", rep, err, tc.first)
			}
			arep, err := AuditStore(dir, nil, nil)
			if err != nil || arep.OK() || !errors.As(arep.ChainErr, &ce) || ce.Seq != tc.first {
				t.Errorf("AuditStore = %+v, %v; want a chain error at seq %d", arep, err, tc.first)
			}
		})
	}
}
