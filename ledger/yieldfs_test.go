package ledger

import (
	"bytes"
	"io"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestYieldFSYieldsAfterTableWrites: writes to tables and blob files yield
// once each and reach the file; the WAL, the manifest and other files do
// not yield.
func TestYieldFSYieldsAfterTableWrites(t *testing.T) {
	var yields atomic.Int64
	fs := newYieldFS(vfs.NewMem(), func() { yields.Add(1) })
	for _, tc := range []struct {
		name  string
		yield bool
	}{
		{"000001.sst", true},
		{"000002.blob", true},
		{"000003.log", false},
		{"MANIFEST-000004", false},
		{"medgate-keyfilters.tmp", false},
	} {
		before := yields.Load()
		f, err := fs.Create(tc.name, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"one ", "two ", "three"} {
			if n, err := f.Write([]byte(s)); n != len(s) || err != nil {
				t.Fatalf("%s: write %q: %d, %v", tc.name, s, n, err)
			}
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		want := int64(0)
		if tc.yield {
			want = 3
		}
		if got := yields.Load() - before; got != want {
			t.Errorf("%s: %d yields for 3 writes, want %d", tc.name, got, want)
		}
		r, err := fs.Open(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil || !bytes.Equal(b, []byte("one two three")) {
			t.Fatalf("%s: read back %q, %v", tc.name, b, err)
		}
	}
}

// TestLedgerFlushYields: the store's own flushes write through the
// yielding filesystem (Open wraps Pebble's FS), and what they wrote reads
// back after a reopen.
func TestLedgerFlushYields(t *testing.T) {
	fs := memFS()
	var yields atomic.Int64
	o := testOptions(fs)
	o.yield = func() { yields.Add(1) }
	db, err := Open("ledger", o)
	if err != nil {
		t.Fatal(err)
	}
	filterHistory(t, db, 1, 20)
	if err := db.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	if yields.Load() == 0 {
		t.Fatal("a flush wrote its tables without yielding")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open("ledger", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wantKnown(t, db, 20)
}
