package ledger

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/engine/abi"
)

// auditLedger builds a ledger with every kind of record the writer keeps:
// settlements with counters, balance moves and trace codes, reversals,
// credits, an upsert of a known person with another opening balance, and a
// closed month with entries before and after its close.
func auditLedger(t *testing.T) (*DB, *vfs.MemFS, func(*testing.T) Options) {
	t.Helper()
	var now atomic.Int64
	now.Store(time.Date(2026, 10, 20, 12, 0, 0, 0, ChinaTime).UnixNano())
	opts := func(*testing.T) Options {
		return Options{FS: nil, Logger: zerolog.Nop(), Now: func() time.Time { return time.Unix(0, now.Add(1000)) }}
	}
	fs := vfs.NewMem()
	o := opts(t)
	o.FS = fs
	db, err := Open("ledger", o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPersons([]Person{person("P1", 100000), person("P2", 5000), person("P3", 0)}); err != nil {
		t.Fatal(err)
	}
	var settled []*Entry
	for i := 1; i <= 30; i++ {
		p := []string{"P1", "P2", "P3"}[i%3]
		bal := int64(0)
		if p != "P3" {
			bal = -int64(10 * i)
		}
		e := settlement(req(i), p, 20261010, []abi.Counter{{Name: "ded", Value: int64(i)}, {Name: "n", Value: 1}}, bal,
			fmt.Sprintf("TC%03d", i), fmt.Sprintf("TD%03d", i))
		mustAppend(t, db, e)
		settled = append(settled, e)
	}
	for _, i := range []int{2, 5, 9, 17} {
		mustAppend(t, db, reversal("rev-"+req(i), settled[i-1]))
	}
	// The code of a reversed settlement settles again.
	mustAppend(t, db, settlement("again", "P1", 20261010, nil, 0, "TC002"))
	if _, _, err := db.Credit(region, "P2", "credit-1", 777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Credit(region, "P3", "credit-2", 50); err != nil {
		t.Fatal(err)
	}
	// A known person upserted with another opening balance keeps its balance.
	if _, err := db.PutPersons([]Person{person("P1", 999999)}); err != nil {
		t.Fatal(err)
	}
	now.Store(time.Date(2026, 11, 2, 9, 0, 0, 0, ChinaTime).UnixNano())
	if _, _, err := db.CloseMonth(MakeMonth(2026, 10), func(*MonthTotals) ([]byte, error) { return []byte("{}"), nil }); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, reversal("rev-late", settled[20]))
	mustAppend(t, db, settlement("november", "P2", 20261101, []abi.Counter{{Name: "n", Value: 1}}, -5, "TE001"))
	return db, fs, opts
}

func TestAuditCleanLedger(t *testing.T) {
	db, fs, opts := auditLedger(t)
	var seen int
	rep, err := db.Audit(func(*Entry) { seen++ })
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	// 2 opening balances (P3's is 0), 32 settlements, 5 reversals, 2 credits.
	if rep.Entries != 41 || seen != 41 || rep.Settlements != 32 || rep.Reversals != 5 || rep.Credits != 2 || rep.Openings != 2 {
		t.Fatalf("audited %d entries (%d visited), %d settlements, %d reversals, %d credits, %d opening balances",
			rep.Entries, seen, rep.Settlements, rep.Reversals, rep.Credits, rep.Openings)
	}
	c := rep.Checked
	if c.IdempotencyKeys != 37 || c.TraceCodes != 61 || c.ReversalMarks != 5 || c.Persons != 3 || c.Credits != 2 || c.Openings != 3 ||
		c.ClosedMonths != 1 || c.Months != 2 || c.HospitalRows != 37 || c.CounterSets != 3 {
		t.Fatalf("checked %+v", c)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Offline, and after a reopen (a credit's key once broke the reopen:
	// it shares its prefix byte with closed months).
	rep, err = AuditStore("ledger", fs, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("AuditStore: %v %v", err, rep.Err())
	}
	o := opts(t)
	o.FS = fs
	db, err = Open("ledger", o)
	if err != nil {
		t.Fatalf("reopen after credits and a month close: %v", err)
	}
	defer db.Close()
	if rep, err := db.Audit(nil); err != nil || !rep.OK() {
		t.Fatalf("after reopen: %v %v", err, rep.Err())
	}
}

// TestAuditDetectsTampering changes one stored record behind the writer's
// back at a time and expects the audit to name it.
func TestAuditDetectsTampering(t *testing.T) {
	counterKey := appendCountersKey(nil, region, "P1", 2026)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, db *DB)
		want   string
	}{
		{"counter", func(t *testing.T, db *DB) {
			set(t, db, counterKey, appendCounters(nil, []abi.Counter{{Name: "ded", Value: 1}, {Name: "n", Value: 1}}))
		}, "counters of 152500/P1 2026"},
		{"counter lost", func(t *testing.T, db *DB) { del(t, db, counterKey) }, "counters of 152500/P1 2026 missing"},
		{"balance", func(t *testing.T, db *DB) {
			set(t, db, appendBalanceKey(nil, region, "P2"), be.AppendUint64(nil, 1))
		}, "balance of 152500/P2: stored 1"},
		{"credit lost", func(t *testing.T, db *DB) { del(t, db, appendCreditKey(nil, region, "credit-1")) }, "credit 152500/credit-1 of entry 38 has no credit record"},
		{"opening balance", func(t *testing.T, db *DB) {
			set(t, db, appendOpeningKey(nil, region, "P3"), be.AppendUint64(nil, 10))
		}, "balance of 152500/P3"},
		{"trace code freed", func(t *testing.T, db *DB) {
			set(t, db, appendTraceKey(nil, 0, "TC004"), appendTraceValue(nil, 6, 33))
		}, `trace code "TC004"`},
		{"trace code lost", func(t *testing.T, db *DB) { del(t, db, appendTraceKey(nil, 0, "TD010")) }, `trace code "TD010" of entry 12 is missing`},
		{"idempotency key", func(t *testing.T, db *DB) {
			set(t, db, appendIdemKey(nil, 0, hospital, req(3)), appendIdemValue(nil, [32]byte{1}, 3))
		}, "idempotency key"},
		{"idempotency key lost", func(t *testing.T, db *DB) { del(t, db, appendIdemKey(nil, 0, hospital, req(7))) }, "of entry 9 is missing"},
		{"reversal marker lost", func(t *testing.T, db *DB) { del(t, db, appendReversedKey(nil, 7)) }, "settlement 7 reversed by"},
		{"month totals", func(t *testing.T, db *DB) {
			set(t, db, appendPairKey(nil, MakeMonth(2026, 10), region, "370102"), appendPairValue(nil, &PairTotals{Settlements: 1}))
		}, "month 2026-10 pair 152500→370102"},
		{"hospital row lost", func(t *testing.T, db *DB) {
			e, err := db.Entry(12)
			if err != nil {
				t.Fatal(err)
			}
			del(t, db, appendHospitalRowKey(nil, e.Hospital, e.CommittedAt, 12))
		}, "hospital row"},
		{"entry altered", func(t *testing.T, db *DB) {
			e, err := db.Entry(6)
			if err != nil {
				t.Fatal(err)
			}
			e.Changes[0].Value++
			set(t, db, appendEntryKey(nil, 6), AppendEntry(nil, e))
		}, "chain"},
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
			t.Log(err)
		})
	}
}

