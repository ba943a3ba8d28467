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
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			// Called on the read path: the read that found it fails.
			db.noteReadError()
			db.log.Error().Str("path", info.Path).Err(info.Details).Msg("ledger: corrupt data found in the store")
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			stallBegan.Store(time.Now().UnixNano())
			db.stalls.Add(1)
			db.log.Warn().Str("reason", info.Reason).Msg("ledger: write stall began")
		},
		WriteStallEnd: func() {
			took := time.Duration(time.Now().UnixNano() - stallBegan.Load())
			db.stalled.Add(int64(took))
			db.log.Warn().Dur("took", took).Msg("ledger: write stall ended")
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

// StallTime is how long the write stalls that have ended since Open
// lasted, in all.
func (db *DB) StallTime() time.Duration { return time.Duration(db.stalled.Load()) }

// Compactions is the store's compaction state: what a ledger owes its
// levels and how much of it is being paid now.
type Compactions struct {
	// DebtBytes is Pebble's estimate of the bytes compactions must still
	// rewrite to bring every level within its target size. A ledger grown
	// faster than it compacts (a bulk load, a burst) owes a lot, and pays
	// it with CPU that settlements would otherwise get.
	DebtBytes uint64
	// Running is the number of compactions in progress.
	Running int64
	// L0Tables is the number of tables in level 0, where flushes land.
	L0Tables int64
}

// Compactions returns the store's compaction state (zero once closed).
func (db *DB) Compactions() Compactions {
	if db.closed.Load() {
		return Compactions{}
	}
	m := db.pdb.Metrics()
	return Compactions{DebtBytes: m.Compact.EstimatedDebt, Running: m.Compact.NumInProgress, L0Tables: m.Levels[0].TablesCount}
}

// StoreMetrics is Pebble's report on the store as text: each level's
// tables, bytes, compactions and write amplification, the caches and the
// WAL ("" once closed).
func (db *DB) StoreMetrics() string {
	if db.closed.Load() {
		return ""
	}
	return db.pdb.Metrics().String()
}
