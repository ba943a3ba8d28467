package ledger

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestLowDiskRefusesWrites: while the disk has less free space than
// MinFreeBytes, appends and registry writes are refused at once with
// ErrLowDisk and write nothing; reads keep working, and writes resume by
// themselves once there is room again.
func TestLowDiskRefusesWrites(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 30)
	opts := testOptions(memFS())
	opts.MinFreeBytes = 64 << 20
	opts.FreeSpace = func(string) (uint64, error) { return free.Load(), nil }
	db, err := Open("ledger", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.PutPersons([]Person{person("P1", 0)}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement(req(1), "P1", 20250601, nil, 0))
	waitFor := func(low bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); db.LowDisk() != low; {
			if time.Now().After(deadline) {
				t.Fatalf("LowDisk still %v after 5 s", !low)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	free.Store(64<<20 - 1)
	waitFor(true)
	head, _ := db.Head()
	began := time.Now()
	if err := db.Append(t.Context(), settlement(req(2), "P1", 20250602, nil, 0)); !errors.Is(err, ErrLowDisk) {
		t.Fatalf("append on a full disk: %v, want ErrLowDisk", err)
	}
	if _, err := db.PutPersons([]Person{person("P2", 0)}); !errors.Is(err, ErrLowDisk) {
		t.Fatalf("registry write on a full disk: %v, want ErrLowDisk", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("refusals took %v", d)
	}
	if h, _ := db.Head(); h != head {
		t.Fatalf("head moved from %d to %d while writes were refused", head, h)
	}
	if _, ok, err := db.Person(region, "P1"); err != nil || !ok {
		t.Fatalf("read on a full disk: %v %v", ok, err)
	}

	free.Store(64 << 20)
	waitFor(false)
	mustAppend(t, db, settlement(req(2), "P1", 20250602, nil, 0))
}