func set(t *testing.T, db *DB, k, v []byte) {
	t.Helper()
	if err := db.pdb.Set(k, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, db *DB, k []byte) {
	t.Helper()
	if err := db.pdb.Delete(k, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func TestOpeningPrefixDistinct(t *testing.T) {
	for _, p := range []byte{pfxMeta, pfxEntry, pfxIdem, pfxTrace, pfxReversed, pfxCounters, pfxBalance, pfxPerson,
		pfxHospital, pfxCatalog, pfxCredit, pfxPair, pfxMonth, pfxClosed, pfxHospRow, pfxTree, pfxTraceFlat, pfxIdemFlat} {
		if p == pfxOpening {
			t.Fatalf("prefix %q is used twice", p)
		}
	}
}

// TestReopenAfterCredit: a credit's key (x | lp(region) | reference) once
// shared its first byte with closed months; Open took the last such key
// for a closed month and refused to start.
func TestReopenAfterCredit(t *testing.T) {
	fs := memFS()
	db, err := Open("d", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPersons([]Person{person("P1", 100)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Credit(region, "P1", "ref-1", 50); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement("r1", "P1", 20261109, nil, -120))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open("d", testOptions(fs))
	if err != nil {
		t.Fatalf("reopen after a credit: %v", err)
	}
	defer db.Close()
	mustAppend(t, db, settlement("r2", "P1", 20261109, nil, -30))
	if b := balance(t, db, "P1"); b != 0 {
		t.Fatalf("balance %d", b)
	}
}
