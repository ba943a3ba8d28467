package bench

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"medgate/ledger"
)

// A prefilled ledger is a valid ledger: the chain verifies, the entries
// are the bench world's, and a second prefill continues it.
func TestPrefill(t *testing.T) {
	w := testWorld(t)
	dir := filepath.Join(t.TempDir(), "ledger")
	for round, want := range []uint64{1500, 2000} {
		res, err := Prefill(context.Background(), w, PrefillConfig{Dir: dir, Entries: int(want) - 1500*round, Writers: 64, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if res.Head != want || res.TraceCodes == 0 || res.BytesOnDisk == 0 {
			t.Fatalf("round %d: %+v", round, res)
		}
	}
	db, err := ledger.Open(dir, ledger.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.Verify(); err != nil || n != 2000 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	e, err := db.Entry(1234)
	if err != nil {
		t.Fatal(err)
	}
	known := false
	for _, p := range w.Persons[e.InsuredRegion] {
		known = known || p.ID == e.PersonID
	}
	if !known || len(e.Lines) == 0 || e.Amounts.Total <= 0 {
		t.Fatalf("entry 1234: person %s/%s known %v, %d lines, total %d", e.InsuredRegion, e.PersonID, known, len(e.Lines), e.Amounts.Total)
	}
}

// A prefill that was stopped may have committed entries numbered above the
// ledger's head (numbers are taken before the commit, by many goroutines):
// the next prefill must number after them, not reuse their trace codes.
func TestPrefillResumesAfterHighestNumber(t *testing.T) {
	w := testWorld(t)
	dir := filepath.Join(t.TempDir(), "ledger")
	if _, err := Prefill(context.Background(), w, PrefillConfig{Dir: dir, Entries: 100, Writers: 8, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	// Entry number 150 committed while 101–149 never were.
	db, err := ledger.Open(dir, ledger.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	gen := newPrefillGen(w, 99, 0)
	e := gen.entry(150)
	for len(e.TraceCodes) == 0 {
		e = gen.entry(150)
	}
	if err := db.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Prefill(context.Background(), w, PrefillConfig{Dir: dir, Entries: 100, Writers: 8, Seed: 5})
	if err != nil {
		t.Fatalf("second prefill: %v", err)
	}
	if res.Head != 201 {
		t.Fatalf("head %d, want 201", res.Head)
	}
}
