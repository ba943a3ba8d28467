package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DiskSync is the latency of the ledger disk's own durable write, measured
// in the run, before the targets, in the directory their ledgers use: a
// record appended to a new file and synced the way Pebble syncs its WAL
// (fdatasync on Linux), Writes times in a row. Every settlement waits for
// such a sync (often the end of one already under way, then its own), so
// this is the floor under the gateway's commit latency on this machine,
// and the open-loop p99 target cannot be read without it.
type DiskSync struct {
	Dir    string  `json:"dir"`
	Writes int     `json:"writes"`
	Bytes  int     `json:"bytes_per_write"`
	Sync   Latency `json:"write_and_sync"`
}

// MeasureDiskSync appends n records of size bytes to a new file in dir,
// syncing the data after each, and summarizes the time of each write and
// sync. The file is removed.
func MeasureDiskSync(dir string, n, size int) (*DiskSync, error) {
	if n <= 0 || size <= 0 {
		return nil, fmt.Errorf("bench: disk sync: %d writes of %d bytes", n, size)
	}
	f, err := os.CreateTemp(dir, ".disksync-")
	if err != nil {
		return nil, fmt.Errorf("bench: disk sync: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rec := make([]byte, size)
	for i := range rec {
		rec[i] = byte(i)
	}
	h := newHistogram()
	for i := 0; i < n; i++ {
		began := time.Now()
		if _, err := f.Write(rec); err != nil {
			return nil, fmt.Errorf("bench: disk sync: write %s: %w", f.Name(), err)
		}
		if err := syncData(f); err != nil {
			return nil, fmt.Errorf("bench: disk sync: sync %s: %w", f.Name(), err)
		}
		recordLatency(h, max(time.Since(began).Microseconds(), 1))
	}
	abs, _ := filepath.Abs(dir)
	return &DiskSync{Dir: abs, Writes: n, Bytes: size, Sync: summarize(h)}, nil
}
