package ledger

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
)

// copyFormat3Credits copies the format-3 store with credits into a new
// directory.
func copyFormat3Credits(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "testdata/store-format3-credits"
	files, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name() == "make.go.txt" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestR5FinalInterruptedMigrationIsNotFormat3: the upgrade to format 4
// stopped after its first batch (here: a credit record it cannot read)
// leaves migrated entries in the chain, which a gateway of format 3 cannot
// decode: the store must already say format 4, so that such a gateway
// refuses it as a newer format instead of opening it (or calling its head
// entry corrupt). The next Open goes on from where the upgrade stopped,
// appending every migrated entry once.
func TestR5FinalInterruptedMigrationIsNotFormat3(t *testing.T) {
	dir := copyFormat3Credits(t)
	pdb, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad := appendCreditKey(nil, region, "CR-0") // first in key order
	if err := pdb.Set(bad, []byte{1, 2, 3}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	opts := Options{Logger: zerolog.Nop(), Now: testNow}
	if db, err := Open(dir, opts); err == nil || !strings.Contains(err.Error(), "CR-0") {
		if db != nil {
			_ = db.Close()
		}
		t.Fatalf("open with an unreadable credit record: %v", err)
	}

	// What a gateway of format 3 reads first: the format marker.
	pdb, err = pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, closer, err := pdb.Get(keyFormat)
	if err != nil {
		t.Fatal(err)
	}
	format := v[0]
	_ = closer.Close()
	var kb [9]byte
	_, closer, err = pdb.Get(appendEntryKey(kb[:0], 4))
	migrated := err == nil
	if migrated {
		_ = closer.Close()
	}
	if !migrated {
		t.Fatal("the first batch of the upgrade appended no opening balance")
	}
	if format != storeFormat {
		t.Errorf("store holding migrated entries says format %d, want %d", format, storeFormat)
	}
	if err := pdb.Delete(bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := AuditStore(dir, nil, nil); err == nil || !strings.Contains(err.Error(), "start the gateway") {
		t.Fatalf("audit of the store in mid-upgrade: %v", err)
	}

	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := db.Audit(nil)
	if err != nil || !rep.OK() {
		t.Fatalf("audit after the resumed upgrade: %v %v", err, rep.Err())
	}
	if rep.Entries != 8 || rep.Openings != 2 || rep.Credits != 3 {
		t.Fatalf("after the resumed upgrade: %+v", rep)
	}
	want := map[string]int64{"P1": 100000 - 300, "P2": 5000 + 700 - 200 + 1000, "P3": 50 - 50}
	for p, w := range want {
		if b := balance(t, db, p); b != w {
			t.Fatalf("balance of %s = %d, want %d", p, b, w)
		}
	}
}
