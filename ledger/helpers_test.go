package ledger

import (
	"context"
	"crypto/sha256"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/engine/abi"
)

const (
	region   = "152500"
	hospital = "H3701020001"
)

var clock atomic.Int64

func testNow() time.Time {
	return time.Unix(1_790_000_000, clock.Add(1))
}

func testOptions(fs vfs.FS) Options {
	return Options{FS: fs, Logger: zerolog.Nop(), Now: testNow}
}

func memFS() *vfs.MemFS { return vfs.NewMem() }

func openMem(t testing.TB) (*DB, *vfs.MemFS) {
	t.Helper()
	fs := vfs.NewMem()
	db, err := Open("ledger", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, fs
}

// settlement builds a settlement of person for request req.
func settlement(req, person string, date abi.Date, changes []abi.Counter, balance int64, codes ...string) *Entry {
	e := &Entry{
		Kind:           KindSettlement,
		RequestID:      req,
		BodyHash:       sha256.Sum256([]byte("body " + req)),
		Hospital:       hospital,
		TreatingRegion: "370102",
		InsuredRegion:  region,
		PersonID:       person,
		Date:           date,
		VisitType:      abi.VisitInpatient,
		PolicyVersion:  "v1",
		ModuleSHA256:   sha256.Sum256([]byte("module")),
		Amounts:        Amounts{Total: 10000, Eligible: 9000, BasicFund: 6000, FundTotal: 6000, PersonalAccount: -balance, Cash: 4000 + balance, PersonalTotal: 4000},
		Lines: []Line{
			{Code: "XA10BAA001", Class: abi.ClassA, Listed: true, Amount: 2500, Eligible: 2500},
			{Code: "ZZ", Class: abi.ClassC, Amount: 7500, FullSelfPay: 7500},
		},
		Changes:       changes,
		BalanceChange: balance,
		TraceCodes:    codes,
		Notes:         []string{"deductible 800.00"},
	}
	// The policy input the gateway would store: its lines are the entry's.
	in := abi.Input{Date: date, Person: abi.Person{AccountBalance: 100000, Groups: []string{"retired"}},
		Visit:    abi.Visit{Type: abi.VisitInpatient, AdmittedOn: date - 3, DischargedOn: date},
		Hospital: abi.Hospital{Level: 3, Offsite: true, TreatingRegion: "370102", InsuredRegion: region},
		Sums:     abi.Sums{Total: 10000, FullSelfPay: 7500, Eligible: 2500},
		Counters: []abi.Counter{{Name: "basic.paid", Value: 5000}}}
	for _, l := range e.Lines {
		in.Lines = append(in.Lines, abi.Line(l))
	}
	e.Input = in.AppendBinary(nil)
	e.InputHash = sha256.Sum256(e.Input)
	return e
}

// reversal builds the reversal of orig, as the gateway would.
func reversal(req string, orig *Entry) *Entry {
	e := &Entry{
		Kind:           KindReversal,
		Reverses:       orig.SettlementID,
		RequestID:      req,
		BodyHash:       sha256.Sum256([]byte("rev " + req)),
		Hospital:       orig.Hospital,
		TreatingRegion: orig.TreatingRegion,
		InsuredRegion:  orig.InsuredRegion,
		PersonID:       orig.PersonID,
		Date:           orig.Date,
		VisitType:      orig.VisitType,
		PolicyVersion:  orig.PolicyVersion,
		ModuleSHA256:   orig.ModuleSHA256,
		BalanceChange:  -orig.BalanceChange,
		TraceCodes:     orig.TraceCodes,
	}
	e.Amounts = orig.Amounts.Negated()
	for _, c := range orig.Changes {
		e.Changes = append(e.Changes, abi.Counter{Name: c.Name, Value: -c.Value})
	}
	return e
}

func mustAppend(t testing.TB, db *DB, e *Entry) {
	t.Helper()
	if err := db.Append(context.Background(), e); err != nil {
		t.Fatalf("append %s: %v", e.RequestID, err)
	}
}

func counters(t testing.TB, db *DB, person string, year int32) map[string]int64 {
	t.Helper()
	cs, err := db.Counters(region, person, year, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for i, c := range cs {
		if i > 0 && cs[i-1].Name >= c.Name {
			t.Fatalf("counters not sorted: %v", cs)
		}
		m[c.Name] = c.Value
	}
	return m
}

func balance(t testing.TB, db *DB, person string) int64 {
	t.Helper()
	b, err := db.Balance(region, person)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// normalize turns empty slices into nil so that entries compare with
// reflect.DeepEqual after a round trip.
func normalize(e Entry) Entry {
	if e.format == 0 {
		e.format = EntryFormat
	}
	if len(e.Input) == 0 {
		e.Input = nil
	}
	if len(e.Lines) == 0 {
		e.Lines = nil
	}
	if len(e.Changes) == 0 {
		e.Changes = nil
	}
	if len(e.TraceCodes) == 0 {
		e.TraceCodes = nil
	}
	if len(e.Notes) == 0 {
		e.Notes = nil
	}
	return e
}

func sameEntry(t testing.TB, got, want *Entry) {
	t.Helper()
	g, w := normalize(*got), normalize(*want)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("entries differ:\n got %+v\nwant %+v", g, w)
	}
}

func person(id string, opening int64) Person {
	return Person{
		ID: id, Region: region, OpeningBalance: opening,
		Facts: abi.Person{Scheme: abi.SchemeEmployee, Employment: abi.EmploymentActive,
			EnrolledOn: 20200101, ContinuousYears: 6, Groups: []string{"subsistence"}},
	}
}

func req(i int) string { return fmt.Sprintf("req-%06d", i) }
