package ledger

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/engine/abi"
)

// logBuffer is a log the ledger's goroutines write to and a test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// openLogged opens the ledger in fs with its log going to buf.
func openLogged(t *testing.T, fs vfs.FS, buf *logBuffer) *DB {
	t.Helper()
	o := testOptions(fs)
	buf.Reset()
	o.Logger = zerolog.New(buf)
	db, err := Open("ledger", o)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// wantKnown checks that the keys written by the entries of filterHistory
// up to n are known: their trace codes refused, their request ids
// duplicates, their counters read.
func wantKnown(t *testing.T, db *DB, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		var te *TraceCodeError
		if err := db.Append(ctx, settlement("other-"+req(i), "P1", testDate, nil, 0, "TC"+req(i))); !errors.As(err, &te) {
			t.Fatalf("code of entry %d settled again: %v", i, err)
		}
		var de *DuplicateError
		if err := db.Append(ctx, settlement(req(i), "P1", testDate, nil, 0)); !errors.As(err, &de) {
			t.Fatalf("request of entry %d accepted again: %v", i, err)
		}
	}
	if got := counters(t, db, "P1", 2026)["n"]; got != int64(n) {
		t.Fatalf("counter n = %d, want %d", got, n)
	}
}

func filterHistory(t *testing.T, db *DB, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		mustAppend(t, db, settlement(req(i), "P1", testDate, []abi.Counter{{Name: "n", Value: 1}}, 0, "TC"+req(i)))
	}
}

// TestKeyFiltersSaved: a clean close saves the filters, the next open loads
// them instead of scanning, and after a crash the next open adds the keys
// of the entries written since.
func TestKeyFiltersSaved(t *testing.T) {
	fs := vfs.NewCrashableMem()
	var log logBuffer
	db := openLogged(t, fs, &log)
	filterHistory(t, db, 1, 20)
	seed := db.tfilter.state.Load().seed
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "key filters saved") {
		t.Fatalf("no filters saved at close: %s", log.String())
	}

	db = openLogged(t, fs, &log)
	if !strings.Contains(log.String(), "key filters loaded") || db.tfilter.state.Load().seed != seed {
		t.Fatalf("filters not loaded: %s", log.String())
	}
	wantKnown(t, db, 20)

	// Entries after the save, then a crash: the file still says 20.
	filterHistory(t, db, 21, 30)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	_ = db.Close()
	db = openLogged(t, crashed, &log)
	if !strings.Contains(log.String(), `"saved_at":20,"head_seq":30`) {
		t.Fatalf("filters not loaded from entry 20 up to 30: %s", log.String())
	}
	wantKnown(t, db, 30)
	_ = db.Close()
}

// TestKeyFiltersNotUsed: a damaged file, or one of another chain, is not
// used; the filters are built from the keys.
func TestKeyFiltersNotUsed(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		spoil     func(t *testing.T, fs vfs.FS)
	}{
		{"damaged", "checksum mismatch", func(t *testing.T, fs vfs.FS) {
			b := readFile(t, fs, "ledger/"+filterFileName)
			b[len(b)/2] ^= 1
			writeFile(t, fs, "ledger/"+filterFileName, b)
		}},
		{"cut", "", func(t *testing.T, fs vfs.FS) {
			b := readFile(t, fs, "ledger/"+filterFileName)
			writeFile(t, fs, "ledger/"+filterFileName, b[:len(b)-100])
		}},
		{"another chain", "of another chain", func(t *testing.T, fs vfs.FS) {
			other := memFS()
			var log logBuffer
			db := openLogged(t, other, &log)
			for i := 1; i <= 5; i++ {
				mustAppend(t, db, settlement("x"+req(i), "P1", testDate, nil, 0))
			}
			_ = db.Close()
			writeFile(t, fs, "ledger/"+filterFileName, readFile(t, other, "ledger/"+filterFileName))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := memFS()
			var log logBuffer
			db := openLogged(t, fs, &log)
			filterHistory(t, db, 1, 10)
			_ = db.Close()
			tc.spoil(t, fs)
			db = openLogged(t, fs, &log)
			defer db.Close()
			if !strings.Contains(log.String(), "saved key filters not used") || !strings.Contains(log.String(), tc.why) {
				t.Fatalf("want the file refused (%s): %s", tc.why, log.String())
			}
			wantKnown(t, db, 10)
		})
	}
}

