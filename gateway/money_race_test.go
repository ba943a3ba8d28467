package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/ledger"
)

// The tests of this file settle, quote and reverse bills of the same person
// at once and check the ledger against a sequential replay in commit order
// (checkCommitOrder): whatever the interleaving, every settlement must have
// been computed on the counters and balance left by every entry committed
// before it, as one request at a time would have.

// personYear keys the counters of one person's year.
type personYear struct {
	region, person string
	year           int32
}

// checkCommitOrder replays the ledger in commit order (opening balances
// and credits included) and checks, for every settlement: the counters and the balance
// its policy saw are those the entries before it left; the policy, run
// again on that input, gives exactly the recorded amounts and changes; no
// counter and no balance is ever negative. Reversals give back what their
// settlement took, in its year. The stored counters and balances must be
// the replay's end state, and the ledger must audit clean.
func checkCommitOrder(t *testing.T, h *harness) {
	t.Helper()
	counters := map[personYear]map[string]int64{}
	// Every balance starts at 0: opening balances and credits are entries
	// of the chain too.
	balance := map[[2]string]int64{}
	ctx := context.Background()
	n := 0
	err := h.db.Scan(1, func(e *ledger.Entry) error {
		n++
		py := personYear{e.InsuredRegion, e.PersonID, e.Date.Year()}
		pk := [2]string{e.InsuredRegion, e.PersonID}
		if e.Kind == ledger.KindSettlement {
			var in abi.Input
			if err := in.Decode(e.Input); err != nil {
				return fmt.Errorf("seq %d: input: %v", e.Seq, err)
			}
			var want []abi.Counter
			for name, v := range counters[py] {
				if v != 0 {
					want = append(want, abi.Counter{Name: name, Value: v})
				}
			}
			slices.SortFunc(want, func(a, b abi.Counter) int { return strings.Compare(a.Name, b.Name) })
			if fmt.Sprint(in.Counters) != fmt.Sprint(want) {
				return fmt.Errorf("seq %d (%s %s): computed on counters %v, but the entries before it leave %v",
					e.Seq, e.RequestID, e.PersonID, in.Counters, want)
			}
			if in.Person.AccountBalance != balance[pk] {
				return fmt.Errorf("seq %d (%s): computed on balance %d, but the entries before it leave %d",
					e.Seq, e.RequestID, in.Person.AccountBalance, balance[pk])
			}
			pol, ok := h.policies.Lookup(e.InsuredRegion, e.Date)
			if !ok || pol.Name != e.PolicyVersion {
				return fmt.Errorf("seq %d: policy %s/%s not found", e.Seq, e.InsuredRegion, e.PolicyVersion)
			}
			var out abi.Output
			if err := pol.Module.Call(ctx, &in, e.Input, &out); err != nil {
				return fmt.Errorf("seq %d: policy call: %v", e.Seq, err)
			}
			a := e.Amounts
			if out.Deductible != a.Deductible || out.Basic != a.BasicFund || out.Serious != a.SeriousIllness ||
				out.Assistance != a.MedicalAssistance || out.Account != a.PersonalAccount || -out.Account != e.BalanceChange ||
				fmt.Sprint(out.Changes) != fmt.Sprint(e.Changes) {
				return fmt.Errorf("seq %d (%s): recorded %+v changes %v, the policy gives %+v", e.Seq, e.RequestID, a, e.Changes, out)
			}
		}
		if counters[py] == nil {
			counters[py] = map[string]int64{}
		}
		for _, c := range e.Changes {
			counters[py][c.Name] += c.Value
			if counters[py][c.Name] < 0 {
				return fmt.Errorf("seq %d: counter %s of %v goes negative", e.Seq, c.Name, py)
			}
		}
		balance[pk] += e.BalanceChange
		if balance[pk] < 0 {
			return fmt.Errorf("seq %d: balance of %v goes negative: %d", e.Seq, pk, balance[pk])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for py, cs := range counters {
		got, err := h.db.Counters(py.region, py.person, py.year, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{}
		for k, v := range cs {
			if v != 0 {
				want[k] = v
			}
		}
		gotm := map[string]int64{}
		for _, c := range got {
			gotm[c.Name] = c.Value
		}
		if fmt.Sprint(gotm) != fmt.Sprint(want) {
			t.Fatalf("stored counters of %v: %v, replay %v", py, gotm, want)
		}
	}
	for pk, want := range balance {
		if got, _ := h.db.Balance(pk[0], pk[1]); got != want {
			t.Fatalf("stored balance of %v: %d, replay %d", pk, got, want)
		}
	}
	rep, err := h.db.Audit(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("nothing was settled")
	}
}

// openingBalances reads the balances of persons before a test's load.
func openingBalances(t *testing.T, h *harness, persons ...[2]string) map[[2]string]int64 {
	t.Helper()
	m := map[[2]string]int64{}
	for _, p := range persons {
		b, err := h.db.Balance(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		m[p] = b
	}
	return m
}

// raceCall is one request of a concurrent round.
type raceCall struct {
	path, token string
	body        []byte
	status      int
	answer      answer
	raw         []byte
}

// fire sends all calls at once and waits for their answers.
func fire(h *harness, calls []*raceCall) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c.status, c.raw = h.do("POST", c.path, c.token, c.body)
			json.Unmarshal(c.raw, &c.answer)
		}()
	}
	close(start)
	wg.Wait()
}

// smallBalance is an active employee of 371600 with little in the account.
const smallBalance = `{"id":"EMPS","scheme":"employee","employment":"active","groups":[],"conditions":[],"registration":"long_term","account_balance":"150.00","enrolled_on":"2010-01-01","in_concentrated_period":true}`

// TestRaceSamePersonNearCaps settles 50 bills of one employee at once from
// three hospitals: inpatient stays large enough to exhaust the 200,000
// yearly cap, chronic visits against the 700 yearly deductible, outpatient
// visits against their own cap, all paying from a 150.00 account, across a
// year boundary (2024-12-31 / 2025-01-01), with quotes of the same person
// in between. The ledger must equal a sequential replay in commit order:
// the basic fund within the cap, each year's deductible paid once, the
// balance never below zero, and every answer what the policy gives at its
// place.
func TestRaceSamePersonNearCaps(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {smallBalance}}))
	opening := openingBalances(t, h, [2]string{"371600", "EMPS"})
	base := h.head() // the opening balances' entries
	hospitals := []string{"H3716020001", "H3716210001", "H3701020001"}
	var calls []*raceCall
	for i := 0; i < 50; i++ {
		year := 2024 + i%2
		day := fmt.Sprintf("%d-12-31", year)
		if year == 2025 {
			day = "2025-01-01"
		}
		var visit string
		price := 1000 + 37*i
		switch i % 5 {
		case 0, 1:
			visit = fmt.Sprintf(`{"type":"inpatient","admitted_on":"2024-12-01","discharged_on":%q}`, day)
			price = 60000 + 101*i
		case 2, 3:
			visit = fmt.Sprintf(`{"type":"chronic","visit_date":%q}`, day)
		default:
			visit = fmt.Sprintf(`{"type":"outpatient","visit_date":%q}`, day)
		}
		items := fmt.Sprintf(`[{"code":"XA01","unit_price":"%d.00","quantity":"1","amount":"%d.00"}]`, price, price)
		calls = append(calls, &raceCall{path: "/v1/settlements", token: "tok-" + hospitals[i%3],
			body: settleBody(fmt.Sprintf("CAP-%d", i), "EMPS", "371600", visit, items)})
		if i%10 == 0 {
			calls = append(calls, &raceCall{path: "/v1/settlements/quote", token: "tok-" + hospitals[i%3],
				body: settleBody(fmt.Sprintf("Q-%d", i), "EMPS", "371600", visit, items)})
		}
	}
	fire(h, calls)
	settled := 0
	for _, c := range calls {
		if c.status != 200 {
			t.Fatalf("%s: %d %s", c.path, c.status, c.raw)
		}
		if c.path == "/v1/settlements" {
			settled++
		}
	}
	if h.head() != base+uint64(settled) {
		t.Fatalf("head %d after %d settlements (quotes must write nothing)", h.head(), settled)
	}
	checkCommitOrder(t, h)

	// The answers are the ledger's, and the yearly limits hold.
	basic := map[int32]int64{}
	chronicDed := map[int32]int64{}
	var account int64
	for _, c := range calls {
		if c.path != "/v1/settlements" {
			continue
		}
		e, ok, err := h.db.EntryByID(c.answer.SettlementID)
		if err != nil || !ok {
			t.Fatalf("answered %s not in the ledger: %v", c.answer.SettlementID, err)
		}
		for k, v := range map[string]int64{"basic_fund": e.Amounts.BasicFund, "deductible": e.Amounts.Deductible,
			"personal_account": e.Amounts.PersonalAccount, "cash": e.Amounts.Cash} {
			if fen(t, c.answer.Amounts[k]) != v {
				t.Fatalf("%s answered %s %s, the ledger has %d", e.RequestID, k, c.answer.Amounts[k], v)
			}
		}
		if e.VisitType != abi.VisitOutpatient {
			basic[e.Date.Year()] += e.Amounts.BasicFund
		}
		if e.VisitType == abi.VisitChronic {
			chronicDed[e.Date.Year()] += e.Amounts.Deductible
		}
		account += e.Amounts.PersonalAccount
	}
	for y, b := range basic {
		if b > 200000_00 {
			t.Errorf("%d: basic fund %d over the 200,000 cap", y, b)
		}
		if b != 200000_00 {
			t.Errorf("%d: basic fund %d, the bills exhaust the cap", y, b)
		}
	}
	for y, d := range chronicDed {
		if d != 700_00 {
			t.Errorf("%d: chronic deductible paid %d, want 700.00 once", y, d)
		}
	}
	if account != opening[[2]string{"371600", "EMPS"}] {
		t.Errorf("account paid %d, the opening balance is %d", account, opening[[2]string{"371600", "EMPS"}])
	}
}

