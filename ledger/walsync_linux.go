package ledger

import (
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// directSyncSupported reports whether this platform makes direct syncs.
const directSyncSupported = true

// directSyncs counts direct syncs, for tests.
var directSyncs atomic.Int64

// directSyncFile is a WAL file whose Sync and SyncData are direct system
// calls (walsync.go).
type directSyncFile struct {
	vfs.File
	name string
	fd   uintptr
}

// newDirectSyncFile wraps f; a file without a descriptor (an in-memory
// filesystem's) keeps its own syncs.
func newDirectSyncFile(f vfs.File, name string) vfs.File {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return f
	}
	return directSyncFile{File: f, name: name, fd: fd}
}

func (f directSyncFile) SyncData() error { return f.sync(syscall.SYS_FDATASYNC, "fdatasync") }

func (f directSyncFile) Sync() error { return f.sync(syscall.SYS_FSYNC, "fsync") }

func (f directSyncFile) sync(trap uintptr, op string) error {
	directSyncs.Add(1)
	for {
		_, _, errno := syscall.RawSyscall(trap, f.fd, 0, 0)
		switch errno {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		}
		return fmt.Errorf("ledger: %s %s: %w", op, f.name, errno)
	}
}

func isDirectSyncFile(f vfs.File) bool {
	_, ok := f.(directSyncFile)
	return ok
}
