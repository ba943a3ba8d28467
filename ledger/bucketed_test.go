package ledger

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

const testDate = 20261109

// bucketOptions opens stores with two entries a bucket, so that a few
// entries span many buckets.
func bucketOptions(fs vfs.FS) Options {
	o := testOptions(fs)
	o.bucketShift = 1
	return o
}

// bucketHistory settles and reverses across buckets (shift 1: seq 1 is in
// bucket 0, seqs 2–3 in bucket 1, …) and checks every lookup on the way. It
// returns the settlement that holds code "A" at the end (seq 10, bucket 5).
func bucketHistory(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	s1 := settlement(req(1), "P1", testDate, nil, 0, "A", "B")
	mustAppend(t, db, s1) // seq 1, bucket 0
	for i := 2; i <= 6; i++ {
		mustAppend(t, db, settlement(req(i), "P1", testDate, nil, 0, "C"+req(i))) // seqs 2–6, buckets 1–3
	}
	if db.topBucket() != 3 {
		t.Fatalf("top bucket %d after 6 entries, want 3", db.topBucket())
	}
	wantOwner := func(code, id string) {
		t.Helper()
		got, inUse, err := db.TraceCodeOwner(code)
		if err != nil || inUse != (id != "") || got != id {
			t.Fatalf("TraceCodeOwner(%s) = %q %v %v, want %q", code, got, inUse, err, id)
		}
	}
	wantTaken := func(e *Entry, by string) {
		t.Helper()
		var te *TraceCodeError
		if err := db.Append(ctx, e); !errors.As(err, &te) || te.SettlementID != by {
			t.Fatalf("append %s = %v, want its trace code held by %s", e.RequestID, err, by)
		}
	}
	wantDuplicate := func(e *Entry, seq uint64) {
		t.Helper()
		var de *DuplicateError
		if err := db.Append(ctx, e); !errors.As(err, &de) || de.Existing.Seq != seq {
			t.Fatalf("append %s again = %v, want a duplicate of entry %d", e.RequestID, err, seq)
		}
		id, ok, err := db.Idempotency(e.Hospital, e.RequestID)
		if err != nil || !ok || id.Seq != seq {
			t.Fatalf("Idempotency(%s) = %+v %v %v, want entry %d", e.RequestID, id, ok, err, seq)
		}
	}

	// Bucket 0's records, looked up from bucket 3.
	wantOwner("A", "S000000000001")
	wantTaken(settlement(req(7), "P1", testDate, nil, 0, "A"), "S000000000001")
	wantDuplicate(settlement(req(1), "P1", testDate, nil, 0), 1)

	// Freed where it was marked, in bucket 0, by a reversal in bucket 3.
	r1 := reversal("rev-1", s1)
	mustAppend(t, db, r1) // seq 7
	wantOwner("A", "")
	wantOwner("B", "")
	// A reversal's batch reads through an indexed batch: its retry too.
	wantDuplicate(reversal("rev-1", s1), 7)

	// Settled again in bucket 4: the newest record wins.
	s8 := settlement(req(8), "P1", testDate, nil, 0, "A")
	mustAppend(t, db, s8) // seq 8, bucket 4
	wantOwner("A", "S000000000008")
	wantOwner("B", "")
	wantTaken(settlement(req(9), "P1", testDate, nil, 0, "A"), "S000000000008")

	// Freed in bucket 4, settled again in bucket 5.
	mustAppend(t, db, reversal("rev-8", s8)) // seq 9
	wantOwner("A", "")
	mustAppend(t, db, settlement(req(10), "P1", testDate, nil, 0, "A")) // seq 10, bucket 5
	wantOwner("A", "S000000000010")
	var are *AlreadyReversedError
	if err := db.Append(ctx, reversal("rev-1-again", s1)); !errors.As(err, &are) {
		t.Fatalf("reversing S1 twice = %v", err)
	}
	wantDuplicate(settlement(req(1), "P1", testDate, nil, 0), 1)
	wantDuplicate(settlement(req(8), "P1", testDate, nil, 0), 8)
}

