package gateway

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// blockingPolicy is a policy of 371600 whose first call signals entered
// and waits for release before answering (nothing paid, nothing counted):
// a settlement held between reading its state and committing.
func blockingPolicy(h *harness) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	pol := engine.NewNative("371600", "vblock", func(in *abi.Input, out *abi.Output) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	h.policies.Put("371600", engine.Version{Name: "vblock", EffectiveFrom: 20250101, Module: pol})
	return entered, release
}

// settleHeldInPolicy starts a settlement of one XA01 line at H3716020001
// under blockingPolicy and returns once it has read the catalog and is in
// its policy; closing release lets it go on, and its answer arrives on
// settled.
func settleHeldInPolicy(t *testing.T, h *harness, requestID string) (settled <-chan *raceCall, release chan struct{}) {
	entered, release := blockingPolicy(h)
	answers := make(chan *raceCall, 1)
	go func() {
		c := &raceCall{path: "/v1/settlements", token: "tok-H3716020001",
			body: settleBody(requestID, "EMP1", "371600", chronicVisit, oneLine)}
		c.status, c.raw = h.do("POST", c.path, c.token, c.body)
		c.answer = decodeAnswer(t, c.raw)
		answers <- c
	}()
	<-entered
	return answers, release
}

// ndjson sends an NDJSON body and returns the status and body.
func (h *harness) ndjson(method, path, token string, body []byte) (int, []byte) {
	h.tb.Helper()
	resp, err := h.roundTrip(method, path, token, "application/x-ndjson", body, 10*time.Second)
	if err != nil {
		h.tb.Errorf("%s %s: %v", method, path, err)
		return 0, []byte(err.Error())
	}
	defer fasthttp.ReleaseResponse(resp)
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

// TestR9CatalogChangeAnsweredIsSeenBySettlementsCommittedAfter: a region's
// catalog change answered while a settlement of one of its hospitals was
// being computed must not be followed by that settlement committing with
// the catalog it replaced, as a persons upsert (TestRaceUpsertDuringSettlement)
// and a rollback (TestWithdrawWaitsForSettlementsInFlight) are not. Here
// the region delists XA01 (class A to C) while a bill of XA01 is in its
// policy: answered first, the bill then settled the drug as class A.
func TestR9CatalogChangeAnsweredIsSeenBySettlementsCommittedAfter(t *testing.T) {
	for _, method := range []string{"POST", "PUT"} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
			settled, release := settleHeldInPolicy(t, h, "CAT-1")
			changed := make(chan int, 1)
			go func() {
				status, raw := h.ndjson(method, "/v1/regions/371602/catalog", "tok-region-371600", []byte(`{"code":"XA01","class":"C"}`+"\n"))
				if status != 200 {
					t.Errorf("catalog: %d %s", status, raw)
				}
				changed <- status
			}()
			changeFirst := false
			select {
			case <-changed:
				changeFirst = true
			case <-time.After(300 * time.Millisecond):
			}
			close(release)
			c := <-settled
			if !changeFirst {
				<-changed
			}
			if c.status != 200 {
				t.Fatalf("settle: %d %s", c.status, c.raw)
			}
			if class := c.answer.Lines[0]["class"]; changeFirst && class != "C" {
				t.Fatalf("the catalog change making XA01 class C was answered before the settlement committed (seq %d), yet the settlement counted it as class %v", c.answer.Seq, class)
			}
			// The next bill sees the change.
			status, raw := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("CAT-2", "EMP1", "371600", chronicVisit, oneLine))
			if a := decodeAnswer(t, raw); status != 200 || a.Lines[0]["class"] != "C" {
				t.Fatalf("a bill after the change: %d %s", status, raw)
			}
		})
	}
}