func readFile(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, fs vfs.FS, name string, b []byte) {
	t.Helper()
	f, err := fs.Create(name, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeyFilterRebuild: a filter of many links is rebuilt into one from
// the store while settlements go on, before the rebuild's scan and after
// its snapshot, and ends up knowing every key.
func TestKeyFilterRebuild(t *testing.T) {
	db, _ := openMem(t)
	filterHistory(t, db, 1, 10) // in the store before the rebuild
	db.tfilter, db.ifilter, db.cfilter = small(t, db, traceFilterKind), small(t, db, idemFilterKind), small(t, db, countersFilterKind)
	stage := 0
	db.rebuildHook = func(s int) {
		// Settlements while the new filter is being filled: before the
		// scan's snapshot (1) and after it (2).
		filterHistory(t, db, 11+10*stage, 20+10*stage)
		stage++
	}
	for _, kf := range []struct {
		f    *keyFilter
		kind filterKind
	}{{db.tfilter, traceFilterKind}, {db.ifilter, idemFilterKind}, {db.cfilter, countersFilterKind}} {
		stage = 0
		before := kf.f.state.Load()
		db.rebuildFilter(kf.f, kf.kind)
		after := kf.f.state.Load()
		if after == before || len(after.links) != 1 || kf.f.next.Load() != nil {
			t.Fatalf("%s: %d links after the rebuild (state replaced: %v)", kf.kind.what, len(after.links), after != before)
		}
		db.rebuildHook = func(s int) {} // settle only during the first
	}
	wantKnown(t, db, 30)
	if got, _ := db.Head(); got != 30 {
		t.Fatalf("head %d, want 30", got)
	}
}

// small is a stand-in for a filter that grew: three links, every key of
// kind in the store.
func small(t *testing.T, db *DB, kind filterKind) *keyFilter {
	t.Helper()
	f := newKeyFilterOf(4)
	for k := range rawRecordsOf(t, db.pdb, kind.prefix) {
		f.add([]byte(k)[kind.header:])
	}
	for i := 0; len(f.state.Load().links) < maxFilterLinks; i++ {
		f.add(strconv.AppendInt([]byte("padding-"), int64(i), 10))
	}
	return f
}

// TestKeyFilterRebuildAtOpen: filters saved with many links are rebuilt
// after the next open, in the background, while settlements go on.
func TestKeyFilterRebuildAtOpen(t *testing.T) {
	fs := memFS()
	var log logBuffer
	db := openLogged(t, fs, &log)
	filterHistory(t, db, 1, 10)
	db.tfilter, db.ifilter = small(t, db, traceFilterKind), small(t, db, idemFilterKind)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openLogged(t, fs, &log)
	defer db.Close()
	filterHistory(t, db, 11, 20)
	for db.FilterRebuilds() > 0 {
		time.Sleep(time.Millisecond)
	}
	if n := strings.Count(log.String(), "key filter rebuilt"); n != 2 {
		t.Fatalf("%d filters rebuilt, want 2: %s", n, log.String())
	}
	for _, f := range []*keyFilter{db.tfilter, db.ifilter, db.cfilter} {
		if n := len(f.state.Load().links); n != 1 {
			t.Fatalf("%d links after the rebuild", n)
		}
	}
	wantKnown(t, db, 20)
}

// TestKeyFiltersSavedUnderLoad: a Close while settlements are under way
// saves filters that know the trace codes of every acknowledged entry
// (an Append adds them after the writer answered it).
func TestKeyFiltersSavedUnderLoad(t *testing.T) {
	fs := memFS()
	var log logBuffer
	db := openLogged(t, fs, &log)
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				code := "LOAD-" + strconv.Itoa(g) + "-" + strconv.Itoa(i)
				err := db.Append(context.Background(), settlement(code, "P"+strconv.Itoa(g), testDate, nil, 0, code))
				if err != nil {
					return // closed
				}
				mu.Lock()
				acked = append(acked, code)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	db = openLogged(t, fs, &log)
	defer db.Close()
	if !strings.Contains(log.String(), "key filters loaded") {
		t.Fatalf("filters not loaded: %s", log.String())
	}
	if len(acked) == 0 {
		t.Fatal("nothing acknowledged")
	}
	for _, code := range acked {
		if !db.tfilter.mayContain(code) {
			t.Fatalf("trace code %s of an acknowledged entry unknown to the saved filter", code)
		}
	}
	t.Logf("%d entries acknowledged before the close", len(acked))
}

// TestKeyFilterSavedCapacity: a saved link whose capacity its blocks
// cannot hold, or that claims far more keys than its capacity (the file's
// checksum is right), is refused. Taken as it is, the next link the filter
// grows, or the link a rebuild sizes from its keys, is sized from an
// overflowing number (a link of no blocks), and every later add and lookup
// panics.
func TestKeyFilterSavedCapacity(t *testing.T) {
	for _, tc := range []struct {
		name        string
		capacity, n uint64 // 0: as saved
		what        string
	}{
		{"capacity", 1 << 61, 1 << 61, "growing it"},
		{"keys", 0, 1 << 57, "rebuilding it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := memFS()
			var log logBuffer
			db := openLogged(t, fs, &log)
			filterHistory(t, db, 1, 3)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			b := readFile(t, fs, "ledger/"+filterFileName)
			// The trace filter's first link: capacity and keys added.
			off := len(filterFileMagic) + 8 + 32 + 1 + 8 + 4
			if tc.capacity != 0 {
				le.PutUint64(b[off:], tc.capacity)
			}
			le.PutUint64(b[off+8:], tc.n)
			le.PutUint64(b[len(b)-8:], xxhash.Sum64(b[:len(b)-8]))
			writeFile(t, fs, "ledger/"+filterFileName, b)

			db = openLogged(t, fs, &log)
			defer db.Close()
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("%s: the loaded trace filter panics: %v", tc.what, r)
					}
				}()
				db.tfilter.addString("new code")
				db.tfilter.addString("another code")
				db.rebuildFilter(db.tfilter, traceFilterKind)
				db.tfilter.addString("a third code")
				db.tfilter.mayContain("new code")
			}()
			if !strings.Contains(log.String(), "saved key filters not used") {
				t.Fatalf("a link of capacity %d in %d blocks holding %d keys accepted: %s", le.Uint64(b[off:]),
					le.Uint64(b[off+16:]), tc.n, log.String())
			}
			wantKnown(t, db, 3)
		})
	}
}