// TestRaceSettleAndReverse reverses settlements of one person while new
// settlements of the same person (which rely on the cap, deductible and
// balance the reversals give back) and quotes run at once, in both years
// of a year boundary. The ledger must equal a sequential replay.
func TestRaceSettleAndReverse(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {smallBalance, resident}}))
	rng := rand.New(rand.NewSource(1))
	bill := func(i int, person string) []byte {
		year := 2024 + rng.Intn(2)
		var visit string
		price := 500 + rng.Intn(3000)
		switch rng.Intn(3) {
		case 0:
			visit = fmt.Sprintf(`{"type":"inpatient","admitted_on":"%d-06-01","discharged_on":"%d-06-10"}`, year, year)
			price = 40000 + rng.Intn(60000)
		case 1:
			visit = fmt.Sprintf(`{"type":"chronic","visit_date":"%d-06-10"}`, year)
		default:
			visit = fmt.Sprintf(`{"type":"outpatient","visit_date":"%d-06-10"}`, year)
		}
		items := fmt.Sprintf(`[{"code":"XA01","unit_price":"%d.00","quantity":"1","amount":"%d.00"}]`, price, price)
		return settleBody(fmt.Sprintf("SR-%d", i), person, "371600", visit, items)
	}
	hospitals := []string{"H3716020001", "H3716210001", "H3701020001"}
	type settled struct{ id, token string }
	var open []settled
	next := 0
	for round := 0; round < 4; round++ {
		var calls []*raceCall
		// Reverse up to half of the open settlements…
		rng.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
		k := len(open) / 2
		for _, s := range open[:k] {
			calls = append(calls, &raceCall{path: "/v1/settlements/" + s.id + "/reversal", token: s.token,
				body: []byte(fmt.Sprintf(`{"request_id":"RV-%s","reason":"race"}`, s.id))})
		}
		open = open[k:]
		// …while new ones and quotes of the same persons run.
		for i := 0; i < 16; i++ {
			person := []string{"EMPS", "RES1"}[i%2]
			tok := "tok-" + hospitals[rng.Intn(len(hospitals))]
			b := bill(next, person)
			next++
			calls = append(calls, &raceCall{path: "/v1/settlements", token: tok, body: b})
			if i%4 == 0 {
				calls = append(calls, &raceCall{path: "/v1/settlements/quote", token: tok, body: b})
			}
		}
		fire(h, calls)
		for _, c := range calls {
			if c.status != 200 {
				t.Fatalf("round %d: %s: %d %s", round, c.path, c.status, c.raw)
			}
			if c.path == "/v1/settlements" {
				open = append(open, settled{c.answer.SettlementID, c.token})
			}
		}
	}
	checkCommitOrder(t, h)
}

