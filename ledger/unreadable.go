package ledger

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// A read of the store can fail while the gateway serves: a disk returning
// I/O errors, a block whose checksum no longer matches. Such a failure must
// never be taken for an absent record (an idempotency key or a trace code
// reported unused would settle twice), and the caller must be able to tell
// it from a bug: every read error of the store reaches callers wrapped in
// ErrUnreadable, and the DB remembers when it last met one, for the health
// check (Unreadable).

// readErrorWindow is how long after its last read error the DB reports
// itself Unreadable: a damaged block fails every read of it, so a store that
// has not failed a read for that long serves what is asked of it.
const readErrorWindow = time.Minute

// unreadable wraps a store read error in ErrUnreadable (nil, ErrClosed and
// errors already wrapped are returned as they are).
func unreadable(err error) error {
	if err == nil || errors.Is(err, ErrUnreadable) || errors.Is(err, ErrClosed) || errors.Is(err, pebble.ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnreadable, err)
}

// noteReadError records that a read of the store failed now.
func (db *DB) noteReadError() {
	db.readErrors.Add(1)
	db.readErrorAt.Store(time.Now().UnixNano())
}

// ReportUnreadable records that a caller met err (ErrUnreadable) now. The
// failed file reads are recorded where they happen, but data that reads
// back and fails its checksum (a damaged blob file's block) may reach
// callers only as the error, without Pebble's DataCorruption event: the
// health check must know of it, and ReadErrors count it, as well (a
// corruption the event reported carries its details and was counted).
func (db *DB) ReportUnreadable(err error) {
	if pebble.IsCorruptionError(err) && pebble.ExtractDataCorruptionInfo(err) == nil {
		db.readErrors.Add(1)
	}
	db.readErrorAt.Store(time.Now().UnixNano())
}

// Unreadable reports whether a read of the store failed (an I/O error, or
// data found corrupt) within the last minute: the ledger then answers some
// reads, and the writes that need them, with ErrUnreadable.
func (db *DB) Unreadable() bool {
	at := db.readErrorAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < readErrorWindow
}

// ReadErrors is the number of failed reads of the store's tables and blob
// files since Open (corruption found in them included).
func (db *DB) ReadErrors() uint64 { return db.readErrors.Load() }

// readWatchFile is a table or blob file being read: its failed reads are
// recorded (onErr), whoever made them (a request, a compaction).
type readWatchFile struct {
	vfs.File
	onErr func()
}

func (f readWatchFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if err != nil && err != io.EOF {
		f.onErr()
	}
	return n, err
}

func (f readWatchFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	if err != nil && err != io.EOF {
		f.onErr()
	}
	return n, err
}
