package ledger

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fillCredits credits n references, in parallel so that they share
// batches, to a few persons.
func fillCredits(t *testing.T, db *DB, tag string, n int) {
	t.Helper()
	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, _, err := db.Credit(region, fmt.Sprint("P", i%4), fmt.Sprintf("%s-credit-%08d", tag, i), 1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestR5FinalAuditMemoryIsBoundedWithCredits: credits are entries, as many
// as a person's monthly account credits make them, and the audit's heap
// must not grow with them any more than with settlements (it held every
// credit's reference, person and amounts in a map).
func TestR5FinalAuditMemoryIsBoundedWithCredits(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 200,000 credits")
	}
	db, err := Open(filepath.Join(t.TempDir(), "ledger"), testOptions(vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.PutPersons([]Person{person("P0", 0), person("P1", 0), person("P2", 0), person("P3", 0)}); err != nil {
		t.Fatal(err)
	}
	const n = 100000
	var peaks []uint64
	for i := 0; i < 2; i++ {
		fillCredits(t, db, fmt.Sprint("r", i), n)
		peak, rep := auditPeakHeap(t, db)
		if rep.Credits != uint64((i+1)*n) {
			t.Fatalf("audited %d credits", rep.Credits)
		}
		t.Logf("%d credits: the audit's peak heap %.1f MB", (i+1)*n, float64(peak)/1e6)
		peaks = append(peaks, peak)
	}
	// Run to run the peak moves by a few MB with the audit's own use flat
	// (TestAuditMemoryIsBounded); a map of the credits took about 200 B a
	// credit.
	growth := (float64(peaks[1]) - float64(peaks[0])) / n
	if growth > 100 {
		t.Fatalf("the audit's heap grows by %.0f B a credit (%.1f MB at %d credits, %.1f MB at %d)",
			growth, float64(peaks[0])/1e6, n, float64(peaks[1])/1e6, 2*n)
	}
}

// TestR5FinalAuditCreditChecksFromScratch: the credit checks, now against
// records sorted on disk, still name a reference credited twice, a credit
// record that differs from its entry and one without an entry.
func TestR5FinalAuditCreditChecksFromScratch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, db *DB, seq uint64)
		want   string
	}{
		{"reference reused", func(t *testing.T, db *DB, seq uint64) {
			e, err := db.Entry(seq)
			if err != nil {
				t.Fatal(err)
			}
			e.RequestID = "credit-1"
			set(t, db, appendEntryKey(nil, seq), AppendEntry(nil, e))
		}, "reuses credit reference 152500/credit-1 of entry 38"},
		{"record differs", func(t *testing.T, db *DB, seq uint64) {
			set(t, db, appendCreditKey(nil, region, "final-2"), appendCreditValue(nil, "P2", 5, 1, seq))
		}, "credit 152500/final-2: the record says 5 to P2"},
		{"record without entry", func(t *testing.T, db *DB, seq uint64) {
			set(t, db, appendCreditKey(nil, region, "final-3"), appendCreditValue(nil, "P2", 5, 1, seq))
		}, "credit 152500/final-3 (5 to P2) has no credit entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _, _ := auditLedger(t)
			defer db.Close()
			if _, _, err := db.Credit(region, "P2", "final-2", 100); err != nil {
				t.Fatal(err)
			}
			seq, _ := db.Head()
			tc.tamper(t, db, seq)
			rep, err := db.Audit(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := rep.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("audit = %v, want a problem naming %q", err, tc.want)
			}
		})
	}
}