// TestRaceIdempotentCopies sends one settlement 20 times at once, each
// round with another request id: exactly one entry, every answer the same
// bytes but for "replayed", and exactly one not a replay.
func TestRaceIdempotentCopies(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {smallBalance}}))
	items := `[{"code":"XA01","unit_price":"900.00","quantity":"1","amount":"900.00","trace_codes":["TCI-%d"]}]`
	for round := 0; round < 5; round++ {
		head := h.head()
		body := settleBody(fmt.Sprintf("IDEM-%d", round), "EMPS", "371600", chronicVisit, fmt.Sprintf(items, round))
		calls := make([]*raceCall, 20)
		for i := range calls {
			calls[i] = &raceCall{path: "/v1/settlements", token: "tok-H3716020001", body: body}
		}
		fire(h, calls)
		first := 0
		var canon string
		for _, c := range calls {
			if c.status != 200 {
				t.Fatalf("round %d: %d %s", round, c.status, c.raw)
			}
			if !c.answer.Replayed {
				first++
			}
			s := strings.Replace(string(c.raw), `"replayed":true`, `"replayed":false`, 1)
			if canon == "" {
				canon = s
			} else if s != canon {
				t.Fatalf("round %d: answers differ:\n%s\n%s", round, canon, s)
			}
		}
		if first != 1 || h.head() != head+1 {
			t.Fatalf("round %d: %d first answers, head moved by %d", round, first, h.head()-head)
		}
	}
}