// TestKeyFilterShortKey: a trace-code or idempotency record key too short
// to hold its bucket (a damaged store) makes Open fail with ErrCorrupt when
// it builds the filters, and stops a background rebuild, instead of
// panicking the process.
func TestKeyFilterShortKey(t *testing.T) {
	for _, kind := range []filterKind{traceFilterKind, idemFilterKind} {
		t.Run(kind.what, func(t *testing.T) {
			fs := memFS()
			db, err := Open("ledger", testOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			filterHistory(t, db, 1, 3)
			if err := db.pdb.Set([]byte{kind.prefix, 0, 0}, []byte{1}, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			// The rebuild (as run in the background) gives up and keeps
			// the filter it had.
			before := db.tfilter.state.Load()
			f := db.tfilter
			if kind.prefix == pfxIdem {
				f, before = db.ifilter, db.ifilter.state.Load()
			}
			db.rebuildFilter(f, kind)
			if f.state.Load() != before || f.next.Load() != nil {
				t.Fatal("the rebuild swapped in a filter built over a damaged store")
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := fs.Remove("ledger/" + filterFileName); err != nil {
				t.Fatal(err) // so that Open builds the filters from the keys
			}
			db, err = Open("ledger", testOptions(fs))
			if err == nil {
				_ = db.Close()
				t.Fatal("Open accepted a store with a short key")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), kind.what) {
				t.Fatalf("Open: %v; want ErrCorrupt naming the %s", err, kind.what)
			}
		})
	}
}
