package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"medgate/engine/abi"
)

// fillAuditLedger appends n entries to db as 32 hospitals' clients would:
// settlements of a few persons with counters and two trace codes each, and
// about 1 % reversals of earlier settlements. tag keeps request ids and
// codes apart between calls.
func fillAuditLedger(t testing.TB, db *DB, tag string, n int) {
	t.Helper()
	const clients = 32
	var wg sync.WaitGroup
	var failed atomic.Value
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []*Entry
			for i := g; i < n; i += clients {
				id := fmt.Sprint(tag, "-", i)
				var e *Entry
				if i%100 == 99 && len(mine) > 0 {
					e = reversal("rev-"+id, mine[0])
					mine = mine[1:]
				} else {
					e = settlement(id, fmt.Sprint("P", i%50), abi.MakeDate(2026, 10, 1),
						[]abi.Counter{{Name: "x", Value: 1}}, 0, "TC-"+id, "TD-"+id)
				}
				if err := db.Append(context.Background(), e); err != nil {
					failed.Store(err)
					return
				}
				if e.Kind == KindSettlement && i%7 == 0 {
					mine = append(mine, e)
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
}

// auditPeakHeap audits db and returns the peak heap the audit added over
// the heap before it, sampled every millisecond with the collector kept
// close to the live heap.
func auditPeakHeap(t testing.TB, db *DB) (uint64, *AuditReport) {
	t.Helper()
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		for p := peak.Load(); m.HeapAlloc > p && !peak.CompareAndSwap(p, m.HeapAlloc); p = peak.Load() {
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				sample()
			}
		}
	}()
	rep, err := db.Audit(nil)
	close(stop)
	<-done
	sample()
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	return peak.Load() - min(peak.Load(), before.HeapAlloc), rep
}