// TestR9TraceCodeRefusalWaitsForItsOwnersSync: a settlement whose trace
// code is held by another settlement applied to Pebble but not yet synced
// was refused 409 trace_code_reused at once, from a write that may never
// reach the disk; when that sync then failed (its own settlement answered
// 503), the refusal stood for a code nobody had settled, and the hospital,
// told the box was settled, had no reason to send the bill again. The
// refusal now waits for the owner to be durable: 409 once it is, 503
// ledger_unavailable if its write fails (as for a retry or a reused
// request id, TestRaceRetryWaitsForSync).
func TestR9TraceCodeRefusalWaitsForItsOwnersSync(t *testing.T) {
	for _, failSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", failSync), func(t *testing.T) {
			g := &syncGate{blocked: make(chan struct{}, 1)}
			h := &harness{tb: t, fs: errorfs.Wrap(vfs.NewMem(), g.injector()), dir: "ledger", policies: &engine.Policies{},
				world: refWorld(t, map[string][]string{"371600": {smallBalance, empActive}})}
			h.versions = referenceVersions(t, h.policies)
			h.start()
			t.Cleanup(h.stopAfterFailure)
			g.mu.Lock()
			hold := make(chan struct{})
			g.hold = hold
			g.mu.Unlock()

			items := `[{"code":"XA01","unit_price":"50.00","quantity":"1","amount":"50.00","trace_codes":["83900000000009990001"]}]`
			first := &raceCall{path: "/v1/settlements", token: "tok-H3716020001", body: settleBody("TCS-1", "EMPS", "371600", chronicVisit, items)}
			other := &raceCall{path: "/v1/settlements", token: "tok-H3716210001", body: settleBody("TCS-2", "EMP1", "371600", chronicVisit, items)}
			done := make(chan *raceCall, 2)
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
			// first is applied (its code visible in Pebble), not durable.
			go send(other)
			var early *raceCall
			select {
			case early = <-done:
			case <-time.After(300 * time.Millisecond):
			}
			g.fail.Store(failSync)
			g.mu.Lock()
			g.hold = nil
			g.mu.Unlock()
			close(hold)
			for n := 0; n < 2; n++ {
				if early != nil && n == 0 {
					continue
				}
				<-done
			}
			if early != nil && failSync {
				t.Fatalf("answered while its code's owner was not durable, which then failed: %d %s (the first: %d %s)",
					other.status, other.raw, first.status, first.raw)
			}
			if failSync {
				if first.status != 503 {
					t.Fatalf("first, its sync failed: %d %s", first.status, first.raw)
				}
				if other.status != 503 || other.answer.Error == nil || other.answer.Error.Code != "ledger_unavailable" {
					t.Fatalf("the bill reusing the code of a settlement whose write failed: %d %s, want 503 ledger_unavailable", other.status, other.raw)
				}
				return
			}
			if first.status != 200 {
				t.Fatalf("first: %d %s", first.status, first.raw)
			}
			if other.status != 409 || other.answer.Error == nil || other.answer.Error.Code != "trace_code_reused" {
				t.Fatalf("the bill reusing the code: %d %s, want 409 trace_code_reused", other.status, other.raw)
			}
		})
	}
}

// r9Call is one request of the mixed stress test and its answer.
type r9Call struct {
	kind         string // settle, retry, conflict, reverse, reverse-retry, quote, credit, catalog, persons
	hospital     string
	requestID    string
	body         []byte
	settlementID string // reverse: the settlement reversed
	status       int
	answer       answer
	raw          []byte
}

