package ledger

import (
	"time"
)

// Writes stop, with ErrLowDisk, while the ledger's disk has less free space
// than Options.MinFreeBytes.
//
// Why: Pebble does not fail a write when its disk is full. Its flushes and
// compactions fail and are retried, the memtables fill, and the next
// commit waits in a write stall that nothing ends until space comes back:
// every settlement then hangs until its client gives up (seen on this
// project's machine, bench/RESULTS.md), with requests piling up behind it.
// Refused early, a settlement gets a quick 503 and nothing is written;
// what is in flight still has the room it needs, and Pebble keeps room for
// its compactions. Reads keep working, and writes resume by themselves once
// an operator frees space.

// diskCheckEvery is how often the free space is read (statfs: a
// microsecond); a ledger writes at most a few megabytes in between.
const diskCheckEvery = 250 * time.Millisecond

// watchDisk reads the free space of the ledger's directory until Close.
func (db *DB) watchDisk() {
	if db.minFree == 0 {
		return
	}
	db.checkDisk()
	go func() {
		t := time.NewTicker(diskCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-db.quit:
				return
			case <-t.C:
				db.checkDisk()
			}
		}
	}()
}

// checkDisk sets lowDisk from the free space now, logging each change. An
// unreadable free space changes nothing.
func (db *DB) checkDisk() {
	free, err := db.freeSpace(db.dir)
	if err != nil {
		if !db.diskUnreadable { // once, not four times a second
			db.log.Warn().Err(err).Msg("ledger: free disk space unreadable; writes are not held back for it")
		}
		db.diskUnreadable = true
		return
	}
	db.diskUnreadable = false
	low := free < db.minFree
	if db.lowDisk.Swap(low) == low {
		return
	}
	if low {
		db.log.Error().Uint64("free_bytes", free).Uint64("min_free_bytes", db.minFree).
			Msg("ledger: the disk is nearly full; writes are refused (503) until space is freed")
	} else {
		db.log.Warn().Uint64("free_bytes", free).Msg("ledger: disk space is back; writes resume")
	}
}

// LowDisk reports whether writes are refused for want of disk space.
func (db *DB) LowDisk() bool { return db.lowDisk.Load() }