// openBucketHistory opens a new store in fs with bucketOptions and writes
// bucketHistory into it.
func openBucketHistory(t *testing.T, fs vfs.FS) *DB {
	t.Helper()
	db, err := Open("ledger", bucketOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	bucketHistory(t, db)
	return db
}

// TestBuckets: trace codes and idempotency keys found and freed across
// buckets, by the writer and by readers, before and after a restart.
func TestBuckets(t *testing.T) {
	fs := memFS()
	db := openBucketHistory(t, fs)
	auditOK(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The shift is the store's: another option does not change it.
	o := testOptions(fs)
	o.bucketShift = 7
	db, err := Open("ledger", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.bshift != 1 || db.topBucket() != 5 {
		t.Fatalf("reopened with shift %d, top bucket %d; want 1 and 5", db.bshift, db.topBucket())
	}
	auditOK(t, db)
	if owner, inUse, err := db.TraceCodeOwner("A"); err != nil || !inUse || owner != "S000000000010" {
		t.Fatalf("after reopen A is held by %q %v %v", owner, inUse, err)
	}
	var de *DuplicateError
	if err := db.Append(context.Background(), settlement(req(1), "P1", testDate, nil, 0)); !errors.As(err, &de) || de.Existing.Seq != 1 {
		t.Fatalf("after reopen a retry of request 1 = %v", err)
	}
	mustAppend(t, db, settlement(req(11), "P1", testDate, nil, 0, "B")) // B is free
	auditOK(t, db)
}

// TestBucketKeys: the records sit in the buckets bucketed.go says.
func TestBucketKeys(t *testing.T) {
	fs := memFS()
	db := openBucketHistory(t, fs)
	_ = db.Close()
	got := rawRecords(t, fs, pfxTrace)
	want := map[string]string{
		string(appendTraceKey(nil, 0, "A")): string(appendTraceValue(nil, 1, 7)),
		string(appendTraceKey(nil, 0, "B")): string(appendTraceValue(nil, 1, 7)),
		string(appendTraceKey(nil, 4, "A")): string(appendTraceValue(nil, 8, 9)),
		string(appendTraceKey(nil, 5, "A")): string(appendTraceValue(nil, 10, 0)),
	}
	for i := 2; i <= 6; i++ {
		want[string(appendTraceKey(nil, uint32(i/2), "C"+req(i)))] = string(appendTraceValue(nil, uint64(i), 0))
	}
	if len(got) != len(want) {
		t.Fatalf("%d trace records, want %d: %q", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("trace record %q = %x, want %x", k, got[k], v)
		}
	}
	idem := rawRecords(t, fs, pfxIdem)
	for k := range idem {
		id, _ := decodeIdemValue([]byte(idem[k]))
		if b := be.Uint32([]byte(k)[1:]); uint64(b) != id.Seq>>1 {
			t.Fatalf("idempotency key %q of entry %d in bucket %d", k, id.Seq, b)
		}
	}
	if len(idem) != 10 {
		t.Fatalf("%d idempotency keys, want 10", len(idem))
	}
}

// TestUpgradeFlatIndexes: a format-2 store (trace codes and idempotency keys
// without buckets) is upgraded on Open, also after a crash halfway through.
func TestUpgradeFlatIndexes(t *testing.T) {
	for _, half := range []bool{false, true} {
		fs := memFS()
		db := openBucketHistory(t, fs)
		_ = db.Close()

		// Rewrite it as format 2 stored it: one record per code (its
		// latest) and per idempotency key, under 't' and 'k'.
		pdb, err := rawOpen("ledger", fs, false)
		if err != nil {
			t.Fatal(err)
		}
		b := pdb.NewBatch()
		for k, v := range rawRecordsOf(t, pdb, pfxTrace) {
			_ = b.Set(append([]byte{pfxTraceFlat}, k[bucketKeyLen:]...), []byte(v), nil) // later buckets overwrite
		}
		for k, v := range rawRecordsOf(t, pdb, pfxIdem) {
			_ = b.Set(append([]byte{pfxIdemFlat}, k[bucketKeyLen:]...), []byte(v), nil)
		}
		_ = b.DeleteRange([]byte{pfxTrace}, []byte{pfxTrace + 1}, nil)
		_ = b.DeleteRange([]byte{pfxIdem}, []byte{pfxIdem + 1}, nil)
		_ = b.Set(keyFormat, []byte{2}, nil)
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		// Map iteration is random: the flat 'A' may have come from any
		// bucket. Write its latest record last.
		if err := pdb.Set([]byte{pfxTraceFlat, 'A'}, appendTraceValue(nil, 10, 0), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if half {
			// A crash after the first upgrade batch: some records moved.
			b := pdb.NewBatch()
			for _, code := range []string{"A", "B"} {
				v := rawRecordsOf(t, pdb, pfxTraceFlat)[string(append([]byte{pfxTraceFlat}, code...))]
				owner, _, _ := decodeTraceValue([]byte(v))
				_ = b.Set(appendTraceKey(nil, uint32(owner>>1), code), []byte(v), nil)
				_ = b.Delete(append([]byte{pfxTraceFlat}, code...), nil)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		_ = pdb.Close()

		if _, err := AuditStore("ledger", fs, nil); err == nil {
			t.Fatal("audit of a format-2 store: no error")
		}
		o := bucketOptions(fs)
		db, err = Open("ledger", o)
		if err != nil {
			t.Fatalf("upgrade (half %v): %v", half, err)
		}
		if db.bshift != 1 {
			t.Fatalf("upgraded with shift %d", db.bshift)
		}
		auditOK(t, db)
		if owner, inUse, _ := db.TraceCodeOwner("A"); !inUse || owner != "S000000000010" {
			t.Fatalf("after the upgrade A is held by %q", owner)
		}
		if owner, inUse, _ := db.TraceCodeOwner("C" + req(2)); !inUse || owner != "S000000000002" {
			t.Fatalf("after the upgrade C2 is held by %q", owner)
		}
		var de *DuplicateError
		if err := db.Append(context.Background(), settlement(req(3), "P1", testDate, nil, 0)); !errors.As(err, &de) || de.Existing.Seq != 3 {
			t.Fatalf("after the upgrade a retry of request 3 = %v", err)
		}
		mustAppend(t, db, settlement(req(12), "P1", testDate, nil, 0, "B"))
		auditOK(t, db)
		_ = db.Close()
		if n := len(rawRecords(t, fs, pfxTraceFlat)) + len(rawRecords(t, fs, pfxIdemFlat)); n != 0 {
			t.Fatalf("%d flat records left after the upgrade", n)
		}
	}
}

func auditOK(t *testing.T, db *DB) {
	t.Helper()
	rep, err := db.Audit(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatalf("audit: %v", err)
	}
}

func rawRecords(t *testing.T, fs vfs.FS, pfx byte) map[string]string {
	t.Helper()
	pdb, err := rawOpen("ledger", fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	return rawRecordsOf(t, pdb, pfx)
}

func rawRecordsOf(t *testing.T, pdb *pebble.DB, pfx byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pfx}, UpperBound: []byte{pfx + 1}})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return m
}
