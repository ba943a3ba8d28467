package ledger

import (
	"bytes"
	"crypto/sha256"
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

// TestR5FinalCreditBytesFollowVERIFYmd rebuilds the body of a credit and of
// an opening balance from VERIFY.md §1a alone and checks the stored bytes
// and hash against it.
func TestR5FinalCreditBytesFollowVERIFYmd(t *testing.T) {
	db, _ := openMem(t)
	if _, err := db.PutPersons([]Person{person("P1", 5000), person("P2", 0)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Credit(region, "P2", "CR-1", 12345); err != nil {
		t.Fatal(err)
	}
	uv := func(b []byte, x uint64) []byte {
		for x >= 0x80 {
			b = append(b, byte(x)|0x80)
			x >>= 7
		}
		return append(b, byte(x))
	}
	sv := func(b []byte, x int64) []byte { return uv(b, uint64(x<<1)^uint64(x>>63)) }
	str := func(b []byte, s string) []byte { return append(uv(b, uint64(len(s))), s...) }
	zero32 := make([]byte, 32)
	n := 0
	if err := db.ScanRaw(1, 0, func(e *Entry, raw []byte) error {
		n++
		kind := byte(4)
		if e.RequestID != "" {
			kind = 3
		}
		b := []byte{0x02}
		b = uv(b, e.Seq)
		b = append(b, kind, 0x00, 0x00)
		b = str(b, e.RequestID)
		b = append(b, zero32...)
		b = append(b, 0x00, 0x00)
		b = str(b, e.InsuredRegion)
		b = str(b, e.PersonID)
		b = sv(b, e.CommittedAt)
		b = append(b, 0x00, 0x00, 0x00)
		b = append(b, zero32...)
		b = append(b, 0x00)
		b = append(b, zero32...)
		b = append(b, make([]byte, 13)...)
		b = append(b, 0x00, 0x00, 0x00)
		b = sv(b, e.BalanceChange)
		b = sv(b, e.BalanceAfter)
		b = append(b, 0x00, 0x00, 0x00)
		b = append(b, e.PrevHash[:]...)
		if !bytes.Equal(b, raw[:len(raw)-32]) {
			t.Fatalf("entry %d: VERIFY.md gives\n%x\nstored\n%x", e.Seq, b, raw[:len(raw)-32])
		}
		if h := sha256.Sum256(append(e.PrevHash[:], b...)); !bytes.Equal(h[:], raw[len(raw)-32:]) {
			t.Fatalf("entry %d: hash", e.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d entries", n)
	}
}
