package ledger

import (
	"runtime"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDirectWALSync: with DirectWALSync every settlement's WAL sync on Linux
// is a direct one (walsync.go), what was answered survives a reopen, and
// without the option, or through a filesystem of the caller's, no sync is
// made directly.
func TestDirectWALSync(t *testing.T) {
	dir := t.TempDir()
	open := func(direct bool) *DB {
		o := testOptions(vfs.Default)
		o.DirectWALSync = direct
		db, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}

	before := directSyncs.Load()
	db := open(false)
	mustAppend(t, db, settlement(req(1), "P1", 20261109, nil, 0, "code-1"))
	if got := directSyncs.Load() - before; got != 0 {
		t.Fatalf("%d direct syncs without DirectWALSync", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(true)
	before = directSyncs.Load()
	const n = 5
	for i := 2; i < 2+n; i++ {
		mustAppend(t, db, settlement(req(i), "P1", 20261109, nil, 0))
	}
	got := directSyncs.Load() - before
	switch {
	case runtime.GOOS == "linux" && got < n:
		t.Fatalf("%d direct syncs for %d settlements answered one at a time", got, n)
	case runtime.GOOS != "linux" && got != 0:
		t.Fatalf("%d direct syncs on %s", got, runtime.GOOS)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// A filesystem of the caller's own (tests injecting faults) keeps its
	// syncs, even over the real disk.
	o := testOptions(struct{ vfs.FS }{vfs.Default})
	o.DirectWALSync = true
	db, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	before = directSyncs.Load()
	mustAppend(t, db, settlement(req(2+n), "P1", 20261109, nil, 0))
	if got := directSyncs.Load() - before; got != 0 {
		t.Fatalf("%d direct syncs through a filesystem given in Options.FS", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(false)
	defer db.Close()
	if seq, _ := db.Head(); seq != 2+n {
		t.Fatalf("head after reopen = %d, want %d", seq, 2+n)
	}
	if _, ok, err := db.EntryByID(SettlementID(1 + n)); err != nil || !ok {
		t.Fatalf("last entry after reopen: %v %v", ok, err)
	}
}

// TestDirectSyncFileReportsErrors: a failed direct sync names the file
// and the error, so Pebble's fatal WAL error says what broke.
func TestDirectSyncFileReportsErrors(t *testing.T) {
	if !directSyncSupported {
		t.Skip("direct syncs are Linux only")
	}
	fs := directSyncFS{vfs.Default}
	name := t.TempDir() + "/000001.log"
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if !isDirectSyncFile(f) {
		t.Fatalf("a WAL file on disk is %T, not a directSyncFile", f)
	}
	if _, err := f.Write([]byte("record")); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatalf("SyncData: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The descriptor is closed now: the sync fails and says so.
	err = f.SyncData()
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "fdatasync") {
		t.Fatalf("SyncData after close = %v, want an error naming fdatasync and %s", err, name)
	}
	other, err := fs.Create(t.TempDir()+"/000002.sst", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if isDirectSyncFile(other) {
		t.Fatal("a table file got direct syncs")
	}
}