// TestRaceIdempotencyConflict sends, at once, copies of two different
// bodies under one request id (one of them for another person, so that
// the person locks do not order them): one body wins, its copies all get
// its answer, the other body's copies all get 409, and one entry is
// written.
func TestRaceIdempotencyConflict(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {smallBalance, empActive}}))
	for round := 0; round < 10; round++ {
		head := h.head()
		id := fmt.Sprintf("IC-%d", round)
		bodies := [][]byte{
			settleBody(id, "EMPS", "371600", chronicVisit, oneLine),
			settleBody(id, []string{"EMP1", "EMPS"}[round%2], "371600", `{"type":"outpatient","visit_date":"2025-06-02"}`, oneLine),
		}
		var calls []*raceCall
		for i := 0; i < 10; i++ {
			calls = append(calls, &raceCall{path: "/v1/settlements", token: "tok-H3716020001", body: bodies[i%2]})
		}
		fire(h, calls)
		winner := -1
		var winID string
		for i, c := range calls {
			if c.status == 200 {
				if winner == -1 {
					winner, winID = i%2, c.answer.SettlementID
				}
				if i%2 != winner || c.answer.SettlementID != winID {
					t.Fatalf("round %d: both bodies answered 200 (%s)", round, c.raw)
				}
			}
		}
		for i, c := range calls {
			switch {
			case i%2 == winner && c.status != 200:
				t.Fatalf("round %d: a copy of the winning body: %d %s", round, c.status, c.raw)
			case i%2 != winner && (c.status != 409 || c.answer.Error == nil || c.answer.Error.Code != "idempotency_conflict"):
				t.Fatalf("round %d: the losing body: %d %s", round, c.status, c.raw)
			}
		}
		if h.head() != head+1 {
			t.Fatalf("round %d: head moved by %d", round, h.head()-head)
		}
	}
}

