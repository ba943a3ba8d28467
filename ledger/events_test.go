package ledger

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func TestWriteStallsCounted(t *testing.T) {
	db := &DB{}
	el := db.events()
	if db.Stalls() != 0 || db.StallTime() != 0 {
		t.Fatal("a new DB has stalls")
	}
	el.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	time.Sleep(20 * time.Millisecond)
	if db.Stalls() != 1 {
		t.Errorf("Stalls = %d after one began, want 1", db.Stalls())
	}
	if db.StallTime() != 0 {
		t.Errorf("StallTime = %s before the stall ended, want 0", db.StallTime())
	}
	el.WriteStallEnd()
	if got := db.StallTime(); got < 20*time.Millisecond || got > 10*time.Second {
		t.Errorf("StallTime = %s after a stall of ≥ 20 ms", got)
	}
}
