//go:build !linux

package ledger

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// directSyncSupported reports whether this platform makes direct syncs:
// only Linux does; elsewhere the WAL keeps Go's ordinary path.
const directSyncSupported = false

// directSyncs counts direct syncs, for tests.
var directSyncs atomic.Int64

func newDirectSyncFile(f vfs.File, name string) vfs.File { return f }

func isDirectSyncFile(vfs.File) bool { return false }