// TestR9RaceMixedStress runs settlements, identical retries, request ids
// reused with another body, reversals (and two at once of one
// settlement), quotes, credits and region catalog and persons changes of
// the same few persons from several connections at once, trace codes
// drawn from a small pool so that bills collide. Then: every answer is
// one the API allows for its kind; every settlement answered 200 is in the
// ledger exactly once, as answered, and every replay names it; no request
// id holds two entries; no settlement is reversed twice; no trace code is
// held by two settlements standing; nothing is in the ledger that was not
// answered 200; and the ledger equals a sequential replay in commit order
// and audits clean. MEDGATE_R9_STRESS=N runs N rounds (default 2).
func TestR9RaceMixedStress(t *testing.T) {
	rounds := 2
	if v := os.Getenv("MEDGATE_R9_STRESS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MEDGATE_R9_STRESS=%q", v)
		}
		rounds = n
	}
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {smallBalance, empActive, resident}}))
	persons := []string{"EMPS", "EMP1", "RES1"}
	hospitals := []string{"H3716020001", "H3716210001", "H3701020001"}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var (
		mu      sync.Mutex
		settled []*r9Call // answered 200, first or replayed
		all     []*r9Call
	)
	n := 0
	newSettle := func() *r9Call {
		n++
		p := persons[rng.Intn(len(persons))]
		year := 2024 + rng.Intn(2)
		var visit string
		price := 100 + rng.Intn(3000)
		switch rng.Intn(3) {
		case 0:
			visit = fmt.Sprintf(`{"type":"inpatient","admitted_on":"%d-06-01","discharged_on":"%d-06-10"}`, year, year)
			price = 20000 + rng.Intn(60000)
		case 1:
			visit = fmt.Sprintf(`{"type":"chronic","visit_date":"%d-06-10"}`, year)
		default:
			visit = fmt.Sprintf(`{"type":"outpatient","visit_date":"%d-06-10"}`, year)
		}
		code := []string{"XA01", "XB01", "XA02"}[rng.Intn(3)]
		trace := ""
		if rng.Intn(2) == 0 {
			trace = fmt.Sprintf(`,"trace_codes":["R9TC%02d"]`, rng.Intn(12))
		}
		items := fmt.Sprintf(`[{"code":%q,"unit_price":"%d.00","quantity":"1","amount":"%d.00"%s}]`, code, price, price, trace)
		id := fmt.Sprintf("R9-%d", n)
		return &r9Call{kind: "settle", hospital: hospitals[rng.Intn(len(hospitals))], requestID: id, body: settleBody(id, p, "371600", visit, items)}
	}
	for round := 0; round < rounds; round++ {
		var calls []*r9Call
		for i := 0; i < 24; i++ {
			calls = append(calls, newSettle())
		}
		mu.Lock()
		for i := 0; i < 8 && len(settled) > 0; i++ {
			s := settled[rng.Intn(len(settled))]
			// The same settlement again, and its request id with another body.
			calls = append(calls, &r9Call{kind: "retry", hospital: s.hospital, requestID: s.requestID, body: s.body})
			other := newSettle()
			calls = append(calls, &r9Call{kind: "conflict", hospital: s.hospital, requestID: s.requestID,
				body: bytes.Replace(other.body, []byte(other.requestID), []byte(s.requestID), 1)})
			// Two reversals at once, under two request ids, and one of them twice.
			rid := fmt.Sprintf("R9RV-%d-%d", round, i)
			rev := []byte(fmt.Sprintf(`{"request_id":%q,"reason":"r9"}`, rid))
			for _, b := range [][]byte{rev, rev, []byte(fmt.Sprintf(`{"request_id":"%s-b","reason":"r9"}`, rid))} {
				calls = append(calls, &r9Call{kind: "reverse", hospital: s.hospital, settlementID: s.answer.SettlementID, body: b})
			}
		}
		mu.Unlock()
		for i := 0; i < 4; i++ {
			q := newSettle()
			q.kind = "quote"
			calls = append(calls, q)
			calls = append(calls, &r9Call{kind: "credit", body: []byte(fmt.Sprintf(`{"reference":"R9CR-%d-%d","amount":"%d.00"}`, round, i, 1+rng.Intn(300))),
				requestID: persons[rng.Intn(len(persons))]})
		}
		calls = append(calls,
			&r9Call{kind: "catalog", body: []byte(fmt.Sprintf(`{"code":"XB01","class":"B","selfpay_prop":"0.%d0"}`+"\n", 1+rng.Intn(5)))},
			&r9Call{kind: "persons", body: []byte(strings.Replace(empActive, `"active"`, []string{`"active"`, `"retired"`}[rng.Intn(2)], 1) + "\n")})
		rng.Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })

		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, c := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				switch c.kind {
				case "settle", "retry", "conflict":
					c.status, c.raw = h.do("POST", "/v1/settlements", "tok-"+c.hospital, c.body)
				case "quote":
					c.status, c.raw = h.do("POST", "/v1/settlements/quote", "tok-"+c.hospital, c.body)
				case "reverse":
					c.status, c.raw = h.do("POST", "/v1/settlements/"+c.settlementID+"/reversal", "tok-"+c.hospital, c.body)
				case "credit":
					c.status, c.raw = h.do("POST", "/v1/regions/371600/persons/"+c.requestID+"/credits", "tok-region-371600", c.body)
				case "catalog":
					c.status, c.raw = h.ndjson("POST", "/v1/regions/371602/catalog", "tok-region-371600", c.body)
				case "persons":
					c.status, c.raw = h.ndjson("POST", "/v1/regions/371600/persons", "tok-region-371600", c.body)
				}
				json.Unmarshal(c.raw, &c.answer)
			}()
		}
		close(start)
		wg.Wait()
		code := func(c *r9Call) string { return c.answer.errorCode() }
		for _, c := range calls {
			ok := false
			switch c.kind {
			case "settle", "quote":
				// A bill may be refused by its policy or its trace code.
				ok = c.status == 200 || c.status == 409 && code(c) == "trace_code_reused" || c.status == 422
			case "retry":
				ok = c.status == 200 && c.answer.Replayed
			case "conflict":
				ok = c.status == 409 && code(c) == "idempotency_conflict"
			case "reverse":
				ok = c.status == 200 || c.status == 409 && (code(c) == "already_reversed" || code(c) == "reversal_blocked")
			case "credit", "catalog", "persons":
				ok = c.status == 200
			}
			if !ok {
				t.Fatalf("round %d: %s %s: %d %s", round, c.kind, c.requestID, c.status, c.raw)
			}
			if c.status == 200 && (c.kind == "settle" || c.kind == "retry") {
				mu.Lock()
				settled = append(settled, c)
				mu.Unlock()
			}
		}
		all = append(all, calls...)
	}

	stats := map[string]int{}
	for _, c := range all {
		stats[fmt.Sprintf("%s %d %s", c.kind, c.status, c.answer.errorCode())]++
	}
	t.Logf("answers: %v", stats)

	// What the ledger holds, by (hospital, request id) and settlement id.
	type key struct{ hospital, requestID string }
	byKey := map[key]*ledger.Entry{}
	byID := map[string]*ledger.Entry{}
	reversedBy := map[string]string{}
	holder := map[string]string{}
	err := h.db.Scan(1, func(e *ledger.Entry) error {
		if e.Kind != ledger.KindSettlement && e.Kind != ledger.KindReversal {
			return nil
		}
		k := key{e.Hospital, e.RequestID}
		if prev := byKey[k]; prev != nil {
			return fmt.Errorf("request id %v holds %s and %s", k, prev.SettlementID, e.SettlementID)
		}
		byKey[k], byID[e.SettlementID] = e, e
		if e.Kind == ledger.KindReversal {
			if prev, twice := reversedBy[e.Reverses]; twice {
				return fmt.Errorf("%s reversed by %s and %s", e.Reverses, prev, e.SettlementID)
			}
			reversedBy[e.Reverses] = e.SettlementID
			for _, c := range byID[e.Reverses].TraceCodes {
				delete(holder, c)
			}
			return nil
		}
		for _, c := range e.TraceCodes {
			if prev, held := holder[c]; held {
				return fmt.Errorf("trace code %s settled by %s and %s", c, prev, e.SettlementID)
			}
			holder[c] = e.SettlementID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every answer naming a settlement is the same bytes, but for whether
	// it is a replay and, once reversed, by which reversal.
	sameAs := map[string]string{}
	for _, c := range all {
		if c.status != 200 || c.kind == "quote" || c.kind == "credit" || c.kind == "catalog" || c.kind == "persons" {
			continue
		}
		norm := strings.Replace(string(c.raw), `"replayed":true`, `"replayed":false`, 1)
		if i := strings.Index(norm, `,"reversed_by":`); i >= 0 {
			j := strings.Index(norm[i+len(`,"reversed_by":"`):], `"`)
			norm = norm[:i] + norm[i+len(`,"reversed_by":"`)+j+1:]
		}
		if prev, ok := sameAs[c.answer.SettlementID]; ok && prev != norm {
			t.Fatalf("two answers of %s differ:\n%s\n%s", c.answer.SettlementID, prev, norm)
		}
		sameAs[c.answer.SettlementID] = norm
	}
	answered := map[string]bool{}
	for _, c := range all {
		if c.status != 200 || c.kind == "quote" || c.kind == "credit" || c.kind == "catalog" || c.kind == "persons" {
			continue
		}
		e := byID[c.answer.SettlementID]
		if e == nil || e.Seq != c.answer.Seq || e.Hospital != c.hospital {
			t.Fatalf("%s answered %s (seq %d), which the ledger does not hold as answered", c.kind, c.answer.SettlementID, c.answer.Seq)
		}
		if c.kind == "reverse" && e.Reverses != c.settlementID {
			t.Fatalf("reversal of %s answered %s, which reverses %s", c.settlementID, e.SettlementID, e.Reverses)
		}
		if c.kind == "settle" && (c.answer.Replayed || e.RequestID != c.requestID) {
			t.Fatalf("a first settlement answered %s: %s", e.SettlementID, c.raw)
		}
		answered[e.SettlementID] = true
	}
	for id := range byID {
		if !answered[id] {
			t.Fatalf("%s is in the ledger but no request was answered with it", id)
		}
	}
	checkCommitOrder(t, h)
}

// errorCode is the answer's error code, "" for none.
func (a *answer) errorCode() string {
	if a.Error == nil {
		return ""
	}
	return a.Error.Code
}

// TestR9ReversalsRaceTheMonthClose reverses a month's settlements, and
// settles new bills, while the month ends and the clearing house closes
// it: the frozen statement is exactly the month's entries up to its seq
// (reversals counted in the month they were committed in, never in a
// closed one), every later entry is of the next month, and the ledger
// audits clean.
func TestR9ReversalsRaceTheMonthClose(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-31T15:59:00Z") // 23:59 in UTC+8
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {empActive, resident}}), clk)
	for round := 0; round < 3; round++ {
		var open []answer
		for i := 0; i < 12; i++ {
			p := []string{"EMP1", "RES1"}[i%2]
			open = append(open, mustSettle(t, h, "H3716020001", settleBody(fmt.Sprintf("MC-%d-%d", round, i), p, "371600", chronicVisit, oneLine)))
		}
		var calls []*raceCall
		for i, s := range open {
			calls = append(calls, &raceCall{path: "/v1/settlements/" + s.SettlementID + "/reversal", token: "tok-H3716020001",
				body: []byte(fmt.Sprintf(`{"request_id":"MCR-%d-%d"}`, round, i))})
			calls = append(calls, &raceCall{path: "/v1/settlements", token: "tok-H3716210001",
				body: settleBody(fmt.Sprintf("MCN-%d-%d", round, i), []string{"EMP1", "RES1"}[i%2], "371600", chronicVisit, oneLine)})
		}
		month := ledger.MonthOf(clk.now().UnixNano())
		var closed raceCall
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(2 * time.Millisecond)
			clk.ns.Store(month.End().UnixNano()) // the month ends
			for {
				closed.status, closed.raw = h.do("POST", "/v1/clearing/months/"+month.String()+"/close", "tok-clearing", nil)
				if closed.status != 409 {
					return
				}
			}
		}()
		fire(h, calls)
		wg.Wait()
		for _, c := range calls {
			if c.status != 200 {
				t.Fatalf("round %d: %s: %d %s", round, c.path, c.status, c.raw)
			}
		}
		var st Statement
		if err := json.Unmarshal(closed.raw, &st); closed.status != 200 || err != nil || !st.Closed {
			t.Fatalf("round %d: close %s: %d %s", round, month, closed.status, closed.raw)
		}
		// The month's entries by the ledger, against the frozen statement.
		type pair struct{ insured, treating string }
		want := map[pair][3]int64{} // settlements, reversals, fund total
		err := h.db.Scan(1, func(e *ledger.Entry) error {
			if e.Kind != ledger.KindSettlement && e.Kind != ledger.KindReversal {
				return nil
			}
			in := ledger.MonthOf(e.CommittedAt) == month
			if in != (e.Seq <= st.LedgerSeq) && ledger.MonthOf(e.CommittedAt) >= month {
				return fmt.Errorf("seq %d committed in %s, the statement of %s covers up to seq %d", e.Seq, ledger.MonthOf(e.CommittedAt), month, st.LedgerSeq)
			}
			if !in {
				return nil
			}
			k := pair{e.InsuredRegion, e.TreatingRegion}
			v := want[k]
			if e.Kind == ledger.KindSettlement {
				v[0]++
			} else {
				v[1]++
			}
			v[2] += e.Amounts.FundTotal
			want[k] = v
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		got := map[pair][3]int64{}
		for _, p := range st.Pairs {
			amt, neg := strings.CutPrefix(p.FundTotal, "-")
			f, err := money.Parse([]byte(amt), 2)
			if err != nil {
				t.Fatal(err)
			}
			if neg {
				f = -f
			}
			got[pair{p.InsuredRegion, p.TreatingRegion}] = [3]int64{int64(p.Settlements), int64(p.Reversals), f}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: statement of %s: %v, the ledger's entries of the month: %v", round, month, got, want)
		}
		clk.ns.Store(month.Next().End().UnixNano() - int64(time.Minute)) // near the next month's end
	}
	rep, err := h.db.Audit(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestR9RollbackAndCatalogRaceSettlements withdraws an uploaded version
// and changes the treating region's catalog while bills of its dates are
// being settled: each entry names one version and that version's module,
// none computed with the withdrawn version commits after the rollback is
// answered, and none computed with the replaced catalog after the catalog
// change is.
func TestR9RollbackAndCatalogRaceSettlements(t *testing.T) {
	res2 := strings.Replace(resident, `"RES1"`, `"RES2"`, 1)
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {resident, res2}})))
	// The upload's check runs its cases: slow under the race detector.
	resp, err := h.roundTrip("POST", "/v1/regions/371600/policies", "tok-region-371600", "application/json",
		upload("371600", "r9a", "2024-06-01", referenceWasm(t, "371600", "v2023"), readCases(t, "371600-v2023.json"), demoKey("371600")), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	status, out := resp.StatusCode(), append([]byte(nil), resp.Body()...)
	fasthttp.ReleaseResponse(resp)
	if status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	var up struct {
		SHA256 string `json:"module_sha256"`
	}
	json.Unmarshal(out, &up)
	sums := map[string]string{"r9a": up.SHA256}
	for _, v := range h.policies.Versions("371600") {
		s := v.Module.Sum()
		sums[v.Name] = hex.EncodeToString(s[:])
	}
	var calls []*raceCall
	for i := 0; i < 24; i++ {
		calls = append(calls, &raceCall{path: "/v1/settlements", token: "tok-H3716020001", body: settleBody(fmt.Sprintf("RB-%d", i),
			[]string{"RES1", "RES2"}[i%2], "371600", `{"type":"two_disease","visit_date":"2024-07-01"}`,
			`[{"code":"XB01","unit_price":"50.00","quantity":"1","amount":"50.00"}]`)})
	}
	var withdrawnAt, changedAt time.Time
	seen := map[string]int{}
	defer func() { t.Logf("versions and pre_self_pay of the bills: %v", seen) }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		time.Sleep(5 * time.Millisecond)
		if status, out := h.do("POST", "/v1/regions/371600/policies/r9a/withdraw", "tok-region-371600", nil); status != 200 {
			t.Errorf("withdraw: %d %s", status, out)
		}
		withdrawnAt = time.Now()
	}()
	go func() {
		defer wg.Done()
		time.Sleep(5 * time.Millisecond)
		if status, out := h.ndjson("POST", "/v1/regions/371602/catalog", "tok-region-371600", []byte(`{"code":"XB01","class":"B","selfpay_prop":"0.50"}`+"\n")); status != 200 {
			t.Errorf("catalog: %d %s", status, out)
		}
		changedAt = time.Now()
	}()
	fire(h, calls)
	wg.Wait()
	for _, c := range calls {
		if c.status != 200 {
			t.Fatalf("%d %s", c.status, c.raw)
		}
		var a struct {
			CommittedAt time.Time `json:"committed_at"`
			Policy      struct {
				Version string `json:"version"`
				SHA256  string `json:"module_sha256"`
			} `json:"policy"`
			Lines []struct {
				PreSelfPay string `json:"pre_self_pay"`
			} `json:"lines"`
		}
		if err := json.Unmarshal(c.raw, &a); err != nil {
			t.Fatal(err)
		}
		seen[a.Policy.Version+" "+a.Lines[0].PreSelfPay]++
		if sums[a.Policy.Version] == "" || sums[a.Policy.Version] != a.Policy.SHA256 {
			t.Fatalf("settled under version %s with module %s (the version's: %s)", a.Policy.Version, a.Policy.SHA256, sums[a.Policy.Version])
		}
		if a.Policy.Version == "r9a" && !a.CommittedAt.Before(withdrawnAt) {
			t.Fatalf("computed with the withdrawn version, committed at %s after the rollback was answered (%s)", a.CommittedAt, withdrawnAt)
		}
		if a.Lines[0].PreSelfPay == "5.00" && !a.CommittedAt.Before(changedAt) {
			t.Fatalf("computed with the replaced catalog, committed at %s after the change was answered (%s)", a.CommittedAt, changedAt)
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
