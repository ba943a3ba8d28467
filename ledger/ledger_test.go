package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"medgate/engine/abi"
)

func TestAppendRoundTrip(t *testing.T) {
	db, _ := openMem(t)
	if seq, h := db.Head(); seq != 0 || h != ([32]byte{}) {
		t.Fatalf("empty head = %d %x", seq, h)
	}
	var prev [32]byte
	for i := 1; i <= 3; i++ {
		e := settlement(req(i), "P1", 20261109, nil, 0, fmt.Sprintf("code-%d", i))
		mustAppend(t, db, e)
		if e.Seq != uint64(i) || e.SettlementID != fmt.Sprintf("S%012d", i) {
			t.Fatalf("entry %d: seq %d id %s", i, e.Seq, e.SettlementID)
		}
		if e.PrevHash != prev || e.Hash == ([32]byte{}) || e.CommittedAt == 0 {
			t.Fatalf("entry %d: bad chain fields", i)
		}
		prev = e.Hash
		if seq, h := db.Head(); seq != e.Seq || h != e.Hash {
			t.Fatalf("head = %d, want %d", seq, e.Seq)
		}
		got, err := db.Entry(e.Seq)
		if err != nil {
			t.Fatal(err)
		}
		sameEntry(t, got, e)
		got, ok, err := db.EntryByID(e.SettlementID)
		if err != nil || !ok {
			t.Fatalf("EntryByID: %v %v", ok, err)
		}
		sameEntry(t, got, e)
		id, ok, err := db.Idempotency(hospital, e.RequestID)
		if err != nil || !ok || id.Seq != e.Seq || id.SettlementID != e.SettlementID || id.BodyHash != e.BodyHash {
			t.Fatalf("Idempotency = %+v %v %v", id, ok, err)
		}
	}
	if _, err := db.Entry(4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Entry(4) = %v", err)
	}
	if _, ok, err := db.EntryByID("S000000000004"); ok || err != nil {
		t.Fatalf("EntryByID(unknown) = %v %v", ok, err)
	}
	if _, ok, err := db.EntryByID("bogus"); ok || err != nil {
		t.Fatalf("EntryByID(bogus) = %v %v", ok, err)
	}
	if _, ok, _ := db.Idempotency(hospital, "nope"); ok {
		t.Fatal("unknown idempotency key found")
	}
	var seqs []uint64
	if err := db.Scan(2, func(e *Entry) error { seqs = append(seqs, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[2 3]" {
		t.Fatalf("Scan(2) = %v", seqs)
	}
	if n, err := db.Verify(); n != 3 || err != nil {
		t.Fatalf("Verify = %d %v", n, err)
	}
}

func TestAppendInvalid(t *testing.T) {
	db, _ := openMem(t)
	for name, e := range map[string]*Entry{
		"kind":          {Kind: 7, Hospital: hospital, RequestID: "x"},
		"no request id": {Kind: KindSettlement, Hospital: hospital},
		"counter name":  settlement("a", "P", 20260101, []abi.Counter{{Name: "Bad Name", Value: 1}}, 0),
		"rev no target": {Kind: KindReversal, Hospital: hospital, RequestID: "y"},
	} {
		if err := db.Append(context.Background(), e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if seq, _ := db.Head(); seq != 0 {
		t.Fatalf("head moved to %d", seq)
	}
}

func TestIdempotencyDuplicate(t *testing.T) {
	db, _ := openMem(t)
	first := settlement("r1", "P1", 20261109, nil, 0)
	mustAppend(t, db, first)
	again := settlement("r1", "P1", 20261109, nil, 0)
	again.BodyHash[0] ^= 1 // another body: the gateway decides replay vs 409
	err := db.Append(context.Background(), again)
	var dup *DuplicateError
	if !errors.As(err, &dup) {
		t.Fatalf("err = %v", err)
	}
	if dup.Existing.Seq != 1 || dup.Existing.SettlementID != "S000000000001" || dup.Existing.BodyHash != first.BodyHash {
		t.Fatalf("Existing = %+v", dup.Existing)
	}
	if again.Seq != 0 || again.SettlementID != "" {
		t.Fatal("refused entry got a seq")
	}
	// Same request id at another hospital is another key.
	other := settlement("r1", "P1", 20261109, nil, 0)
	other.Hospital = "H1"
	mustAppend(t, db, other)
	if other.Seq != 2 {
		t.Fatalf("seq = %d", other.Seq)
	}
}

// A ledger written by an earlier version keeps 16-byte in-use trace-code
// records (a zero second half): they still hold their code, and a
// reversal still frees it.
func TestTraceCodesOldRecordFormat(t *testing.T) {
	db, _ := openMem(t)
	s1 := settlement("r1", "P1", 20261109, nil, 0, "A", "B")
	mustAppend(t, db, s1)
	old := append(be.AppendUint64(nil, s1.Seq), make([]byte, 8)...)
	set(t, db, appendTraceKey(nil, db.bucket(s1.Seq), "A"), old)

	err := db.Append(context.Background(), settlement("r2", "P2", 20261109, nil, 0, "A"))
	var tce *TraceCodeError
	if !errors.As(err, &tce) || tce.Code != "A" || tce.SettlementID != s1.SettlementID {
		t.Fatalf("reuse of a code held by an old record: err = %v", err)
	}
	mustAppend(t, db, reversal("r3", s1))
	s4 := settlement("r4", "P2", 20261109, nil, 0, "A")
	mustAppend(t, db, s4)
	if id, inUse, err := db.TraceCodeOwner("A"); err != nil || !inUse || id != s4.SettlementID {
		t.Fatalf("owner(A) after the reversal = %q %v %v", id, inUse, err)
	}
}

func TestTraceCodes(t *testing.T) {
	db, _ := openMem(t)
	s1 := settlement("r1", "P1", 20261109, nil, 0, "A", "B")
	mustAppend(t, db, s1)
	if id, inUse, err := db.TraceCodeOwner("B"); err != nil || !inUse || id != s1.SettlementID {
		t.Fatalf("owner(B) = %q %v %v", id, inUse, err)
	}
	if _, inUse, _ := db.TraceCodeOwner("C"); inUse {
		t.Fatal("C in use")
	}

	err := db.Append(context.Background(), settlement("r2", "P2", 20261109, nil, 0, "C", "B"))
	var tce *TraceCodeError
	if !errors.As(err, &tce) || tce.Code != "B" || tce.SettlementID != s1.SettlementID {
		t.Fatalf("reuse: err = %v", err)
	}
	if _, inUse, _ := db.TraceCodeOwner("C"); inUse {
		t.Fatal("refused entry marked C")
	}
	err = db.Append(context.Background(), settlement("r3", "P2", 20261109, nil, 0, "D", "E", "D"))
	if !errors.As(err, &tce) || tce.Code != "D" || tce.SettlementID != "" {
		t.Fatalf("repeat within entry: err = %v", err)
	}
	// Many codes take the map path of the duplicate check.
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("M%d", i)
	}
	many[39] = "M3"
	if err := db.Append(context.Background(), settlement("r4", "P2", 20261109, nil, 0, many...)); !errors.As(err, &tce) || tce.Code != "M3" {
		t.Fatalf("repeat among many: err = %v", err)
	}

	rev := reversal("rv1", s1)
	mustAppend(t, db, rev)
	for _, c := range []string{"A", "B"} {
		if id, inUse, err := db.TraceCodeOwner(c); err != nil || inUse || id != "" {
			t.Fatalf("owner(%s) after reversal = %q %v %v", c, id, inUse, err)
		}
	}
	s2 := settlement("r5", "P2", 20261109, nil, 0, "B")
	mustAppend(t, db, s2)
	if id, inUse, _ := db.TraceCodeOwner("B"); !inUse || id != s2.SettlementID {
		t.Fatalf("owner(B) = %q %v", id, inUse)
	}
	// Reversing s2 frees B; A stays free.
	mustAppend(t, db, reversal("rv2", s2))
	if _, inUse, _ := db.TraceCodeOwner("B"); inUse {
		t.Fatal("B still in use")
	}
}

func TestReversals(t *testing.T) {
	db, _ := openMem(t)
	s1 := settlement("r1", "P1", 20261109, nil, 0)
	mustAppend(t, db, s1)
	if _, ok, _ := db.ReversedBy(s1.SettlementID); ok {
		t.Fatal("reversed before reversal")
	}
	rev := reversal("rv1", s1)
	mustAppend(t, db, rev)
	if rid, ok, err := db.ReversedBy(s1.SettlementID); err != nil || !ok || rid != rev.SettlementID {
		t.Fatalf("ReversedBy = %q %v %v", rid, ok, err)
	}
	got, _ := db.Entry(rev.Seq)
	if got.Kind != KindReversal || got.Reverses != s1.SettlementID || got.Amounts.Total != -s1.Amounts.Total {
		t.Fatalf("reversal entry = %+v", got)
	}

	err := db.Append(context.Background(), reversal("rv2", s1))
	var are *AlreadyReversedError
	if !errors.As(err, &are) || are.ReversalID != rev.SettlementID {
		t.Fatalf("double reversal: %v", err)
	}
	unknown := reversal("rv3", s1)
	unknown.Reverses = "S000000000099"
	if err := db.Append(context.Background(), unknown); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	unknown.Reverses = "garbage"
	if err := db.Append(context.Background(), unknown); !errors.Is(err, ErrNotFound) {
		t.Fatalf("garbage id: %v", err)
	}
	if err := db.Append(context.Background(), reversal("rv4", rev)); !errors.Is(err, ErrNotSettlement) {
		t.Fatalf("reversal of reversal: %v", err)
	}
	if seq, _ := db.Head(); seq != 2 {
		t.Fatalf("head = %d", seq)
	}
}

func TestCountersAndReversalYear(t *testing.T) {
	db, _ := openMem(t)
	ch := []abi.Counter{{Name: "inpatient.deductible", Value: 80000}, {Name: "admissions", Value: 1}}
	s1 := settlement("r1", "P1", 20251230, ch, 0)
	mustAppend(t, db, s1)
	s2 := settlement("r2", "P1", 20251231, []abi.Counter{{Name: "admissions", Value: 1}, {Name: "basic.paid", Value: 5000}}, 0)
	mustAppend(t, db, s2)
	s3 := settlement("r3", "P1", 20260102, []abi.Counter{{Name: "admissions", Value: 1}}, 0)
	mustAppend(t, db, s3)
	want := map[string]int64{"admissions": 2, "basic.paid": 5000, "inpatient.deductible": 80000}
	if got := counters(t, db, "P1", 2025); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("2025 = %v", got)
	}
	if got := counters(t, db, "P1", 2026); got["admissions"] != 1 || len(got) != 1 {
		t.Fatalf("2026 = %v", got)
	}

	// A reversal must be booked in the original's year.
	bad := reversal("rv0", s1)
	bad.Date = 20260105
	if err := db.Append(context.Background(), bad); !errors.Is(err, ErrReversalMismatch) {
		t.Fatalf("reversal in another year: %v", err)
	}
	bad = reversal("rv0", s1)
	bad.Changes[0].Value++
	if err := db.Append(context.Background(), bad); !errors.Is(err, ErrReversalMismatch) {
		t.Fatalf("reversal with other changes: %v", err)
	}
	// Clearing books a reversal against its pair and hospital, with its
	// own amounts: they must mirror the settlement's.
	for name, spoil := range map[string]func(e *Entry){
		"another hospital":        func(e *Entry) { e.Hospital = "H9999999999" },
		"another treating region": func(e *Entry) { e.TreatingRegion = "110105" },
		"amounts not negated":     func(e *Entry) { e.Amounts.FundTotal++ },
	} {
		bad = reversal("rv0", s1)
		spoil(bad)
		if err := db.Append(context.Background(), bad); !errors.Is(err, ErrReversalMismatch) {
			t.Fatalf("reversal with %s: %v", name, err)
		}
	}
	bad = reversal("rv0", s1)
	bad.Changes = append(bad.Changes[1:], abi.Counter{Name: "admissions", Value: 0}, bad.Changes[0])
	bad.BalanceChange = 1
	if err := db.Append(context.Background(), bad); !errors.Is(err, ErrReversalMismatch) {
		t.Fatalf("reversal with another balance change: %v", err)
	}
	bad.BalanceChange = 0 // reordered changes, a zero one added: still the negation
	mustAppend(t, db, bad)
	want = map[string]int64{"admissions": 1, "basic.paid": 5000}
	if got := counters(t, db, "P1", 2025); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("2025 after reversal = %v", got)
	}
	mustAppend(t, db, reversal("rv2", s2))
	if got := counters(t, db, "P1", 2025); len(got) != 0 {
		t.Fatalf("2025 after both reversals = %v", got)
	}
	if got := counters(t, db, "P1", 2026); got["admissions"] != 1 {
		t.Fatalf("2026 after reversals = %v", got)
	}
	// dst is appended to.
	dst := []abi.Counter{{Name: "x", Value: 1}}
	dst, err := db.Counters(region, "P1", 2026, dst)
	if err != nil || len(dst) != 2 || dst[1].Name != "admissions" {
		t.Fatalf("Counters(dst) = %v %v", dst, err)
	}
}

func TestBalance(t *testing.T) {
	db, _ := openMem(t)
	n, err := db.PutPersons([]Person{person("P1", 100000), person("P2", 0)})
	if err != nil || n != 2 {
		t.Fatalf("PutPersons = %d %v", n, err)
	}
	if b := balance(t, db, "P1"); b != 100000 {
		t.Fatalf("opening = %d", b)
	}
	s1 := settlement("r1", "P1", 20261109, nil, -30000)
	mustAppend(t, db, s1)
	if b := balance(t, db, "P1"); b != 70000 {
		t.Fatalf("after settlement = %d", b)
	}
	// An upsert of an existing person does not reset the balance.
	p := person("P1", 999999)
	p.Facts.ContinuousYears = 7
	n, err = db.PutPersons([]Person{p, person("P3", 500)})
	if err != nil || n != 1 {
		t.Fatalf("PutPersons = %d %v", n, err)
	}
	if b := balance(t, db, "P1"); b != 70000 {
		t.Fatalf("after upsert = %d", b)
	}
	got, ok, err := db.Person(region, "P1")
	if err != nil || !ok || got.Facts.ContinuousYears != 7 || got.OpeningBalance != 999999 || got.Facts.Groups[0] != "subsistence" {
		t.Fatalf("Person = %+v %v %v", got, ok, err)
	}
	if _, ok, _ := db.Person(region, "nobody"); ok {
		t.Fatal("unknown person found")
	}
	mustAppend(t, db, reversal("rv1", s1))
	if b := balance(t, db, "P1"); b != 100000 {
		t.Fatalf("after reversal = %d", b)
	}
	if b := balance(t, db, "P3"); b != 500 {
		t.Fatalf("P3 = %d", b)
	}
}

func TestPutPersonsDuplicateInCall(t *testing.T) {
	db, _ := openMem(t)
	a, b := person("P1", 100), person("P1", 200)
	b.Facts.ZeroClaimYears = 3
	n, err := db.PutPersons([]Person{a, b})
	if err != nil || n != 1 {
		t.Fatalf("PutPersons = %d %v", n, err)
	}
	// As if upserted in order: created with a's opening balance, b's record.
	if bal := balance(t, db, "P1"); bal != 100 {
		t.Fatalf("balance = %d", bal)
	}
	p, _, _ := db.Person(region, "P1")
	if p.Facts.ZeroClaimYears != 3 {
		t.Fatalf("record = %+v", p)
	}
	if _, err := db.PutPersons([]Person{{ID: "x"}}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("invalid person: %v", err)
	}
}

// A refused entry writes nothing: no seq, no index, no counter, no balance.
func TestRefusedEntryLeavesNothing(t *testing.T) {
	db, _ := openMem(t)
	if _, err := db.PutPersons([]Person{person("P1", 1000)}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement("r1", "P1", 20261109, []abi.Counter{{Name: "cap.used", Value: 10}}, -100, "T1"))
	head, hash := db.Head()

	check := func(name string, e *Entry, want error) {
		t.Helper()
		err := db.Append(context.Background(), e)
		if !errors.Is(err, want) {
			t.Fatalf("%s: err = %v, want %v", name, err, want)
		}
		if e.Seq != 0 || e.SettlementID != "" || e.Hash != ([32]byte{}) {
			t.Fatalf("%s: entry sealed", name)
		}
		if s, h := db.Head(); s != head || h != hash {
			t.Fatalf("%s: head moved", name)
		}
		if _, ok, _ := db.Idempotency(hospital, e.RequestID); ok {
			t.Fatalf("%s: idempotency key written", name)
		}
		if _, inUse, _ := db.TraceCodeOwner("T2"); inUse {
			t.Fatalf("%s: trace code written", name)
		}
		if got := counters(t, db, "P1", 2026); len(got) != 1 || got["cap.used"] != 10 {
			t.Fatalf("%s: counters = %v", name, got)
		}
		if b := balance(t, db, "P1"); b != 900 {
			t.Fatalf("%s: balance = %d", name, b)
		}
	}
	// Counter would go negative.
	check("counter negative", settlement("r2", "P1", 20261109,
		[]abi.Counter{{Name: "new.one", Value: 5}, {Name: "cap.used", Value: -11}}, -1, "T2"), ErrCounterRange)
	// Counter would overflow.
	check("counter overflow", settlement("r3", "P1", 20261109,
		[]abi.Counter{{Name: "cap.used", Value: 1<<63 - 5}}, -1, "T2"), ErrCounterRange)
	// A counter that does not exist cannot start negative.
	check("absent negative", settlement("r4", "P1", 20261109,
		[]abi.Counter{{Name: "other", Value: -1}}, 0, "T2"), ErrCounterRange)
	// Balance would go negative.
	check("balance", settlement("r5", "P1", 20261109,
		[]abi.Counter{{Name: "cap.used", Value: 1}}, -901, "T2"), ErrInsufficientBalance)

	// The next good entry takes the next seq.
	e := settlement("r6", "P1", 20261109, []abi.Counter{{Name: "cap.used", Value: 1}}, -900, "T2")
	mustAppend(t, db, e)
	if e.Seq != head+1 {
		t.Fatalf("seq = %d, want %d", e.Seq, head+1)
	}
	if b := balance(t, db, "P1"); b != 0 {
		t.Fatalf("balance = %d", b)
	}
}

func TestConcurrentAppendsOnePerson(t *testing.T) {
	db, _ := openMem(t)
	const G, N = 64, 40
	var wg sync.WaitGroup
	errs := make(chan error, G)
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < N; i++ {
				e := settlement(fmt.Sprintf("g%d-%d", g, i), "P1", 20261109,
					[]abi.Counter{{Name: "admissions", Value: 1}, {Name: fmt.Sprintf("g%02d", g%8), Value: int64(i + 1)}}, 0,
					fmt.Sprintf("tc-%d-%d", g, i))
				if err := db.Append(context.Background(), e); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := counters(t, db, "P1", 2026)
	if got["admissions"] != G*N {
		t.Fatalf("admissions = %d", got["admissions"])
	}
	for k := 0; k < 8; k++ {
		// 8 goroutines per name, each adding 1+2+...+N.
		if v := got[fmt.Sprintf("g%02d", k)]; v != 8*N*(N+1)/2 {
			t.Fatalf("g%02d = %d", k, v)
		}
	}
	var want uint64 = 1
	if err := db.Scan(0, func(e *Entry) error {
		if e.Seq != want {
			return fmt.Errorf("seq %d, want %d", e.Seq, want)
		}
		want++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want-1 != G*N {
		t.Fatalf("scanned %d entries", want-1)
	}
	if n, err := db.Verify(); err != nil || n != G*N {
		t.Fatalf("Verify = %d %v", n, err)
	}
}

// runBatch feeds requests to the writer as ONE batch. The writer goroutine
// is idle (nothing else appends), so the test goroutine can act as the
// writer.
func runBatch(db *DB, entries ...*Entry) []error {
	w := &writer{db: db}
	for _, e := range entries {
		w.reqs = append(w.reqs, &request{e: e, done: make(chan struct{}, 1)})
	}
	reqs := append([]*request(nil), w.reqs...)
	w.process()
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		<-r.done
		errs[i] = r.err
	}
	return errs
}

func TestBatchWithFailures(t *testing.T) {
	db, _ := openMem(t)
	if _, err := db.PutPersons([]Person{person("P1", 1000)}); err != nil {
		t.Fatal(err)
	}
	s0 := settlement("r0", "P1", 20261109, nil, 0, "T0")
	mustAppend(t, db, s0)

	ok1 := settlement("r1", "P1", 20261109, []abi.Counter{{Name: "n", Value: 1}}, -600, "T1")
	dup := settlement("r1", "P1", 20261109, nil, 0)                                     // same key as ok1, same batch
	poor := settlement("r2", "P1", 20261109, nil, -500, "T9")                           // 1000-600 < 500
	rev := reversal("r4", s0)                                                           // frees T0
	ok2 := settlement("r5", "P2", 20261109, nil, 0, "T0")                               // T0 freed by rev, same batch
	rev2 := reversal("r6", s0)                                                          // already reversed, same batch
	ok3 := settlement("r7", "P1", 20261109, []abi.Counter{{Name: "n", Value: 2}}, -400) // exactly the rest
	// Trace codes in flight are kept apart by Append's reservations
	// (TestTraceCodesInFlight); the writer itself only marks them.
	errs := runBatch(db, ok1, dup, poor, rev, ok2, rev2, ok3)

	var de *DuplicateError
	var are *AlreadyReversedError
	switch {
	case errs[0] != nil || errs[3] != nil || errs[4] != nil || errs[6] != nil:
		t.Fatalf("errs = %v", errs)
	case !errors.As(errs[1], &de) || de.Existing.Seq != ok1.Seq:
		t.Fatalf("dup: %v", errs[1])
	case !errors.Is(errs[2], ErrInsufficientBalance):
		t.Fatalf("poor: %v", errs[2])
	case !errors.As(errs[5], &are) || are.ReversalID != rev.SettlementID:
		t.Fatalf("rev2: %v", errs[5])
	}
	for i, e := range []*Entry{ok1, rev, ok2, ok3} {
		if e.Seq != uint64(i+3) { // after P1's opening balance and s0
			t.Fatalf("entry %d: seq %d", i, e.Seq)
		}
	}
	if ok2.PrevHash != rev.Hash || ok3.PrevHash != ok2.Hash {
		t.Fatal("chain within the batch broken")
	}
	if seq, h := db.Head(); seq != 6 || h != ok3.Hash {
		t.Fatalf("head = %d", seq)
	}
	if b := balance(t, db, "P1"); b != 0 {
		t.Fatalf("balance = %d", b)
	}
	if got := counters(t, db, "P1", 2026); got["n"] != 3 {
		t.Fatalf("counters = %v", got)
	}
	if id, inUse, _ := db.TraceCodeOwner("T0"); !inUse || id != ok2.SettlementID {
		t.Fatalf("T0 owner = %s %v", id, inUse)
	}
	if _, inUse, _ := db.TraceCodeOwner("T9"); inUse {
		t.Fatal("T9 written by a refused entry")
	}
	if n, err := db.Verify(); n != 6 || err != nil {
		t.Fatalf("Verify = %d %v", n, err)
	}
}

// TestBatchReversalThenSettlement: in one batch, a reversal gives back a
// settlement's account payment and counters, and the settlements after it
// in the batch see them (the writer reads its own state, not the batch,
// in a batch with reversals), as do those of the next batch.
func TestBatchReversalThenSettlement(t *testing.T) {
	db, _ := openMem(t)
	if _, err := db.PutPersons([]Person{person("P1", 1000)}); err != nil {
		t.Fatal(err)
	}
	s0 := settlement("r0", "P1", 20261109, []abi.Counter{{Name: "n", Value: 5}}, -700)
	mustAppend(t, db, s0)
	rev := reversal("r1", s0) // +700, n −5
	rev.Changes = []abi.Counter{{Name: "n", Value: -5}}
	spend := settlement("r2", "P1", 20261109, []abi.Counter{{Name: "n", Value: 1}}, -1000) // needs the 700 back
	over := settlement("r3", "P1", 20261109, nil, -1)                                      // nothing left
	errs := runBatch(db, rev, spend, over)
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrInsufficientBalance) {
		t.Fatalf("errs = %v", errs)
	}
	if b := balance(t, db, "P1"); b != 0 {
		t.Fatalf("balance = %d, want 0", b)
	}
	if got := counters(t, db, "P1", 2026); got["n"] != 1 {
		t.Fatalf("counters = %v, want n=1", got)
	}
	errs = runBatch(db, settlement("r4", "P1", 20261109, []abi.Counter{{Name: "n", Value: 1}}, 0))
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got := counters(t, db, "P1", 2026); got["n"] != 2 {
		t.Fatalf("counters = %v, want n=2", got)
	}
	if n, err := db.Verify(); n != 5 || err != nil { // and P1's opening balance
		t.Fatalf("Verify = %d %v", n, err)
	}
}

func TestRestart(t *testing.T) {
	fs := memFS()
	db, err := Open("data", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPersons([]Person{person("P1", 5000)}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutHospitals([]Hospital{{ID: hospital, Region: "370102", Level: 3, AssistanceDesignated: true}}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutCatalog("370102", []CatalogEntry{{Code: "XA1", Class: abi.ClassB, SelfpayProp: 1000}}, true); err != nil {
		t.Fatal(err)
	}
	s1 := settlement("r1", "P1", 20261109, []abi.Counter{{Name: "a", Value: 3}}, -1000, "T1", "T2")
	s2 := settlement("r2", "P1", 20261110, []abi.Counter{{Name: "a", Value: 4}}, -2000, "T3")
	mustAppend(t, db, s1)
	mustAppend(t, db, s2)
	rev := reversal("r3", s1)
	mustAppend(t, db, rev)
	head, hash := db.Head()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.Append(context.Background(), settlement("r9", "P1", 20261109, nil, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}

	db, err = Open("data", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s, h := db.Head(); s != head || h != hash {
		t.Fatalf("head = %d, want %d", s, head)
	}
	if id, ok, _ := db.Idempotency(hospital, "r2"); !ok || id.SettlementID != s2.SettlementID || id.BodyHash != s2.BodyHash {
		t.Fatalf("idempotency = %+v %v", id, ok)
	}
	if _, inUse, _ := db.TraceCodeOwner("T1"); inUse {
		t.Fatal("T1 in use after restart")
	}
	if id, inUse, _ := db.TraceCodeOwner("T3"); !inUse || id != s2.SettlementID {
		t.Fatal("T3 lost")
	}
	if rid, ok, _ := db.ReversedBy(s1.SettlementID); !ok || rid != rev.SettlementID {
		t.Fatal("reversed-by lost")
	}
	if got := counters(t, db, "P1", 2026); got["a"] != 4 {
		t.Fatalf("counters = %v", got)
	}
	if b := balance(t, db, "P1"); b != 3000 {
		t.Fatalf("balance = %d", b)
	}
	if h, ok := db.Hospital(hospital); !ok || h.Level != 3 || !h.AssistanceDesignated || h.Region != "370102" {
		t.Fatalf("hospital = %+v %v", h, ok)
	}
	if c, ok := db.Catalog("370102"); !ok || c.Len() != 1 {
		t.Fatal("catalog lost")
	} else if e, ok := c.Lookup("XA1"); !ok || e.SelfpayProp != 1000 || e.Class != abi.ClassB {
		t.Fatalf("catalog entry = %+v", e)
	}
	if n, err := db.Verify(); err != nil || n != 4 { // P1's opening balance first
		t.Fatalf("Verify = %d %v", n, err)
	}
	// The chain continues where it stopped.
	s4 := settlement("r4", "P1", 20261111, nil, 0, "T1")
	mustAppend(t, db, s4)
	if s4.Seq != 5 || s4.PrevHash != hash {
		t.Fatalf("after restart: seq %d", s4.Seq)
	}
	if err := db.Append(context.Background(), settlement("r1", "P1", 20261109, nil, 0)); err == nil {
		t.Fatal("idempotency key reusable after restart")
	}
}

func TestRestartRealDisk(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement("r1", "P1", 20261109, nil, 0))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if seq, _ := db.Head(); seq != 1 {
		t.Fatalf("head = %d", seq)
	}
}

func TestRegistry(t *testing.T) {
	db, _ := openMem(t)
	if err := db.PutHospitals([]Hospital{{ID: "H1", Region: "370102", Level: 2}, {ID: "H2", Region: "152502", Level: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutHospitals([]Hospital{{ID: "H1", Region: "370102", Level: 3}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := db.Hospital("H1"); h.Level != 3 {
		t.Fatalf("H1 = %+v", h)
	}
	if _, ok := db.Hospital("H2"); !ok {
		t.Fatal("H2 lost")
	}
	if err := db.PutHospitals([]Hospital{{}}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("empty id: %v", err)
	}

	cat := []CatalogEntry{
		{Code: "A1", Class: abi.ClassA},
		{Code: "B1", Class: abi.ClassB, SelfpayProp: 1000, PriceCap: 12_000000, HasPriceCap: true},
	}
	if err := db.PutCatalog("370102", cat, true); err != nil {
		t.Fatal(err)
	}
	if err := db.PutCatalog("370102", []CatalogEntry{{Code: "C1", Class: abi.ClassC}, {Code: "A1", Class: abi.ClassB, SelfpayProp: 500}}, false); err != nil {
		t.Fatal(err)
	}
	c, ok := db.Catalog("370102")
	if !ok || c.Len() != 3 || c.Region() != "370102" {
		t.Fatalf("catalog = %v %v", c, ok)
	}
	if e, _ := c.Lookup("A1"); e.Class != abi.ClassB || e.SelfpayProp != 500 {
		t.Fatalf("A1 = %+v", e)
	}
	if e, _ := c.Lookup("B1"); !e.HasPriceCap || e.PriceCap != 12_000000 {
		t.Fatalf("B1 = %+v", e)
	}
	if _, ok := db.Catalog("370100"); ok {
		t.Fatal("Catalog must not fall back")
	}
	if allocs := testing.AllocsPerRun(100, func() { c.Lookup("B1"); c.Lookup("nope") }); allocs != 0 {
		t.Fatalf("Lookup allocates %v", allocs)
	}
	if es := c.Entries(); len(es) != 3 || es[0].Code != "A1" || es[2].Code != "C1" {
		t.Fatalf("Entries = %v", es)
	}
	// Replace drops codes not given, in memory and on disk.
	if err := db.PutCatalog("370102", []CatalogEntry{{Code: "Z9", Class: abi.ClassA}}, true); err != nil {
		t.Fatal(err)
	}
	if err := db.PutCatalog("152500", []CatalogEntry{{Code: "Q", Class: abi.ClassA}}, true); err != nil {
		t.Fatal(err)
	}
	c, _ = db.Catalog("370102")
	if _, ok := c.Lookup("A1"); ok || c.Len() != 1 {
		t.Fatal("replace kept old codes")
	}
	if err := db.PutCatalog("1", []CatalogEntry{{Code: "x", Class: 9}}, false); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("bad class: %v", err)
	}
	// An empty replace removes the catalog.
	if err := db.PutCatalog("152500", nil, true); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.Catalog("152500"); ok {
		t.Fatal("empty replace kept the catalog")
	}
	// Reload from disk agrees with memory.
	if err := db.load(); err != nil {
		t.Fatal(err)
	}
	c, _ = db.Catalog("370102")
	if _, ok := c.Lookup("Z9"); !ok || c.Len() != 1 {
		t.Fatal("disk and memory differ after replace")
	}
	if _, ok := db.Catalog("152500"); ok {
		t.Fatal("removed catalog came back")
	}
}

// Reads of an entry that is visible in pebble but not yet durable wait.
func TestReadsWaitForDurability(t *testing.T) {
	db, _ := openMem(t)
	s1 := settlement("r1", "P1", 20261109, nil, 0, "T1")
	mustAppend(t, db, s1)
	// Simulate the window between publication and WAL sync: write entry 2
	// and its indexes behind the writer's back without moving the head.
	e := settlement("r2", "P1", 20261109, nil, 0)
	e.Seq, e.SettlementID, e.PrevHash = 2, SettlementID(2), s1.Hash
	body := appendEntryBody(nil, e)
	e.Hash = EntryHash(e.PrevHash, body)
	b := db.pdb.NewBatch()
	_ = b.Set(appendEntryKey(nil, 2), append(body, e.Hash[:]...), nil)
	_ = b.Set(appendIdemKey(nil, 0, hospital, "r2"), appendIdemValue(nil, e.BodyHash, 2), nil)
	_ = b.Set(appendTraceKey(nil, 0, "T1"), appendTraceValue(nil, 1, 2), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	// As the writer does, the idempotency key is in the filter before the
	// store.
	db.ifilter.add(appendIdemKey(nil, 0, hospital, "r2")[bucketKeyLen:])

	type result struct {
		what string
		err  error
	}
	res := make(chan result, 4)
	go func() { _, err := db.Entry(2); res <- result{"Entry", err} }()
	go func() { _, _, err := db.EntryByID("S000000000002"); res <- result{"EntryByID", err} }()
	go func() { _, _, err := db.Idempotency(hospital, "r2"); res <- result{"Idempotency", err} }()
	go func() { _, _, err := db.TraceCodeOwner("T1"); res <- result{"TraceCodeOwner", err} }()
	select {
	case r := <-res:
		t.Fatalf("%s returned before durability: %v", r.what, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	// Scan and Verify stop at the durable head.
	n := 0
	_ = db.Scan(1, func(*Entry) error { n++; return nil })
	if n != 1 {
		t.Fatalf("Scan saw %d entries", n)
	}
	// Durable now: the waiters return.
	db.head.Store(&headState{seq: 2, hash: e.Hash})
	db.broadcast()
	for i := 0; i < 4; i++ {
		if r := <-res; r.err != nil {
			t.Fatalf("%s: %v", r.what, r.err)
		}
	}
	if _, inUse, err := db.TraceCodeOwner("T1"); inUse || err != nil {
		t.Fatal("T1 should be free")
	}

	// And when the store fails instead, they return ErrWriteFailed.
	e3 := settlement("r3", "P1", 20261109, nil, 0)
	e3.Seq, e3.SettlementID, e3.PrevHash = 3, SettlementID(3), e.Hash
	b = db.pdb.NewBatch()
	_ = b.Set(appendEntryKey(nil, 3), AppendEntry(nil, e3), nil)
	_ = b.Commit(pebble.NoSync)
	go func() { _, err := db.Entry(3); res <- result{"Entry", err} }()
	time.Sleep(20 * time.Millisecond)
	// As failFlight fails the store: readers give up once the syncer has
	// failed a batch (syncFailed), not when the writer alone knows.
	db.syncFailed.Store(true)
	db.failed.Store(true)
	db.broadcast()
	if r := <-res; !errors.Is(r.err, ErrWriteFailed) {
		t.Fatalf("after failure: %v", r.err)
	}
}

func TestSettlementID(t *testing.T) {
	for _, seq := range []uint64{1, 42, 999999999999, 1000000000000, 1<<64 - 1} {
		id := SettlementID(seq)
		if want := fmt.Sprintf("S%012d", seq); id != want {
			t.Fatalf("SettlementID(%d) = %s", seq, id)
		}
		if got, ok := ParseSettlementID(id); !ok || got != seq {
			t.Fatalf("Parse(%s) = %d %v", id, got, ok)
		}
	}
	for _, bad := range []string{"", "S", "S000000000000", "S00000000001", "S0000000000001", "X000000000001",
		"S00000000000a", "S18446744073709551616", "S99999999999999999999"} {
		if _, ok := ParseSettlementID(bad); ok {
			t.Fatalf("Parse(%q) accepted", bad)
		}
	}
}

func TestAppendContext(t *testing.T) {
	db, _ := openMem(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either outcome is allowed when the writer is idle, but a cancelled
	// context must never hang.
	err := db.Append(ctx, settlement("r1", "P1", 20261109, nil, 0))
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// Close lets queued appends finish: each Append either succeeded (and is
// there after reopening) or returned ErrClosed.
func TestCloseDrains(t *testing.T) {
	fs := memFS()
	opts := testOptions(fs)
	opts.MaxBatch = 3
	db, err := Open("data", opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := map[string]bool{}
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				r := fmt.Sprintf("g%d-%d", g, i)
				err := db.Append(context.Background(), settlement(r, "P1", 20261109, nil, 0))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ok[r] = true
				mu.Unlock()
			}
		}(g)
	}
	time.Sleep(30 * time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := db.Append(context.Background(), nil); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("Append(nil) = %v", err)
	}
	db, err = Open("data", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := db.Verify()
	if err != nil || n != uint64(len(ok)) {
		t.Fatalf("Verify = %d %v, %d acknowledged", n, err, len(ok))
	}
	for r := range ok {
		if _, found, _ := db.Idempotency(hospital, r); !found {
			t.Fatalf("%s lost", r)
		}
	}
}

// TestTraceCodesInFlight appends many entries sharing trace codes at once:
// each code ends up settled exactly once, and every refusal names a code.
func TestTraceCodesInFlight(t *testing.T) {
	db, _ := openMem(t)
	var ps []Person
	for i := 0; i < 32; i++ {
		ps = append(ps, person(fmt.Sprintf("Q%d", i), 0))
	}
	if _, err := db.PutPersons(ps); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Entries i and i+1 share a code: at most one of each pair wins.
			e := settlement(fmt.Sprintf("q%d", i), fmt.Sprintf("Q%d", i), 20261109, nil, 0,
				fmt.Sprintf("C%d", i/2), fmt.Sprintf("U%d", i))
			err := db.Append(context.Background(), e)
			var te *TraceCodeError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &te):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 16 || refused.Load() != 16 {
		t.Fatalf("%d settled, %d refused; want 16 and 16", ok.Load(), refused.Load())
	}
	for i := 0; i < 16; i++ {
		if _, inUse, _ := db.TraceCodeOwner(fmt.Sprintf("C%d", i)); !inUse {
			t.Fatalf("C%d not settled", i)
		}
	}
	// A refused entry marked none of its codes, and released its reservation.
	e := settlement("again", "Q0", 20261109, nil, 0, "C0")
	var te *TraceCodeError
	if err := db.Append(context.Background(), e); !errors.As(err, &te) || te.SettlementID == "" {
		t.Fatalf("C0 again: %v", err)
	}
}

func TestTraceFilter(t *testing.T) {
	f := newKeyFilter(1000)
	for i := 0; i < 100_000; i++ {
		f.addString(fmt.Sprintf("8%019d", i))
	}
	for i := 0; i < 100_000; i++ {
		if !f.mayContain(fmt.Sprintf("8%019d", i)) {
			t.Fatalf("code %d added but not found", i)
		}
	}
	fp := 0
	for i := 0; i < 100_000; i++ {
		if f.mayContain(fmt.Sprintf("9%019d", i)) {
			fp++
		}
	}
	if fp > 2000 {
		t.Fatalf("%d false positives in 100,000", fp)
	}
}

// TestKeyFilterAtCapacity: filled with the number of keys it was sized
// for, the blocked filter still answers a false positive for well under
// 1 % of new keys, and never a false negative.
func TestKeyFilterAtCapacity(t *testing.T) {
	const n = 1 << 20
	f := newKeyFilter(n)
	key := func(prefix byte, i int) []byte {
		return strconv.AppendInt([]byte{prefix}, int64(i)*7919, 10)
	}
	for i := 0; i < n; i++ {
		f.add(key('a', i))
	}
	fp := filterMisses(t, f, n, key)
	if rate := float64(fp) / n; rate > 0.003 {
		t.Fatalf("false-positive rate %.4f at capacity, want < 0.3 %%", rate)
	} else {
		t.Logf("false-positive rate at capacity: %.4f %%", 100*rate)
	}
}

// filterMisses checks that f has the keys 'a' 0..n-1 and returns how many
// of the keys 'b' 0..n-1, never added, it answers "maybe" for.
func filterMisses(t *testing.T, f *keyFilter, n int, key func(byte, int) []byte) (fp int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if !f.mayContainBytes(key('a', i)) {
			t.Fatalf("key %d added but not found", i)
		}
	}
	for i := 0; i < n; i++ {
		if f.mayContainBytes(key('b', i)) {
			fp++
		}
	}
	return fp
}

// TestKeyFilterGrows: filled with 200 times the keys its first link was
// sized for, by eight goroutines while others look keys up, the filter has
// grown links, finds every key added, and keeps its false-positive rate
// near 0.1 % a full link (without growth it would answer "maybe" for
// nearly every key).
func TestKeyFilterGrows(t *testing.T) {
	const first, n, writers = 4096, 200 * 4096, 8
	f := newKeyFilterOf(first)
	key := func(prefix byte, i int) []byte {
		return strconv.AppendInt([]byte{prefix}, int64(i)*7919, 10)
	}
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += writers {
				f.add(key('a', i))
				if !f.mayContainBytes(key('a', i)) {
					t.Errorf("key %d not found right after its add", i)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := g; i < n; i += writers {
				f.mayContainBytes(key('b', i))
			}
		}()
	}
	wg.Wait()
	links := f.state.Load().links
	// Capacities 1, 2, 6, 18, 54 and 162 × first: six links, or seven
	// if the last is three quarters full (links are added concurrently).
	if len(links) < 6 || len(links) > 7 {
		t.Errorf("%d links after %d keys, want 6 or 7", len(links), n)
	}
	fp := filterMisses(t, f, n, key)
	if rate := float64(fp) / n; rate > 0.008 {
		t.Fatalf("false-positive rate %.4f with %d links, want < 0.8 %%", rate, len(links))
	} else {
		t.Logf("false-positive rate with %d links: %.4f %%", len(links), 100*rate)
	}
}

// TestKeyFilterCountsKeysOnce: a key added again and again (a person's
// counters key, by every settlement) counts once and grows nothing.
func TestKeyFilterCountsKeysOnce(t *testing.T) {
	f := newKeyFilterOf(1000)
	for i := 0; i < 10_000; i++ {
		f.add([]byte("152500/P1/2026"))
	}
	if st := f.state.Load(); len(st.links) != 1 || st.keys() != 1 {
		t.Fatalf("%d links, %d keys after one key added 10,000 times", len(st.links), st.keys())
	}
}

// TestTraceCodeAfterRestart: the filter is rebuilt from the store, so a
// settled code is still refused after a restart.
func TestTraceCodeAfterRestart(t *testing.T) {
	fs := memFS()
	db, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	db.PutPersons([]Person{person("P1", 0)})
	mustAppend(t, db, settlement("a", "P1", 20261109, nil, 0, "CODE-1"))
	db.Close()
	db, err = Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var te *TraceCodeError
	if err := db.Append(context.Background(), settlement("b", "P1", 20261109, nil, 0, "CODE-1")); !errors.As(err, &te) || te.SettlementID == "" {
		t.Fatalf("reused code after restart: %v", err)
	}
}

// A link that a rebuild filled past three quarters before it was swapped
// in (adds to a rebuild's state are not counted against its growth) is
// still extended in the background, not only once it is full, on the
// writer's time.
func TestKeyFilterExtendsRebuiltLink(t *testing.T) {
	const capacity = 4096
	f := newKeyFilterOf(capacity)
	next := f.beginRebuild(capacity)
	if next == nil {
		t.Fatal("beginRebuild = nil")
	}
	for i := 0; i < capacity*7/8; i++ {
		f.add(strconv.AppendInt([]byte("a"), int64(i), 10))
	}
	f.endRebuild(next, true)
	if n := len(f.state.Load().links); n != 1 {
		t.Fatalf("after the swap: %d links, want 1", n)
	}
	f.add([]byte("one more"))
	deadline := time.Now().Add(5 * time.Second)
	for len(f.state.Load().links) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no new link 5 s after an add to a link %d/%d full", next.links[0].n.Load(), capacity)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeyFilterEach: the batched forms (addEach, mayContainEach,
// mayContainThenAdd) never lose a key, mayContainEach answers as
// mayContain does, key by key, and mayContainThenAdd as mayContainEach
// before it, across a filter grown to several links, for batches of every
// size from 0 to filterBatch; addEach takes more keys than a batch.
func TestKeyFilterEach(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const first = 4096
	f := newKeyFilterOf(first)
	isAdded := map[string]struct{}{}
	var added []string
	key := func() string { return fmt.Sprintf("XD%018d", r.Uint64()%1e18) }
	for len(added) < 40*first {
		keys := make([]string, r.IntN(3*filterBatch))
		for i := range keys {
			keys[i] = key()
			isAdded[keys[i]] = struct{}{}
		}
		if r.IntN(2) == 0 || len(keys) > filterBatch {
			f.addEach(keys)
		} else {
			before := f.mayContainEach(keys)
			if got := f.mayContainThenAdd(keys); got != before {
				t.Fatalf("mayContainThenAdd answered %b, mayContainEach before it %b", got, before)
			}
		}
		added = append(added, keys...)
	}
	if n := len(f.state.Load().links); n < 3 {
		t.Fatalf("%d links after %d keys, want ≥ 3", n, len(added))
	}
	var fp, tried int
	for tried < 50_000 {
		keys := make([]string, r.IntN(filterBatch+1))
		for i := range keys {
			if r.IntN(2) == 0 {
				keys[i] = added[r.IntN(len(added))]
			} else {
				keys[i] = key()
			}
		}
		maybe := f.mayContainEach(keys)
		for i, k := range keys {
			got := maybe&(1<<i) != 0
			if got != f.mayContain(k) {
				t.Fatalf("key %q: mayContainEach %v, mayContain %v", k, got, !got)
			}
			_, ok := isAdded[k]
			if ok && !got {
				t.Fatalf("key %q added but not found", k)
			}
			if got && !ok {
				fp++
			}
		}
		if maybe>>len(keys) != 0 && len(keys) < filterBatch {
			t.Fatalf("bits beyond the %d keys set: %b", len(keys), maybe)
		}
		tried += len(keys)
	}
	if fp > tried/100 {
		t.Fatalf("%d false positives in %d lookups", fp, tried)
	}
}

// Compactions reports the store's level 0 once a flush put a table there,
// and nothing once the ledger is closed.
func TestCompactionsState(t *testing.T) {
	db, _ := openMem(t)
	for i := 0; i < 20; i++ {
		mustAppend(t, db, settlement(req(i), "P1", 20261109, nil, 0))
	}
	if err := db.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := db.Compactions(); c.L0Tables < 1 {
		t.Fatalf("after a flush: %+v, want a table in level 0", c)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if c := db.Compactions(); c != (Compactions{}) {
		t.Fatalf("closed: %+v", c)
	}
}
