package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine/abi"
)

// TestRegistryWritesSurviveACrash: every write that is not a settlement
// (hospitals, catalogs upserted and removed, persons, a credit, applied
// records, a month's close) is on disk once answered: a crash right after
// the answer, losing everything unsynced, reopens to a store that holds it,
// and a retry of the credit and of the close is answered as the first.
func TestRegistryWritesSurviveACrash(t *testing.T) {
	db, crashed := crashHarness(t)

	if err := db.PutHospitals([]Hospital{{ID: "H1", Region: "371602", Level: 3}}); err != nil {
		t.Fatal(err)
	}
	crashed("hospitals", func(d *DB) {
		if h, ok := d.Hospital("H1"); !ok || h.Level != 3 {
			t.Errorf("hospital after a crash: %+v %v", h, ok)
		}
	})
	if err := db.PutCatalog("371602", []CatalogEntry{{Code: "XA01", Class: abi.ClassA}, {Code: "XB01", Class: abi.ClassB, SelfpayProp: 1000}}, false); err != nil {
		t.Fatal(err)
	}
	crashed("a catalog upsert", func(d *DB) {
		if c, ok := d.Catalog("371602"); !ok || c.Len() != 2 {
			t.Errorf("catalog after a crash: %v", ok)
		}
	})
	if _, err := db.PutPersons([]Person{{ID: "P1", Region: "371600", OpeningBalance: 10000}}); err != nil {
		t.Fatal(err)
	}
	crashed("a person upsert", func(d *DB) {
		if _, ok, err := d.Person("371600", "P1"); err != nil || !ok {
			t.Errorf("person after a crash: %v %v", ok, err)
		}
		if b, err := d.Balance("371600", "P1"); err != nil || b != 10000 {
			t.Errorf("balance after a crash: %d %v", b, err)
		}
	})
	if bal, _, err := db.Credit("371600", "P1", "CR-1", 500); err != nil || bal != 10500 {
		t.Fatalf("credit: %d %v", bal, err)
	}
	crashed("a credit", func(d *DB) {
		if b, err := d.Balance("371600", "P1"); err != nil || b != 10500 {
			t.Errorf("balance after a crash: %d %v", b, err)
		}
		if bal, replayed, err := d.Credit("371600", "P1", "CR-1", 500); err != nil || !replayed || bal != 10500 {
			t.Errorf("credit retried after a crash: %d %v %v", bal, replayed, err)
		}
	})
	if err := db.SetAppliedAll(map[string][32]byte{"persons/371600": {1}, "person/371600/P1": {2}}); err != nil {
		t.Fatal(err)
	}
	crashed("applied records", func(d *DB) {
		if dg, ok, err := d.Applied("person/371600/P1"); err != nil || !ok || dg != [32]byte{2} {
			t.Errorf("applied record after a crash: %x %v %v", dg, ok, err)
		}
	})
	if err := db.PutCatalog("371602", nil, true); err != nil {
		t.Fatal(err)
	}
	crashed("a catalog removed", func(d *DB) {
		if _, ok := d.Catalog("371602"); ok {
			t.Errorf("catalog removed before the crash is back")
		}
	})
	c, created, err := db.CloseMonth(MakeMonth(2026, 11), func(*MonthTotals) ([]byte, error) { return []byte(`{"closed":true}`), nil })
	if err != nil || !created {
		t.Fatalf("close: %v %v", created, err)
	}
	crashed("a month's close", func(d *DB) {
		got, ok, err := d.Closed(MakeMonth(2026, 11))
		if err != nil || !ok || string(got.Statement) != string(c.Statement) || got.ClosedAt != c.ClosedAt {
			t.Errorf("closed month after a crash: %+v %v %v", got, ok, err)
		}
		again, created, err := d.CloseMonth(MakeMonth(2026, 11), func(*MonthTotals) ([]byte, error) { return []byte(`other`), nil })
		if err != nil || created || string(again.Statement) != string(c.Statement) {
			t.Errorf("close retried after a crash: %v %v", created, err)
		}
	})
}

// TestUnreadableValueIsNotEmpty: a person's counters large enough to live
// in a blob file, whose block cannot be read. Pebble's Get hands back an
// empty value then and reports the failure only when it is closed: the
// counters must come back as ErrUnreadable, never as none (a fresh year's
// deductible and caps), and a settlement must not be built on them.
func TestUnreadableValueIsNotEmpty(t *testing.T) {
	mem := vfs.NewMem()
	var failing atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && strings.HasSuffix(op.Path, ".blob") && (op.Kind == errorfs.OpFileRead || op.Kind == errorfs.OpFileReadAt) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	opts := testOptions(fs)
	opts.CacheSize = 1 // every read goes to the files
	db, err := Open("ledger", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPersons([]Person{person("P1", 0)}); err != nil {
		t.Fatal(err)
	}
	var changes []abi.Counter
	for i := range 40 {
		changes = append(changes, abi.Counter{Name: fmt.Sprintf("a_rather_long_counter_name_%02d", i), Value: 1})
	}
	date := abi.MakeDate(2025, 6, 1)
	mustAppend(t, db, settlement("R1", "P1", date, changes, 0))
	if err := db.Close(); err != nil { // flushed: the counters are in a blob file
		t.Fatal(err)
	}
	db, err = Open("ledger", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.hot.clear() // as for a person the preload did not reach
	failing.Store(true)
	cs, err := db.Counters(region, "P1", date.Year(), nil)
	if !errors.Is(err, ErrUnreadable) {
		t.Fatalf("counters while their block cannot be read: %v, %v; want ErrUnreadable", cs, err)
	}
	err = db.Append(context.Background(), settlement("R2", "P1", date, changes[:1], 0))
	if !errors.Is(err, ErrUnreadable) {
		t.Fatalf("a settlement on unreadable counters: %v, want ErrUnreadable", err)
	}
	failing.Store(false)
	if got := counters(t, db, "P1", date.Year()); len(got) != 40 || got[changes[0].Name] != 1 {
		t.Fatalf("counters once readable again: %v", got)
	}
	if !db.Unreadable() || db.ReadErrors() == 0 {
		t.Errorf("the read errors were not recorded: %v %d", db.Unreadable(), db.ReadErrors())
	}
}

// crashHarness opens a store on a crashable file system with a fixed
// clock; crashed reopens a crash clone of it as it is at that moment
// (everything unsynced lost), checks it and closes it.
func crashHarness(t *testing.T) (db *DB, crashed func(what string, check func(*DB))) {
	fs := vfs.NewCrashableMem()
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, ChinaTime)
	opts := Options{FS: fs, Logger: testOptions(nil).Logger, Now: func() time.Time { return now }}
	db, err := Open("ledger", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, func(what string, check func(*DB)) {
		t.Helper()
		o := opts
		o.FS = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		db2, err := Open("ledger", o)
		if err != nil {
			t.Fatalf("after %s, a crash leaves a store that does not open: %v", what, err)
		}
		check(db2)
		if err := db2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
