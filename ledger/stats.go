package ledger

import (
	"time"
)

// CommitObserver is told of every group commit the writer attempts: how
// long the synced commit took, how many entries (settlements and reversals)
// the batch carried, and the commit's error (nil once it is durable). It
// runs on the goroutine that waits for the syncs, before the batch's
// requests are answered: it must be quick, must not allocate needlessly
// and must not call the DB.
type CommitObserver func(took time.Duration, entries int, err error)

// ObserveCommits makes fn the DB's commit observer (nil: none). Metrics
// use it; the writer pays one atomic load per commit when none is set.
func (db *DB) ObserveCommits(fn CommitObserver) {
	if fn == nil {
		db.observer.Store(nil)
		return
	}
	db.observer.Store(&fn)
}

// Commits is the number of batches committed since Open.
func (db *DB) Commits() uint64 { return db.commits.Load() }

// CommitWaiting is how long the oldest group commit still being handed to
// Pebble or synced has waited (0 when none is). A commit ends in
// milliseconds on a healthy disk, and the commit observer hears of it only
// once it ends: a disk whose writes or syncs hang (a failing disk, a hung
// network volume) holds every write of the ledger while nothing else says
// so.
func (db *DB) CommitWaiting() time.Duration {
	oldest := int64(0)
	for _, at := range []int64{db.applying.Load(), db.syncing.Load()} {
		if at != 0 && (oldest == 0 || at < oldest) {
			oldest = at
		}
	}
	if oldest == 0 {
		return 0
	}
	return max(0, time.Since(time.Unix(0, oldest)))
}
