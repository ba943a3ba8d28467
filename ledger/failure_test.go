package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine/abi"
)

// verifyTampered builds a ledger of 10 entries, lets tamper change the
// store behind the ledger's back, and expects Verify to name seq want.
func verifyTampered(t *testing.T, want uint64, tamper func(db *DB)) {
	t.Helper()
	db, _ := openMem(t)
	for i := 1; i <= 10; i++ {
		mustAppend(t, db, settlement(req(i), "P1", 20261109, nil, 0))
	}
	if n, err := db.Verify(); n != 10 || err != nil {
		t.Fatalf("before tampering: %d %v", n, err)
	}
	tamper(db)
	_, err := db.Verify()
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("Verify = %v, want a ChainError", err)
	}
	if ce.Seq != want {
		t.Fatalf("Verify named seq %d (%s), want %d", ce.Seq, ce.Reason, want)
	}
	t.Logf("%v", err)
}

func rawEntry(t *testing.T, db *DB, seq uint64) []byte {
	t.Helper()
	v, err := db.get(appendEntryKey(nil, seq))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Run("altered amount", func(t *testing.T) {
		verifyTampered(t, 4, func(db *DB) {
			v := rawEntry(t, db, 4)
			e := new(Entry)
			if err := DecodeEntry(v, e); err != nil {
				t.Fatal(err)
			}
			e.Amounts.BasicFund++ // a valid entry, re-encoded, old hash kept
			_ = db.pdb.Set(appendEntryKey(nil, 4), AppendEntry(nil, e), pebble.Sync)
		})
	})
	t.Run("altered byte", func(t *testing.T) {
		verifyTampered(t, 6, func(db *DB) {
			v := rawEntry(t, db, 6)
			v[len(v)/2] ^= 0x40
			_ = db.pdb.Set(appendEntryKey(nil, 6), v, pebble.Sync)
		})
	})
	t.Run("altered hash", func(t *testing.T) {
		verifyTampered(t, 2, func(db *DB) {
			v := rawEntry(t, db, 2)
			v[len(v)-1] ^= 1
			_ = db.pdb.Set(appendEntryKey(nil, 2), v, pebble.Sync)
		})
	})
	t.Run("rehashed after alteration", func(t *testing.T) {
		// The altered entry is self-consistent; its successor's link breaks.
		verifyTampered(t, 4, func(db *DB) {
			e := new(Entry)
			_ = DecodeEntry(rawEntry(t, db, 3), e)
			e.Amounts.Total = 1
			e.Hash = EntryHash(e.PrevHash, appendEntryBody(nil, e))
			_ = db.pdb.Set(appendEntryKey(nil, 3), AppendEntry(nil, e), pebble.Sync)
		})
	})
	t.Run("deleted", func(t *testing.T) {
		verifyTampered(t, 5, func(db *DB) {
			_ = db.pdb.Delete(appendEntryKey(nil, 5), pebble.Sync)
		})
	})
	t.Run("deleted first", func(t *testing.T) {
		verifyTampered(t, 1, func(db *DB) {
			_ = db.pdb.Delete(appendEntryKey(nil, 1), pebble.Sync)
		})
	})
	t.Run("deleted last", func(t *testing.T) {
		verifyTampered(t, 10, func(db *DB) {
			_ = db.pdb.Delete(appendEntryKey(nil, 10), pebble.Sync)
		})
	})
	t.Run("swapped", func(t *testing.T) {
		verifyTampered(t, 7, func(db *DB) {
			a, b := rawEntry(t, db, 7), rawEntry(t, db, 8)
			_ = db.pdb.Set(appendEntryKey(nil, 7), b, pebble.Sync)
			_ = db.pdb.Set(appendEntryKey(nil, 8), a, pebble.Sync)
		})
	})
	t.Run("truncated", func(t *testing.T) {
		verifyTampered(t, 9, func(db *DB) {
			_ = db.pdb.Set(appendEntryKey(nil, 9), []byte{1, 2, 3}, pebble.Sync)
		})
	})
}

