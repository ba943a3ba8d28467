package ledger

import (
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// events reports what Pebble does that can hold up commits: write stalls
// (a commit waits for a flush or compaction) at warn, flushes and
// compactions that take long at info, so that a latency spike in the
// gateway can be matched with the store's own work.
func (db *DB) events() *pebble.EventListener {
	const slow = 500 * time.Millisecond
	var stallBegan atomic.Int64 // unix ns; callbacks come from Pebble's goroutines
	return &pebble.EventListener{
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			stallBegan.Store(time.Now().UnixNano())
			db.stalls.Add(1)
			db.log.Warn().Str("reason", info.Reason).Msg("ledger: write stall began")
		},
		WriteStallEnd: func() {
			db.log.Warn().Dur("took", time.Duration(time.Now().UnixNano()-stallBegan.Load())).Msg("ledger: write stall ended")
		},
		FlushEnd: func(info pebble.FlushInfo) {
			if info.TotalDuration > slow {
				db.log.Info().Dur("took", info.TotalDuration).Int("tables", len(info.Output)).Msg("ledger: slow flush")
			}
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			if info.TotalDuration > slow {
				db.log.Info().Dur("took", info.TotalDuration).Str("reason", info.Reason).Msg("ledger: slow compaction")
			}
		},
	}
}

// Stalls is the number of write stalls since Open.
func (db *DB) Stalls() uint64 { return db.stalls.Load() }