// TestAuditMemoryIsBounded: the audit held every entry's idempotency key,
// trace codes, settlement (amounts, changes, codes) and hospital row in
// maps, about 1.75 KB of heap an entry: 90 GB for the 50 million entries
// the gateway is built for, so a full-size ledger could not be audited.
// The heap it adds must not grow with the entries.
func TestAuditMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 40,000 entries")
	}
	// On disk: a store in memory is heap, and the collector's slack over
	// it would grow with the entries.
	db, err := Open(filepath.Join(t.TempDir(), "ledger"), testOptions(vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var peaks []uint64
	var total int
	for _, n := range []int{20000, 20000} {
		fillAuditLedger(t, db, fmt.Sprint("m", total), n)
		total += n
		peak, rep := auditPeakHeap(t, db)
		if rep.Entries != uint64(total) || rep.Reversals == 0 {
			t.Fatalf("audited %d entries, %d reversals", rep.Entries, rep.Reversals)
		}
		t.Logf("%d entries: the audit's peak heap %.1f MB", total, float64(peak)/1e6)
		peaks = append(peaks, peak)
	}
	// The peak is the whole process's heap, and the store's own flushes
	// and compactions may run during either audit: run to run it moved by
	// up to 5 MB (250 B an entry here) with the audit's own use flat. The
	// maps this replaced held about 1,300 B an entry.
	growth := (float64(peaks[1]) - float64(peaks[0])) / 20000
	if growth > 600 {
		t.Fatalf("the audit's heap grows by %.0f B an entry (%.1f MB at 20,000 entries, %.1f MB at 40,000)",
			growth, float64(peaks[0])/1e6, float64(peaks[1])/1e6)
	}
}

// TestAuditEntryChecksFromScratch: the checks that replay the entries —
// a request id used twice, a trace code settled while in use, a reversal
// of a reversal or of a settlement already reversed, a stale trace-code
// record no reversal freed — now compare records sorted on disk instead of
// maps; each must still be named (the entries are rewritten behind the
// chain's back: the chain breaks, and the index audit runs anyway).
func TestAuditEntryChecksFromScratch(t *testing.T) {
	rewrite := func(seq uint64, edit func(e *Entry)) func(t *testing.T, db *DB) {
		return func(t *testing.T, db *DB) {
			e, err := db.Entry(seq)
			if err != nil {
				t.Fatal(err)
			}
			edit(e)
			set(t, db, appendEntryKey(nil, seq), AppendEntry(nil, e))
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, db *DB)
		want   string
	}{
		// auditLedger's entries: P1's and P2's opening balances (1, 2),
		// req(i) at i+2, the reversals of req 2, 5, 9 and 17 at 33–36,
		// "again" (TC002 once more) at 37.
		{"request id reused", rewrite(10, func(e *Entry) { e.RequestID = req(7) }), `entry 10 reuses request id "req-000007" of hospital ` + hospital},
		{"trace code in use", rewrite(10, func(e *Entry) { e.TraceCodes = append(e.TraceCodes, "TC007") }), `entry 10 settles trace code "TC007", in use by entry 9`},
		{"trace code twice", rewrite(10, func(e *Entry) { e.TraceCodes = append(e.TraceCodes, e.TraceCodes[0]) }), `entry 10 settles trace code "TC008", in use by entry 10`},
		{"already reversed", rewrite(34, func(e *Entry) { e.Reverses = SettlementID(4) }), "entry 34 reverses S000000000004, already reversed by entry 33"},
		{"reversal of a reversal", rewrite(34, func(e *Entry) { e.Reverses = SettlementID(33) }), `entry 34 reverses "S000000000033", not an earlier settlement`},
		{"reversal of a later settlement", rewrite(34, func(e *Entry) { e.Reverses = SettlementID(37) }), `entry 34 reverses "S000000000037", not an earlier settlement`},
		{"stale trace record", func(t *testing.T, db *DB) {
			// TC002: settled by 4, freed by 33, settled again by 37; a
			// newer bucket's record makes bucket 0's (37, in use) stale.
			set(t, db, appendTraceKey(nil, 1, "TC002"), appendTraceValue(nil, 37, 0))
		}, `trace code "TC002": a stale record in bucket 0 says owner 37 freed by 0`},
		{"reversal marker wrong", func(t *testing.T, db *DB) {
			set(t, db, appendReversedKey(nil, 11), be.AppendUint64(nil, 33))
		}, "settlement 11 is marked reversed by 33, recomputed 35"},
		{"hospital row added", func(t *testing.T, db *DB) {
			e, err := db.Entry(12)
			if err != nil {
				t.Fatal(err)
			}
			set(t, db, appendHospitalRowKey(nil, e.Hospital, e.CommittedAt, 99), appendHospitalRowValue(nil, e, 0))
		}, "names no entry"},
		{"idempotency key of another entry", func(t *testing.T, db *DB) {
			set(t, db, appendIdemKey(nil, 0, hospital, req(3)), appendIdemValue(nil, [32]byte{1}, 6))
		}, `idempotency key "\vH3701020001req-000003" maps to seq 6, the entry is 5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _, _ := auditLedger(t)
			defer db.Close()
			tc.tamper(t, db)
			rep, err := db.Audit(nil)
			if err != nil {
				t.Fatal(err)
			}
			err = rep.Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("audit = %v, want a problem naming %q", err, tc.want)
			}
		})
	}
}

// TestAuditScratchIsRemoved: the audit sorts its records in a directory it
// makes under TempDir and removes when it ends.
func TestAuditScratchIsRemoved(t *testing.T) {
	db, _, _ := auditLedger(t)
	defer db.Close()
	dir := t.TempDir()
	rep, err := db.AuditWith(AuditOptions{TempDir: dir})
	if err != nil || !rep.OK() {
		t.Fatal(err, rep.Err())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("the audit left %v", left)
	}
	if _, err := db.AuditWith(AuditOptions{TempDir: filepath.Join(dir, "absent")}); err == nil || !strings.Contains(err.Error(), "scratch store") {
		t.Fatalf("an audit without a scratch directory = %v", err)
	}
}
