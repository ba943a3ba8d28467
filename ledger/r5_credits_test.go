package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// r5History writes the same registry and settlements into a store: two
// stores given it hold the same records, so that a record made in one by
// the writer can be copied into the other as a forger with the store's
// layout would write it.
func r5History(t *testing.T, db *DB) {
	t.Helper()
	if _, err := db.PutPersons([]Person{person("P1", 100000), person("P2", 5000), person("P3", 0)}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement(req(1), "P1", 20261010, nil, -300, "TC001"))
	if _, _, err := db.Credit(region, "P2", "real-1", 700); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement(req(2), "P2", 20261010, nil, -200, "TC002"))
}

// r5Stores makes the victim store "ledger" and the donor store "donor"
// with the same history; more runs on the donor only. Both are closed.
func r5Stores(t *testing.T, more func(db *DB)) *vfs.MemFS {
	t.Helper()
	fs := memFS()
	for _, dir := range []string{"ledger", "donor"} {
		db, err := Open(dir, testOptions(fs))
		if err != nil {
			t.Fatal(err)
		}
		r5History(t, db)
		if dir == "donor" {
			more(db)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

// r5Copy copies the records of keys from the stopped donor store into the
// stopped victim store, with Pebble alone (what anyone with the files can
// do), and checks that the victim store's chain still verifies.
func r5Copy(t *testing.T, fs *vfs.MemFS, keys ...[]byte) {
	t.Helper()
	open := func(dir string) *pebble.DB {
		pdb, err := pebble.Open(dir, &pebble.Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		return pdb
	}
	donor, victim := open("donor"), open("ledger")
	for _, k := range keys {
		v, closer, err := donor.Get(k)
		if err != nil {
			t.Fatalf("donor record %q: %v", k, err)
		}
		if err := victim.Set(k, append([]byte(nil), v...), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		_ = closer.Close()
	}
	if err := donor.Close(); err != nil {
		t.Fatal(err)
	}
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
}

func r5AuditNames(t *testing.T, fs *vfs.MemFS, want string) {
	t.Helper()
	rep, err := AuditStore("ledger", fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("audit of the forged store = %v, want a problem naming %q", err, want)
	}
	t.Log(rep.Err())
}

// TestR5ForgedCreditIsNamedByAudit: a credit written into a stopped store
// with a balance that matches it (both records exactly as the gateway
// writes them) is money a patient can spend and the insured region then
// pays for; the audit must name it.
func TestR5ForgedCreditIsNamedByAudit(t *testing.T) {
	fs := r5Stores(t, func(db *DB) {
		if bal, _, err := db.Credit(region, "P3", "forged", 90000); err != nil || bal != 90000 {
			t.Fatalf("donor credit: %d %v", bal, err)
		}
	})
	r5Copy(t, fs, appendCreditKey(nil, region, "forged"), appendBalanceKey(nil, region, "P3"))
	r5AuditNames(t, fs, "forged")
}

// TestR5AlteredOpeningBalanceIsNamedByAudit: an opening balance raised in
// a stopped store, with the balance raised to match, must be named too.
func TestR5AlteredOpeningBalanceIsNamedByAudit(t *testing.T) {
	for _, tc := range []struct {
		name, person string
		opening      int64
	}{{"from zero", "P3", 60000}, {"raised", "P2", 65000}} {
		t.Run(tc.name, func(t *testing.T) {
			// The donor's person is created with the other opening balance
			// and then given the victim's history, so that its balance
			// record is the victim's plus the difference.
			fs := memFS()
			victim, err := Open("ledger", testOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			r5History(t, victim)
			if err := victim.Close(); err != nil {
				t.Fatal(err)
			}
			donor, err := Open("donor", testOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := donor.PutPersons([]Person{person(tc.person, tc.opening)}); err != nil {
				t.Fatal(err)
			}
			r5History(t, donor)
			if err := donor.Close(); err != nil {
				t.Fatal(err)
			}
			r5Copy(t, fs, appendOpeningKey(nil, region, tc.person), appendBalanceKey(nil, region, tc.person),
				appendPersonKey(nil, region, tc.person))
			r5AuditNames(t, fs, region+"/"+tc.person)
		})
	}
}

// TestR5CreditReplayAcrossRestartAndCrash: a credit answered is durable,
// and its reference answers the same balance (replayed) after a restart and
// after a crash that loses everything unsynced; the same reference for
// another amount or person is a conflict, and nothing is written twice.
func TestR5CreditReplayAcrossRestartAndCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db, err := Open("d", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPersons([]Person{person("P1", 1000), person("P2", 0)}); err != nil {
		t.Fatal(err)
	}
	if bal, replayed, err := db.Credit(region, "P1", "CR-1", 250); err != nil || replayed || bal != 1250 {
		t.Fatalf("credit = %d %v %v", bal, replayed, err)
	}
	mustAppend(t, db, settlement("s1", "P1", 20261010, nil, -1000))
	crash := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	check := func(when string, db *DB) {
		t.Helper()
		head, _ := db.Head()
		if bal, replayed, err := db.Credit(region, "P1", "CR-1", 250); err != nil || !replayed || bal != 1250 {
			t.Fatalf("%s: replay = %d %v %v, want 1250 replayed", when, bal, replayed, err)
		}
		var ce *CreditConflictError
		if _, _, err := db.Credit(region, "P1", "CR-1", 251); !errors.As(err, &ce) {
			t.Fatalf("%s: another amount: %v", when, err)
		}
		if _, _, err := db.Credit(region, "P2", "CR-1", 250); !errors.As(err, &ce) {
			t.Fatalf("%s: another person: %v", when, err)
		}
		if h, _ := db.Head(); h != head {
			t.Fatalf("%s: a replay or conflict appended entries %d..%d", when, head+1, h)
		}
		if b := balance(t, db, "P1"); b != 250 {
			t.Fatalf("%s: balance %d", when, b)
		}
		if rep, err := db.Audit(nil); err != nil || !rep.OK() || rep.Credits != 1 || rep.Openings != 1 {
			t.Fatalf("%s: audit %v %v", when, err, rep)
		}
	}
	check("open", db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		when string
		fs   vfs.FS
	}{{"restart", fs}, {"crash", crash}} {
		db, err := Open("d", testOptions(c.fs))
		if err != nil {
			t.Fatal(err)
		}
		check(c.when, db)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestR5CreditsTakeNoPartInClearing: credits and opening balances are in
// the chain, but the month's pair totals (statements) and the hospital rows
// (reconciliation, hospital views) are what the settlements alone make, and
// no settlement id names them.
func TestR5CreditsTakeNoPartInClearing(t *testing.T) {
	run := func(credits bool) (*MonthTotals, []HospitalRow, *DB) {
		db, _ := openMem(t)
		ps := []Person{person("P1", 0), person("P2", 0)}
		if credits {
			ps = []Person{person("P1", 5000), person("P2", 700)}
		}
		if _, err := db.PutPersons(ps); err != nil {
			t.Fatal(err)
		}
		if credits {
			if _, _, err := db.Credit(region, "P1", "CR-1", 1000); err != nil {
				t.Fatal(err)
			}
		}
		s := settlement("s1", "P1", 20261010, nil, 0, "TC1")
		mustAppend(t, db, s)
		mustAppend(t, db, settlement("s2", "P2", 20261010, nil, 0, "TC2"))
		mustAppend(t, db, reversal("r1", s))
		if credits {
			if _, _, err := db.Credit(region, "P2", "CR-2", 300); err != nil {
				t.Fatal(err)
			}
		}
		mt, err := db.MonthTotals(MonthOf(s.CommittedAt))
		if err != nil {
			t.Fatal(err)
		}
		var rows []HospitalRow
		if _, err := db.HospitalRows(hospital, 0, 1<<62, func(r *HospitalRow) error {
			rows = append(rows, *r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return mt, rows, db
	}
	plain, plainRows, _ := run(false)
	mt, rows, db := run(true)
	if !reflect.DeepEqual(mt.Pairs, plain.Pairs) {
		t.Fatalf("pairs with credits %+v, without %+v", mt.Pairs, plain.Pairs)
	}
	if len(rows) != len(plainRows) || len(rows) != 3 {
		t.Fatalf("%d hospital rows with credits, %d without", len(rows), len(plainRows))
	}
	for i := range rows {
		if rows[i].Kind != plainRows[i].Kind || rows[i].Total != plainRows[i].Total || rows[i].PersonalAccount != plainRows[i].PersonalAccount {
			t.Fatalf("row %d: %+v, without credits %+v", i, rows[i], plainRows[i])
		}
	}
	// The month's range of entries covers the credits: a statement names
	// the chain up to the month's last entry, the last credit.
	if head, _ := db.Head(); mt.Seq != head {
		t.Fatalf("month totals end at %d, the head is %d", mt.Seq, head)
	}
	for seq := uint64(1); seq <= mt.Seq; seq++ {
		e, err := db.Entry(seq)
		if err != nil {
			t.Fatal(err)
		}
		_, found, err := db.EntryByID(SettlementID(seq))
		if err != nil || found != (e.Kind == KindSettlement || e.Kind == KindReversal) {
			t.Fatalf("entry %d (%s): EntryByID found %v, %v", seq, e.Kind, found, err)
		}
	}
}

// TestR5ExportVerifiesWithCredits: an export of a ledger with credits and
// opening balances verifies, and says what each credit is.
func TestR5ExportVerifiesWithCredits(t *testing.T) {
	db, _ := openMem(t)
	if _, err := db.PutPersons([]Person{person("P1", 5000), person("P2", 0)}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement("s1", "P1", 20261010, nil, -1000, "TC1"))
	if _, _, err := db.Credit(region, "P2", "CR-1", 12345); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement("s2", "P2", 20261010, nil, -345, "TC2"))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	var kinds []string
	if err := db.ScanRaw(1, 0, func(e *Entry, raw []byte) error {
		rec := NewExportRecord(e, raw)
		kinds = append(kinds, rec.Kind)
		switch rec.Kind {
		case "credit":
			if rec.RequestID != "CR-1" || rec.PersonID != "P2" || rec.Amount != "123.45" || rec.BalanceAfter != "123.45" ||
				rec.SettlementID != "" || rec.Hospital != "" || rec.Amounts.Total != "0.00" {
				t.Fatalf("credit record %+v", rec)
			}
		case "opening_balance":
			if rec.PersonID != "P1" || rec.Amount != "50.00" || rec.BalanceAfter != "50.00" || rec.Migrated {
				t.Fatalf("opening balance record %+v", rec)
			}
		}
		return enc.Encode(rec)
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(kinds, ",") != "opening_balance,settlement,credit,settlement" {
		t.Fatalf("kinds %v", kinds)
	}
	if !strings.Contains(buf.String(), `"kind":"credit"`) || strings.Contains(buf.String(), `"settlement_id":""`) {
		t.Fatalf("export:\n%s", buf.String())
	}
	cp, err := db.MakeCheckpoint(4, testNow())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyExport(bytes.NewReader(buf.Bytes()), cp)
	if err != nil || rep.Entries != 4 || !rep.CheckpointMatched {
		t.Fatalf("VerifyExport = %+v, %v", rep, err)
	}
	// A credit's amount changed in the readable fields is caught.
	forged := strings.Replace(buf.String(), `"amount":"123.45"`, `"amount":"923.45"`, 1)
	if _, err := VerifyExport(strings.NewReader(forged), nil); err == nil {
		t.Fatal("an export with a credit's amount changed verifies")
	}
}

// TestR5UpgradeMigratesCreditsAndOpenings opens a store written by the
// code of store format 3 (testdata/store-format3-credits, made by the
// function in testdata/store-format3-credits/make.go.txt with that code):
// persons with opening balances, credits, settlements. The upgrade appends
// the credits and opening balances as migrated entries, once, durably; the
// store then audits clean, every balance and credit answer is kept, a
// forged credit is named, and a new credit's answer is the running balance.
func TestR5UpgradeMigratesCreditsAndOpenings(t *testing.T) {
	dir := copyFormat3Credits(t) // r5_final_test.go
	if _, err := AuditStore(dir, nil, nil); err == nil || !strings.Contains(err.Error(), "format 3") {
		t.Fatalf("audit of the format-3 store: %v", err)
	}
	opts := Options{Logger: zerolog.Nop(), Now: testNow}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if db.format != storeFormat {
		t.Fatalf("format %d after open", db.format)
	}
	want := map[string]int64{"P1": 100000 - 300, "P2": 5000 + 700 - 200 + 1000, "P3": 50 - 50}
	for p, w := range want {
		if b := balance(t, db, p); b != w {
			t.Fatalf("balance of %s = %d, want %d", p, b, w)
		}
	}
	rep, err := db.Audit(nil)
	if err != nil || !rep.OK() {
		t.Fatalf("audit after the upgrade: %v %v", err, rep.Err())
	}
	// 3 settlements, then openings of P1 and P2 (P3's is 0), then 3 credits.
	if rep.Entries != 8 || rep.Settlements != 3 || rep.Openings != 2 || rep.Credits != 3 {
		t.Fatalf("after the upgrade: %+v", rep)
	}
	for seq := uint64(4); seq <= 8; seq++ {
		e, err := db.Entry(seq)
		if err != nil || !e.Migrated || !e.Kind.movesBalanceOnly() {
			t.Fatalf("entry %d: %+v %v", seq, e, err)
		}
	}
	// The answers given before the upgrade are kept.
	for _, c := range []struct {
		ref, person string
		amount, bal int64
	}{{"CR-1", "P2", 700, 5700}, {"CR-2", "P3", 50, 50}, {"CR-3", "P2", 1000, 6500}} {
		if bal, replayed, err := db.Credit(region, c.person, c.ref, c.amount); err != nil || !replayed || bal != c.bal {
			t.Fatalf("replay of %s = %d %v %v, want %d", c.ref, bal, replayed, err, c.bal)
		}
	}
	if ws, err := db.UpsertPersons([]Person{person("P1", 1)}); err != nil || ws[0].Opening != 100000 {
		t.Fatalf("upsert of P1: %+v %v", ws, err)
	}
	if bal, _, err := db.Credit(region, "P3", "CR-4", 25); err != nil || bal != 25 {
		t.Fatalf("new credit = %d %v", bal, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Once: a restart appends nothing more.
	db, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := db.Head(); head != 9 {
		t.Fatalf("head %d after a restart, want 9", head)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = AuditStore(dir, nil, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("offline audit: %v %v", err, rep.Err())
	}
	// A credit record forged after the upgrade, balance to match, is named.
	pdb, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := pdb.NewBatch()
	_ = b.Set(appendCreditKey(nil, region, "forged"), appendCreditValue(nil, "P1", 50000, 149700, 9), nil)
	_ = b.Set(appendBalanceKey(nil, region, "P1"), be.AppendUint64(nil, 149700), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = AuditStore(dir, nil, nil)
	if err != nil || rep.OK() || !strings.Contains(rep.Err().Error(), "credit 152500/forged") {
		t.Fatalf("audit of the forged upgraded store: %v %v", err, rep.Err())
	}
}

// TestR5UpsertOfManyOpeningBalancesIsOneBatch: a persons upsert of many new
// persons with balances appends their opening balances in its own batches:
// one commit (one sync) a chunk of PersonsChunk persons, not one an entry.
func TestR5UpsertOfManyOpeningBalancesIsOneBatch(t *testing.T) {
	db, _ := openMem(t)
	ps := make([]Person, 2000)
	for i := range ps {
		ps[i] = person(fmt.Sprintf("P%04d", i), int64(i%3)*100) // a third with 0: no entry
	}
	before := db.commits.Load()
	created, err := db.PutPersons(ps)
	if err != nil || created != len(ps) {
		t.Fatalf("upsert: %d %v", created, err)
	}
	if n := db.commits.Load() - before; n != uint64(len(ps)+PersonsChunk-1)/PersonsChunk {
		t.Fatalf("the upsert took %d commits", n)
	}
	want := uint64(len(ps) - (len(ps)+2)/3)
	if head, _ := db.Head(); head != want {
		t.Fatalf("head %d, want %d opening balances", head, want)
	}
	if b := balance(t, db, "P0005"); b != 200 {
		t.Fatalf("balance of P0005 = %d", b)
	}
	if rep, err := db.Audit(nil); err != nil || !rep.OK() || rep.Openings != want {
		t.Fatalf("audit: %v %v", err, rep.Err())
	}
}