// TestRaceTraceCodes: the same trace code in two settlements (of two
// persons, from two hospitals) at once: exactly one is settled, the other
// refused 409 trace_code_reused, and a quote carrying it is refused once
// it is settled. Then the code's reversal races with a new settlement
// reusing it: that settlement succeeds only if it commits after the
// reversal, and the code is never held twice.
func TestRaceTraceCodes(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {smallBalance, empActive}}))
	items := `[{"code":"XA01","unit_price":"50.00","quantity":"1","amount":"50.00","trace_codes":[%q]}]`
	n := 0
	body := func(person, code string) []byte {
		n++
		return settleBody(fmt.Sprintf("TC-%d", n), person, "371600", chronicVisit, fmt.Sprintf(items, code))
	}
	for round := 0; round < 10; round++ {
		code := fmt.Sprintf("8390000000000%07d", round)
		head := h.head()
		calls := []*raceCall{
			{path: "/v1/settlements", token: "tok-H3716020001", body: body("EMPS", code)},
			{path: "/v1/settlements", token: "tok-H3716210001", body: body("EMP1", code)},
		}
		fire(h, calls)
		var won *raceCall
		for _, c := range calls {
			switch {
			case c.status == 200 && won == nil:
				won = c
			case c.status == 409 && c.answer.Error != nil && c.answer.Error.Code == "trace_code_reused":
			default:
				t.Fatalf("round %d: %d %s", round, c.status, c.raw)
			}
		}
		if won == nil || h.head() != head+1 {
			t.Fatalf("round %d: no winner or head moved by %d", round, h.head()-head)
		}
		if status, raw := h.do("POST", "/v1/settlements/quote", "tok-H3716210001", body("EMP1", code)); status != 409 {
			t.Fatalf("round %d: quote with a settled code: %d %s", round, status, raw)
		}

		// The reversal races with a settlement reusing the code.
		calls = []*raceCall{
			{path: "/v1/settlements/" + won.answer.SettlementID + "/reversal", token: won.token,
				body: []byte(fmt.Sprintf(`{"request_id":"TCR-%d"}`, round))},
			{path: "/v1/settlements", token: "tok-H3701020001", body: body("EMP1", code)},
		}
		fire(h, calls)
		rev, again := calls[0], calls[1]
		if rev.status != 200 {
			t.Fatalf("round %d: reversal: %d %s", round, rev.status, rev.raw)
		}
		switch again.status {
		case 200:
			if again.answer.Seq < rev.answer.Seq {
				t.Fatalf("round %d: the code was settled again (seq %d) before its reversal (seq %d)", round, again.answer.Seq, rev.answer.Seq)
			}
		case 409:
			if again.answer.Error == nil || again.answer.Error.Code != "trace_code_reused" {
				t.Fatalf("round %d: %s", round, again.raw)
			}
			// Free now: it settles.
			if status, raw := h.do("POST", "/v1/settlements", "tok-H3701020001", body("EMP1", code)); status != 200 {
				t.Fatalf("round %d: the code after its reversal: %d %s", round, status, raw)
			}
		default:
			t.Fatalf("round %d: %d %s", round, again.status, again.raw)
		}
	}
	rep, err := h.db.Audit(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
}

// syncGate holds the WAL's syncs while closed, and fails them while fail
// is set.
type syncGate struct {
	mu      sync.Mutex
	hold    chan struct{}
	blocked chan struct{}
	fail    atomic.Bool
}

func (g *syncGate) injector() errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		default:
			return nil
		}
		g.mu.Lock()
		hold := g.hold
		g.mu.Unlock()
		if hold != nil {
			select {
			case g.blocked <- struct{}{}:
			default:
			}
			<-hold
		}
		if g.fail.Load() {
			return errorfs.ErrInjected
		}
		return nil
	})
}