func TestWriteFailure(t *testing.T) {
	for _, kind := range []string{"sync", "write"} {
		t.Run(kind, func(t *testing.T) {
			mem := vfs.NewMem()
			fault := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
				if !strings.HasSuffix(op.Path, ".log") {
					return nil
				}
				switch op.Kind {
				case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
					return errorfs.ErrInjected
				case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
					if kind == "write" {
						return errorfs.ErrInjected
					}
				}
				return nil
			})}
			db, err := Open("data", testOptions(errorfs.Wrap(mem, fault)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.PutPersons([]Person{person("P1", 1000)}); err != nil {
				t.Fatal(err)
			}
			s1 := settlement("r1", "P1", 20261109, []abi.Counter{{Name: "n", Value: 1}}, -100, "T1")
			mustAppend(t, db, s1)
			// The commit observer (the gateway's metrics) hears of every
			// failed commit, whether the write or the sync failed.
			var observedFailures atomic.Int64
			db.ObserveCommits(func(_ time.Duration, _ int, err error) {
				if err != nil {
					observedFailures.Add(1)
				}
			})

			fault.On()
			// Several concurrent appends, likely in one batch: none is
			// acknowledged.
			var wg sync.WaitGroup
			entries := make([]*Entry, 4)
			errs := make([]error, len(entries))
			for i := range entries {
				entries[i] = settlement(fmt.Sprintf("f%d", i), "P1", 20261109, []abi.Counter{{Name: "n", Value: 1}}, -100, fmt.Sprintf("F%d", i))
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					errs[i] = db.Append(context.Background(), entries[i])
				}(i)
			}
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, ErrWriteFailed) {
					t.Fatalf("append %d during fault: %v", i, err)
				}
				if entries[i].Seq != 0 || entries[i].Hash != ([32]byte{}) {
					t.Fatalf("append %d: failed entry left sealed", i)
				}
			}
			sawCause := false
			for _, err := range errs {
				sawCause = sawCause || strings.Contains(err.Error(), "injected")
			}
			if !sawCause {
				t.Fatalf("no append reported the commit's cause: %v", errs)
			}
			if observedFailures.Load() == 0 {
				t.Fatal("the commit observer heard of no failed commit")
			}
			if !db.Failed() {
				t.Fatal("not in failed state")
			}
			fault.Off()

			start := time.Now()
			err = db.Append(context.Background(), settlement("r2", "P1", 20261109, nil, 0))
			if !errors.Is(err, ErrWriteFailed) || time.Since(start) > 100*time.Millisecond {
				t.Fatalf("append after failure: %v after %v", err, time.Since(start))
			}
			if _, err := db.PutPersons([]Person{person("P9", 1)}); !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("PutPersons after failure: %v", err)
			}

			// Reads still work and expose nothing unacknowledged (entry 1
			// is P1's opening balance, entry 2 s1).
			if seq, h := db.Head(); seq != 2 || h != s1.Hash {
				t.Fatalf("head = %d", seq)
			}
			got, err := db.Entry(2)
			if err != nil {
				t.Fatal(err)
			}
			sameEntry(t, got, s1)
			if id, inUse, err := db.TraceCodeOwner("T1"); err != nil || !inUse || id != s1.SettlementID {
				t.Fatalf("TraceCodeOwner(T1) = %s %v %v", id, inUse, err)
			}
			for i := range entries {
				// Pebble may have published the failed batch to readers; the
				// watermark keeps it hidden.
				if _, ok, err := db.Idempotency(hospital, fmt.Sprintf("f%d", i)); ok {
					t.Fatalf("failed entry f%d visible (err %v)", i, err)
				}
				if _, inUse, _ := db.TraceCodeOwner(fmt.Sprintf("F%d", i)); inUse {
					t.Fatalf("failed entry's trace code visible")
				}
			}
			if _, err := db.Entry(3); err == nil {
				t.Fatal("Entry(3) returned an unacknowledged entry")
			} else {
				t.Logf("Entry(3) after failure: %v", err)
			}
			if n, err := db.Verify(); n != 2 || err != nil {
				t.Fatalf("Verify = %d %v", n, err)
			}
			if _, ok := db.Hospital("x"); ok {
				t.Fatal("?")
			}
			closed := make(chan error, 1)
			go func() { closed <- db.Close() }()
			select {
			case err := <-closed:
				t.Logf("Close after failure: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("Close hangs after a write failure")
			}

			// Reopening recovers a consistent ledger: the acknowledged entry
			// is there; the failed ones may or may not be (they reached the
			// WAL or not), but the chain and the indexes agree.
			db2, err := Open("data", testOptions(mem))
			if err != nil {
				t.Fatal(err)
			}
			defer db2.Close()
			n, err := db2.Verify()
			if err != nil || n < 2 {
				t.Fatalf("Verify after reopen = %d %v", n, err)
			}
			e, err := db2.Entry(2)
			if err != nil || e.Hash != s1.Hash {
				t.Fatalf("acknowledged entry lost: %v", err)
			}
			s3 := settlement("r3", "P1", 20261109, nil, 0)
			mustAppend(t, db2, s3)
			if s3.Seq != n+1 {
				t.Fatalf("seq after reopen = %d, want %d", s3.Seq, n+1)
			}
		})
	}
}

// Every acknowledged entry survives a crash that loses all unsynced data.
func TestCrashKeepsAcknowledged(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db, err := Open("data", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked = map[string]uint64{}
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := settlement(fmt.Sprintf("g%d-%d", g, i), "P1", 20261109, []abi.Counter{{Name: "n", Value: 1}}, 0)
				if err := db.Append(context.Background(), e); err != nil {
					if errors.Is(err, ErrClosed) {
						return
					}
					t.Error(err)
					return
				}
				mu.Lock()
				acked[e.RequestID] = e.Seq
				mu.Unlock()
			}
		}(g)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	snapshot := make(map[string]uint64, len(acked))
	for k, v := range acked {
		snapshot[k] = v
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	mu.Unlock()
	close(stop)
	wg.Wait()
	_ = db.Close()

	db2, err := Open("data", testOptions(crashed))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	n, err := db2.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if len(snapshot) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	for r, seq := range snapshot {
		id, ok, err := db2.Idempotency(hospital, r)
		if err != nil || !ok || id.Seq != seq {
			t.Fatalf("acknowledged %s (seq %d) lost after crash: %+v %v %v", r, seq, id, ok, err)
		}
	}
	if got := counters(t, db2, "P1", 2026); uint64(got["n"]) != n {
		t.Fatalf("counter n = %d, entries = %d", got["n"], n)
	}
	t.Logf("%d acknowledged before the crash, %d entries recovered", len(snapshot), n)
}
