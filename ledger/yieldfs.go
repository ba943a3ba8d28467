package ledger

import (
	"runtime"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// yieldFS hands the processor back to Go's scheduler after every write to
// a table or blob file: between the blocks a flush or a compaction writes.
//
// Why: a flush or a compaction computes for up to seconds, and Go preempts
// a running goroutine only after 10 ms. On a 2-core machine, while
// compactions hold both processors, each goroutine a settlement wakes
// (connection, writer, syncer, connection again) can wait that long for a
// processor, and the waits add up in the tail. A table block is 4 KB
// (Pebble's default) and Pebble writes through a 4 KB buffer, so a write
// is a few KB, microseconds of work, and yielding after each one lets woken
// goroutines run first at the cost of one trip through the scheduler a
// write. Open loop at 3,600 settlements/s on this 2-core VM: p99 11–23 ms
// against 17–57 ms without, in 4 of 4 alternating pairs, at the same CPU a
// settlement (bench/RESULTS.md, 2026-12-04).
//
// Only writes to new tables and blob files yield: those come from Pebble's
// background goroutines alone. The WAL (the settlement's own sync) and
// reads (which the writer's goroutine, the serial stage, also makes) do
// not.
type yieldFS struct {
	vfs.FS
	yield func() // runtime.Gosched; tests count the calls
	// onReadErr, when set, is called at each failed read of a table or
	// blob file (unreadable.go).
	onReadErr func()
}

// newYieldFS wraps fs; yield nil means runtime.Gosched.
func newYieldFS(fs vfs.FS, yield func()) yieldFS {
	if yield == nil {
		yield = runtime.Gosched
	}
	return yieldFS{FS: fs, yield: yield}
}

// yields reports whether writes to the file name yield: tables and blob
// files.
func yields(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

func (fs yieldFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !yields(name) {
		return f, err
	}
	return yieldFile{File: f, yield: fs.yield}, nil
}

// Open wraps tables and blob files so that their failed reads are
// recorded (unreadable.go).
func (fs yieldFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || fs.onReadErr == nil || !yields(name) {
		return f, err
	}
	return readWatchFile{File: f, onErr: fs.onReadErr}, nil
}

// Unwrap returns the wrapped filesystem (vfs.Root).
func (fs yieldFS) Unwrap() vfs.FS { return fs.FS }

// yieldFile is a table or blob file being written.
type yieldFile struct {
	vfs.File
	yield func()
}

func (f yieldFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.yield()
	return n, err
}
