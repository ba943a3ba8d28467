package ledger

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// WAL syncs made directly (Options.DirectWALSync).
//
// Every settlement waits for a sync of Pebble's write-ahead log, made by
// Pebble's log writer goroutine with fdatasync. Through Go's ordinary
// system-call path the goroutine's processor (P) is left behind while the
// sync runs, and a sync takes 0.2–0.5 ms on this project's machine. That is
// long enough for Go's sysmon to take the P and hand it to another thread,
// for the syncing thread to find no P when it returns and park, and for
// sysmon itself to poll every 20 µs while it keeps finding such Ps: each of
// those is a thread wake-up or sleep, which a VM makes expensive. At 3,000
// settlements a second (about half of this machine's maximum) direct syncs
// took 15–18 % off the server's CPU a settlement (bench/RESULTS.md, "WAL
// syncs made directly").
//
// A direct sync is the same fdatasync made with syscall.RawSyscall: the
// thread keeps its P, so nothing is handed off or woken, and the P runs
// nothing else for the sync's duration. The cost of that: with one P
// nothing else runs during a sync (so the gateway uses it only with two or
// more), and Go's stop-the-world phases (a collection's start and end) wait
// for the sync to return. A disk whose sync never returns then stops the
// whole process at the next collection, not only its settlements; the
// gateway's --wal-sync=scheduler is the ordinary path for such disks.

// isWAL reports whether name is one of Pebble's write-ahead log files.
func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

// directSyncFS makes the syncs of the WAL files it creates or reuses
// direct.
type directSyncFS struct {
	vfs.FS
}

func (fs directSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !isWAL(name) {
		return f, err
	}
	return newDirectSyncFile(f, name), nil
}

func (fs directSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil || !isWAL(newname) {
		return f, err
	}
	return newDirectSyncFile(f, newname), nil
}

// Unwrap returns the wrapped filesystem (vfs.Root).
func (fs directSyncFS) Unwrap() vfs.FS { return fs.FS }
