package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"

	"medgate/engine/abi"
)

// testClock is a settable clock for Options.Now.
type testClock struct{ ns atomic.Int64 }

func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.set(t)
	return c
}

func (c *testClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *testClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func utc(s string) time.Time         { t, _ := time.Parse(time.RFC3339, s); return t }
func openClock(t testing.TB, fs vfs.FS, c *testClock) *DB {
	t.Helper()
	db, err := Open("ledger", Options{FS: fs, Logger: zerolog.Nop(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// pairEntry is a settlement of insured → treating with the given amounts.
func pairEntry(req, insured, treating string, total, fund, acct int64) *Entry {
	e := settlement(req, "P-"+req, abi.MakeDate(2026, 10, 1), nil, 0)
	e.InsuredRegion, e.TreatingRegion = insured, treating
	e.Amounts = Amounts{Total: total, Eligible: total, BasicFund: fund, FundTotal: fund, PersonalAccount: acct,
		Cash: total - fund - acct, PersonalTotal: total - fund}
	return e
}

func TestMonthOf(t *testing.T) {
	for _, c := range []struct {
		at   string
		want Month
	}{
		{"2026-10-31T15:59:59Z", 202610},
		{"2026-10-31T16:00:00Z", 202611}, // midnight in UTC+8
		{"2026-10-31T16:30:00Z", 202611},
		{"2026-12-31T16:00:00Z", 202701},
	} {
		if got := MonthOf(utc(c.at).UnixNano()); got != c.want {
			t.Errorf("MonthOf(%s) = %s, want %s", c.at, got, c.want)
		}
	}
	for s, ok := range map[string]bool{"2026-10": true, "2026-13": false, "2026-00": false, "2026-1": false,
		"0999-01": false, "2026/10": false, "2026-1x": false} {
		if _, got := ParseMonth(s); got != ok {
			t.Errorf("ParseMonth(%q) ok = %v", s, got)
		}
	}
	m, _ := ParseMonth("2026-12")
	if m.String() != "2026-12" || m.Next() != 202701 || !m.End().Equal(utc("2026-12-31T16:00:00Z")) {
		t.Errorf("month arithmetic: %s %s %s", m, m.Next(), m.End())
	}
}

func TestMonthTotalsAndClose(t *testing.T) {
	fs := vfs.NewMem()
	clk := newTestClock(utc("2026-10-05T02:00:00Z"))
	db := openClock(t, fs, clk)
	oct, nov := Month(202610), Month(202611)

	a := pairEntry("a", "152500", "370102", 100_00, 60_00, 10_00)
	mustAppend(t, db, a)
	clk.set(utc("2026-10-20T02:00:00Z"))
	b := pairEntry("b", "152500", "370102", 50_00, 20_00, 0)
	mustAppend(t, db, b)
	c := pairEntry("c", "370100", "370102", 30_00, 15_00, 5_00)
	mustAppend(t, db, c)
	// 16:30 UTC on the 31st is 00:30 on 1 November in UTC+8.
	clk.set(utc("2026-10-31T16:30:00Z"))
	d := pairEntry("d", "152500", "370102", 7_00, 3_00, 0)
	mustAppend(t, db, d)

	mt, err := db.MonthTotals(oct)
	if err != nil {
		t.Fatal(err)
	}
	if mt.Seq != c.Seq || mt.Hash != c.Hash || len(mt.Pairs) != 2 {
		t.Fatalf("October: seq %d pairs %+v", mt.Seq, mt.Pairs)
	}
	p := mt.Pairs[0]
	if p.InsuredRegion != "152500" || p.Settlements != 2 || p.Reversals != 0 || p.Amounts.Total != 150_00 ||
		p.Amounts.FundTotal != 80_00 || p.Amounts.PersonalAccount != 10_00 || p.Amounts.Cash != 60_00 {
		t.Fatalf("October 152500→370102: %+v", p)
	}
	if mt.Pairs[1].InsuredRegion != "370100" || mt.Pairs[1].Amounts.Total != 30_00 {
		t.Fatalf("October 370100→370102: %+v", mt.Pairs[1])
	}
	if mt, _ := db.MonthTotals(nov); len(mt.Pairs) != 1 || mt.Pairs[0].Amounts.Total != 7_00 || mt.Seq != d.Seq {
		t.Fatalf("November: %+v", mt)
	}
	// A month without entries ends where the last month with entries did.
	if mt, _ := db.MonthTotals(202609); mt.Seq != 0 || len(mt.Pairs) != 0 {
		t.Fatalf("September: %+v", mt)
	}
	if mt, _ := db.MonthTotals(202612); mt.Seq != d.Seq || mt.Hash != d.Hash {
		t.Fatalf("December: %+v", mt)
	}

	// Closing: not before the month is over (by the ledger's clock).
	render := func(mt *MonthTotals) ([]byte, error) {
		return fmt.Appendf(nil, "%s %d %d", mt.Month, mt.Seq, len(mt.Pairs)), nil
	}
	if _, _, err := db.CloseMonth(nov, render); !errors.Is(err, ErrMonthNotOver) {
		t.Fatalf("closing November in November: %v", err)
	}
	cm, created, err := db.CloseMonth(oct, render)
	if err != nil || !created || string(cm.Statement) != fmt.Sprintf("2026-10 %d 2", c.Seq) || cm.Seq != c.Seq {
		t.Fatalf("close October = %+v %v %v", cm, created, err)
	}
	again, created, err := db.CloseMonth(oct, func(*MonthTotals) ([]byte, error) { return []byte("other"), nil })
	if err != nil || created || !bytes.Equal(again.Statement, cm.Statement) {
		t.Fatalf("closing twice = %q %v %v", again.Statement, created, err)
	}

	// Reversing an October settlement in November books it in November.
	r := reversal("ra", a)
	mustAppend(t, db, r)
	if mt, _ := db.MonthTotals(nov); mt.Pairs[0].Reversals != 1 || mt.Pairs[0].Amounts.Total != 7_00-100_00 {
		t.Fatalf("November after the reversal: %+v", mt.Pairs)
	}
	if mt2, _ := db.MonthTotals(oct); mt2.Pairs[0].Amounts.Total != 150_00 {
		t.Fatalf("October moved: %+v", mt2.Pairs)
	}

	// A clock that goes back into a closed month cannot book into it: the
	// commit time is held at the previous entry's.
	clk.set(utc("2026-10-15T00:00:00Z"))
	e := pairEntry("e", "152500", "370102", 1_00, 0, 0)
	mustAppend(t, db, e)
	if e.CommittedAt != r.CommittedAt || MonthOf(e.CommittedAt) != nov {
		t.Fatalf("entry committed at %s", time.Unix(0, e.CommittedAt).UTC())
	}

	// Restart: closed months, totals and the floor survive.
	db.Close()
	db = openClock(t, fs, clk)
	if cm2, ok, err := db.Closed(oct); err != nil || !ok || !bytes.Equal(cm2.Statement, cm.Statement) {
		t.Fatalf("closed October after restart: %v %v", ok, err)
	}
	if db.floor != e.CommittedAt {
		t.Fatalf("floor after restart = %d, want %d", db.floor, e.CommittedAt)
	}
	// A fresh store that only closed a month holds its floor at the month's end.
	fs2 := vfs.NewMem()
	clk2 := newTestClock(utc("2026-12-01T00:00:00Z"))
	db2 := openClock(t, fs2, clk2)
	if _, _, err := db2.CloseMonth(nov, render); err != nil {
		t.Fatal(err)
	}
	clk2.set(utc("2026-11-10T00:00:00Z"))
	f := pairEntry("f", "152500", "370102", 1_00, 0, 0)
	mustAppend(t, db2, f)
	if MonthOf(f.CommittedAt) != 202612 || f.CommittedAt != nov.End().UnixNano() {
		t.Fatalf("entry after closing November at %s", time.Unix(0, f.CommittedAt).UTC())
	}
}

func TestHospitalRows(t *testing.T) {
	clk := newTestClock(utc("2026-10-05T02:00:00Z"))
	db := openClock(t, vfs.NewMem(), clk)
	a := pairEntry("a", "152500", "370102", 100_00, 60_00, 10_00)
	mustAppend(t, db, a)
	other := pairEntry("o", "152500", "370102", 1_00, 0, 0)
	other.Hospital = "H9999"
	mustAppend(t, db, other)
	clk.set(utc("2026-10-06T02:00:00Z"))
	r := reversal("ra", a)
	mustAppend(t, db, r)
	var rows []HospitalRow
	collect := func(from, to string) uint64 {
		rows = rows[:0]
		head, err := db.HospitalRows(hospital, utc(from).UnixNano(), utc(to).UnixNano(), func(r *HospitalRow) error {
			rows = append(rows, *r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return head
	}
	if head := collect("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"); head != 3 || len(rows) != 2 {
		t.Fatalf("rows = %+v (head %d)", rows, head)
	}
	if rows[0].Seq != a.Seq || rows[0].Total != 100_00 || rows[0].FundTotal != 60_00 || rows[0].PersonalAccount != 10_00 ||
		rows[1].Kind != KindReversal || rows[1].Reverses != a.Seq || rows[1].Total != -100_00 || rows[1].CommittedAt != r.CommittedAt {
		t.Fatalf("rows = %+v", rows)
	}
	if collect("2026-10-06T00:00:00Z", "2026-10-07T00:00:00Z"); len(rows) != 1 || rows[0].Seq != r.Seq {
		t.Fatalf("one day: %+v", rows)
	}
}

// rawOpen opens the store under the ledger, quietly.
func rawOpen(dir string, fs vfs.FS, readOnly bool) (*pebble.DB, error) {
	if fs == nil {
		fs = vfs.Default
	}
	return pebble.Open(dir, &pebble.Options{FS: fs, ReadOnly: readOnly, Logger: pebbleLogger{zerolog.Nop()}})
}

// derivedState is every derived key and value.
func derivedState(t *testing.T, fs vfs.FS) map[string]string {
	t.Helper()
	pdb, err := rawOpen("ledger", fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	out := map[string]string{}
	for _, p := range derivedPrefixes {
		it, _ := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		for it.First(); it.Valid(); it.Next() {
			out[string(it.Key())] = string(it.Value())
		}
		it.Close()
	}
	return out
}

func TestDerivedStateRebuild(t *testing.T) {
	fs := vfs.NewMem()
	clk := newTestClock(utc("2026-10-30T02:00:00Z"))
	db := openClock(t, fs, clk)
	var es []*Entry
	for i := range 40 {
		e := pairEntry(req(i), []string{"152500", "370100", "371600"}[i%3], []string{"370102", "152502"}[i%2], int64(100+i), int64(i), 0)
		es = append(es, e)
		// Several entries per batch, across a month boundary.
		if i%4 == 3 {
			errs := runBatch(db, es[i-3:i+1]...)
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			clk.set(clk.now().Add(7 * time.Hour))
		}
	}
	mustAppend(t, db, reversal("r", es[0]))
	// Then through the real writer (whose cache lives across batches):
	// concurrent appends across another month boundary, with a month
	// closed in between.
	clk.set(utc("2026-11-30T15:00:00Z"))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				e := pairEntry(fmt.Sprintf("g%d-%d", g, i), []string{"152500", "370100"}[i%2], "370102", int64(10+i), int64(i), 1)
				if err := db.Append(context.Background(), e); err != nil {
					t.Error(err)
				}
				if g == 0 && i == 7 {
					clk.set(utc("2026-11-30T17:00:00Z")) // December in UTC+8
					if _, _, err := db.CloseMonth(202611, func(*MonthTotals) ([]byte, error) { return nil, nil }); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	const n = 41 + 60
	root, _ := db.TreeHash(n)
	if _, r, err := db.VerifyTree(); err != nil || r != root {
		t.Fatalf("VerifyTree: %v", err)
	}
	live, _ := db.MonthTotals(202612)
	db.Close()
	want := derivedState(t, fs)
	if len(want) == 0 {
		t.Fatal("no derived state")
	}
	// Make it a format-1 store: no derived state.
	pdb, err := rawOpen("ledger", fs, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range derivedPrefixes {
		_ = pdb.DeleteRange([]byte{p}, []byte{p + 1}, nil)
	}
	_ = pdb.Set(keyFormat, []byte{1}, pebble.Sync)
	pdb.Close()
	db = openClock(t, fs, clk)
	if got, _ := db.TreeHash(n); got != root {
		t.Fatal("rebuilt tree differs")
	}
	if rebuilt, _ := db.MonthTotals(202612); fmt.Sprint(rebuilt) != fmt.Sprint(live) || len(live.Pairs) != 2 {
		t.Fatalf("December rebuilt %+v, live %+v", rebuilt, live)
	}
	db.Close()
	got := derivedState(t, fs)
	if len(got) != len(want) {
		t.Fatalf("rebuilt %d derived records, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("rebuilt record %x differs", k)
		}
	}
}

func TestKeyPrefixesDistinct(t *testing.T) {
	seen := map[byte]string{}
	for name, p := range map[string]byte{"meta": pfxMeta, "entry": pfxEntry, "idem": pfxIdem, "trace": pfxTrace,
		"reversed": pfxReversed, "counters": pfxCounters, "balance": pfxBalance, "person": pfxPerson,
		"hospital": pfxHospital, "catalog": pfxCatalog, "credit": pfxCredit, "pair": pfxPair, "month": pfxMonth,
		"closed": pfxClosed, "hospital row": pfxHospRow, "tree": pfxTree,
		"trace (formats 1, 2)": pfxTraceFlat, "idem (formats 1, 2)": pfxIdemFlat} {
		if other, dup := seen[p]; dup {
			t.Errorf("prefix %q is used by %s and %s", p, name, other)
		}
		seen[p] = name
	}
}

// TestClosedWaitsForTheCloseSync: the writer applies a close before its
// WAL sync, so the record is readable while the sync is under way; Closed
// must not report the month closed until the sync is done (a power cut
// before it would take the close away).
func TestClosedWaitsForTheCloseSync(t *testing.T) {
	var armed atomic.Bool
	release := make(chan struct{})
	blocking := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.HasSuffix(op.Path, ".log") &&
			(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
			<-release
		}
		return nil
	})
	fs := errorfs.Wrap(vfs.NewMem(), blocking)
	db, err := Open("ledger", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement(req(1), "P1", abi.MakeDate(2026, 8, 1), nil, 0))
	aug := MakeMonth(2026, 8)
	armed.Store(true)
	closed := make(chan error, 1)
	go func() {
		_, _, err := db.CloseMonth(aug, func(*MonthTotals) ([]byte, error) { return []byte("{}"), nil })
		closed <- err
	}()
	// Wait until the close is applied (readable) while its sync hangs.
	key := appendMonthKey(nil, pfxClosed, aug)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, c, err := db.pdb.Get(key); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the close never became readable")
		}
		time.Sleep(time.Millisecond)
	}
	answered := make(chan bool, 1)
	go func() {
		_, ok, err := db.Closed(aug)
		answered <- ok && err == nil
	}()
	select {
	case <-answered:
		t.Fatal("Closed answered while the close's sync was still under way")
	case <-time.After(100 * time.Millisecond):
	}
	armed.Store(false)
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if ok := <-answered; !ok {
		t.Fatal("Closed did not report the month closed once synced")
	}
	// A reopened store knows its closes.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open("ledger", testOptions(fs)); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok, err := db.Closed(aug); !ok || err != nil {
		t.Fatalf("after reopening: closed %v, %v", ok, err)
	}
}

// An export (ScanRaw) or a replay (Scan) may wait on its client between
// entries for as long as it likes; a Close meanwhile closed the store under
// its open iterator ("leaked iterators", and the scan then read a closed
// store). Close must find no iterator open, and the scan must end with
// ErrClosed.
func TestCloseDuringAScan(t *testing.T) {
	for _, raw := range []bool{true, false} {
		db, _ := openMem(t)
		for i := range 300 { // more than a page
			mustAppend(t, db, pairEntry(fmt.Sprint("e", i), "152500", "370102", 100, 50, 0))
		}
		in, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		n := 0
		wait := func() error {
			if n++; n == 3 {
				close(in)
				<-release
			}
			return nil
		}
		go func() {
			if raw {
				done <- db.ScanRaw(1, 0, func(*Entry, []byte) error { return wait() })
			} else {
				done <- db.Scan(1, func(*Entry) error { return wait() })
			}
		}()
		<-in
		if err := db.Close(); err != nil {
			t.Fatalf("raw %v: closing while a scan waits: %v", raw, err)
		}
		close(release)
		if err := <-done; !errors.Is(err, ErrClosed) || n > scanPageEntries {
			t.Fatalf("raw %v: the scan went on after the close: %v after %d entries", raw, err, n)
		}
	}
}

// A reconciliation reading a hospital's rows while the ledger closes: Close
// closed the store under the open iterator ("leaked iterators"). It waits
// for the rows instead (their fn must not block), and rows asked for after
// the close are ErrClosed.
func TestCloseDuringHospitalRows(t *testing.T) {
	db, _ := openMem(t)
	for i := range 5 {
		mustAppend(t, db, pairEntry(fmt.Sprint("e", i), "152500", "370102", 100, 50, 0))
	}
	in, release := make(chan struct{}), make(chan struct{})
	rows := make(chan error, 1)
	go func() {
		n := 0
		_, err := db.HospitalRows(hospital, 0, math.MaxInt64, func(*HospitalRow) error {
			if n++; n == 2 {
				close(in)
				<-release
			}
			return nil
		})
		rows <- err
	}()
	<-in
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	var err error
	select {
	case err = <-closed: // it did not wait
		close(release)
	case <-time.After(5 * time.Second): // Close waits for the rows
		close(release)
		err = <-closed
	}
	if err != nil {
		t.Fatalf("closing while a hospital's rows are read: %v", err)
	}
	if err := <-rows; err != nil {
		t.Fatalf("the rows read before the close: %v", err)
	}
	if _, err := db.HospitalRows(hospital, 0, math.MaxInt64, func(*HospitalRow) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("rows after the close: %v", err)
	}
}

// TestFirstSeqFrom checks the first entry committed in a month or later,
// in clearing time: an entry at 16:30 UTC on the last day of a month
// belongs to the next month (UTC+8).
func TestFirstSeqFrom(t *testing.T) {
	clk := newTestClock(utc("2026-09-15T10:00:00Z"))
	db := openClock(t, memFS(), clk)
	if _, ok, err := db.FirstSeqFrom(MakeMonth(2026, 1)); err != nil || ok {
		t.Fatalf("empty ledger: %v %v, want none", ok, err)
	}
	for i, at := range []string{"2026-09-15T10:00:00Z", "2026-09-30T15:59:00Z", "2026-09-30T16:30:00Z", "2026-11-02T00:00:00Z"} {
		clk.set(utc(at))
		mustAppend(t, db, settlement(req(i), "P1", 20000, nil, 0))
	}
	for _, tt := range []struct {
		m    Month
		want uint64
		ok   bool
	}{
		{MakeMonth(2025, 12), 1, true},
		{MakeMonth(2026, 9), 1, true},
		{MakeMonth(2026, 10), 3, true}, // 2026-10-01 00:30 in UTC+8
		{MakeMonth(2026, 11), 4, true},
		{MakeMonth(2026, 12), 0, false},
	} {
		got, ok, err := db.FirstSeqFrom(tt.m)
		if err != nil || ok != tt.ok || got != tt.want {
			t.Errorf("FirstSeqFrom(%s) = %d %v %v, want %d %v", tt.m, got, ok, err, tt.want, tt.ok)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.FirstSeqFrom(MakeMonth(2026, 9)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