// TestRaceRetryWaitsForSync: while a settlement's WAL sync is held, a retry
// of it (same request id, same body) and a reuse of its request id with
// another body (for another person: no lock in common) are not answered, although Pebble already shows the write;
// once the sync is done both are answered from it. When the sync fails
// instead, no copy is answered 200: nothing was durably settled.
func TestRaceRetryWaitsForSync(t *testing.T) {
	for _, failSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", failSync), func(t *testing.T) {
			g := &syncGate{blocked: make(chan struct{}, 1)}
			h := &harness{tb: t, fs: errorfs.Wrap(vfs.NewMem(), g.injector()), dir: "ledger", policies: &engine.Policies{},
				world: refWorld(t, map[string][]string{"371600": {smallBalance, empActive}})}
			h.versions = referenceVersions(t, h.policies)
			h.start()
			t.Cleanup(h.stopAfterFailure)
			hold := make(chan struct{})
			g.mu.Lock()
			g.hold = hold
			g.mu.Unlock()

			body := settleBody("SYNC-1", "EMPS", "371600", chronicVisit, oneLine)
			first := &raceCall{path: "/v1/settlements", token: "tok-H3716020001", body: body}
			done := make(chan *raceCall, 3)
			send := func(c *raceCall) {
				c.status, c.raw = h.do("POST", c.path, c.token, c.body)
				json.Unmarshal(c.raw, &c.answer)
				done <- c
			}
			go send(first)
			select {
			case <-g.blocked:
			case <-time.After(5 * time.Second):
				t.Fatal("the settlement's sync never started")
			}
			// The write is applied to Pebble (visible to its reads), not
			// yet durable.
			retry := &raceCall{path: "/v1/settlements", token: "tok-H3716020001", body: body}
			other := &raceCall{path: "/v1/settlements", token: "tok-H3716020001",
				body: settleBody("SYNC-1", "EMP1", "371600", `{"type":"outpatient","visit_date":"2025-06-02"}`, oneLine)}
			go send(retry)
			go send(other)
			select {
			case c := <-done:
				t.Fatalf("answered while the sync is held: %d %s", c.status, c.raw)
			case <-time.After(300 * time.Millisecond):
			}
			g.fail.Store(failSync)
			g.mu.Lock()
			g.hold = nil
			g.mu.Unlock()
			close(hold)
			for range 3 {
				<-done
			}
			for _, c := range []*raceCall{first, retry, other} {
				t.Logf("%d %.120s", c.status, c.raw)
			}
			if failSync {
				for _, c := range []*raceCall{first, retry, other} {
					if c.status == 200 || c.status == 409 {
						t.Errorf("after a failed sync: %d %s", c.status, c.raw)
					}
				}
				return
			}
			if first.status != 200 || first.answer.Replayed {
				t.Fatalf("first: %d %s", first.status, first.raw)
			}
			if retry.status != 200 || !retry.answer.Replayed || retry.answer.SettlementID != first.answer.SettlementID {
				t.Fatalf("retry: %d %s", retry.status, retry.raw)
			}
			if other.status != 409 || other.answer.Error == nil || other.answer.Error.Code != "idempotency_conflict" {
				t.Fatalf("other body: %d %s", other.status, other.raw)
			}
		})
	}
}

// TestCrashAnsweredWritesReplay crashes the gateway (keeping none of the
// unsynced data) under a concurrent load of settlements, reversals and
// credits of a few persons, restarts it on what the disk kept, and sends
// every write answered before the crash again: each must be answered as
// a replay of its first answer (the same seq and amounts, the same balance
// for a credit), the retries must write nothing, and the recovered ledger
// must still equal a sequential replay in commit order.
func TestCrashAnsweredWritesReplay(t *testing.T) {
	const credited = `{"id":"EMPC","scheme":"employee","employment":"active","groups":[],"conditions":[],"registration":"long_term","account_balance":"0.00","enrolled_on":"2010-01-01","in_concentrated_period":true}`
	fs := vfs.NewCrashableMem()
	h := &harness{tb: t, fs: fs, dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, map[string][]string{"371600": {smallBalance, empActive, resident, credited}})}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)

	type ack struct {
		path, token string
		body        []byte
		raw         []byte
		a           answer
	}
	var (
		mu    sync.Mutex
		acked []ack
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	hospitals := []string{"H3716020001", "H3716210001", "H3701020001"}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			var mine []ack // own settlements, to reverse
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var c ack
				switch r := rng.Intn(10); {
				case r < 2 && len(mine) > 0:
					k := rng.Intn(len(mine))
					s := mine[k]
					mine = append(mine[:k], mine[k+1:]...)
					c = ack{path: "/v1/settlements/" + s.a.SettlementID + "/reversal", token: s.token,
						body: []byte(fmt.Sprintf(`{"request_id":"CR-%d-%d"}`, w, i))}
				case r < 3:
					c = ack{path: "/v1/regions/371600/persons/EMPC/credits", token: "tok-region-371600",
						body: []byte(fmt.Sprintf(`{"reference":"CC-%d-%d","amount":"%d.00"}`, w, i, 1+rng.Intn(50)))}
				default:
					person := []string{"EMPS", "EMP1", "RES1"}[rng.Intn(3)]
					price := 100 + rng.Intn(40000)
					visit := []string{chronicVisit, `{"type":"outpatient","visit_date":"2025-06-02"}`,
						`{"type":"inpatient","admitted_on":"2025-05-01","discharged_on":"2025-05-09"}`}[rng.Intn(3)]
					items := fmt.Sprintf(`[{"code":"XA01","unit_price":"%d.00","quantity":"1","amount":"%d.00","trace_codes":["CTC-%d-%d"]}]`, price, price, w, i)
					c = ack{path: "/v1/settlements", token: "tok-" + hospitals[rng.Intn(3)],
						body: settleBody(fmt.Sprintf("CS-%d-%d", w, i), person, "371600", visit, items)}
				}
				status, raw, err := h.rawDo("POST", c.path, c.token, c.body)
				if err != nil || status != 200 {
					// After the crash clone nothing matters any more.
					continue
				}
				c.raw = raw
				json.Unmarshal(raw, &c.a)
				mu.Lock()
				acked = append(acked, c)
				mu.Unlock()
				if c.path == "/v1/settlements" {
					mine = append(mine, c)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	before := slices.Clone(acked)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	mu.Unlock()
	close(stop)
	wg.Wait()
	h.stop()
	if len(before) == 0 {
		t.Fatal("nothing was answered before the crash")
	}

	h.fs = crashed
	h.start()
	head := h.head()
	credits := 0
	for _, c := range before {
		status, raw := h.do("POST", c.path, c.token, c.body)
		if strings.HasSuffix(c.path, "/credits") {
			credits++
			var first, again map[string]any
			json.Unmarshal(c.raw, &first)
			json.Unmarshal(raw, &again)
			if status != 200 || again["replayed"] != true || again["balance"] != first["balance"] {
				t.Fatalf("credit answered %s before the crash, after it: %d %s", c.raw, status, raw)
			}
			continue
		}
		a := decodeAnswer(t, raw)
		if status != 200 || !a.Replayed || a.Seq != c.a.Seq || fmt.Sprint(a.Amounts) != fmt.Sprint(c.a.Amounts) {
			t.Fatalf("%s answered %s before the crash, after it: %d %s", c.path, c.raw, status, raw)
		}
	}
	if h.head() != head {
		t.Fatalf("the retries of answered writes moved the head from %d to %d", head, h.head())
	}
	checkCommitOrder(t, h)
	t.Logf("%d writes answered before the crash (%d credits), %d entries recovered", len(before), credits, head)
}

// TestRaceUpsertDuringSettlement: a region's upsert of a person (here:
// active to retired, which raises the chronic ratio) that is answered while
// a settlement of that person is under way must be what the settlement,
// committed after it, computed with. The test holds the person's lock so
// that the settlement waits between reading the registry and computing.
func TestRaceUpsertDuringSettlement(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	mu := h.srv.svc.lockPerson("371600", "EMP1")
	settled := make(chan *raceCall, 1)
	go func() {
		c := &raceCall{path: "/v1/settlements", token: "tok-H3716020001",
			body: settleBody("UP-1", "EMP1", "371600", chronicVisit, oneLine)}
		c.status, c.raw = h.do("POST", c.path, c.token, c.body)
		json.Unmarshal(c.raw, &c.answer)
		settled <- c
	}()
	time.Sleep(100 * time.Millisecond) // the settlement waits for the lock
	upserted := make(chan int, 1)
	go func() {
		retired := strings.Replace(empActive, `"active"`, `"retired"`, 1)
		status, raw := h.do("POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(retired+"\n"))
		if status != 200 {
			t.Errorf("upsert: %d %s", status, raw)
		}
		upserted <- status
	}()
	upsertFirst := false
	select {
	case <-upserted:
		upsertFirst = true // committed before the settlement can commit
	case <-time.After(300 * time.Millisecond):
	}
	mu.Unlock()
	c := <-settled
	if !upsertFirst {
		<-upserted
	}
	if c.status != 200 {
		t.Fatalf("settle: %d %s", c.status, c.raw)
	}
	e, ok, err := h.db.EntryByID(c.answer.SettlementID)
	if err != nil || !ok {
		t.Fatal(err)
	}
	var in abi.Input
	if err := in.Decode(e.Input); err != nil {
		t.Fatal(err)
	}
	if upsertFirst && in.Person.Employment != abi.EmploymentRetired {
		t.Fatalf("the upsert to retired was answered before the settlement committed (seq %d), yet the settlement was computed for an active employee", e.Seq)
	}
}
