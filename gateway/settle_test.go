package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/ledger"
)

// refWorld is a small world over the reference hospitals and catalog.
func refWorld(tb testing.TB, persons map[string][]string) *World {
	tb.Helper()
	cat := []json.RawMessage{
		json.RawMessage(`{"code":"XA01","class":"A"}`),
		json.RawMessage(`{"code":"XA02","class":"A","price_cap":"100.00"}`),
		json.RawMessage(`{"code":"XB01","class":"B","selfpay_prop":"0.10"}`),
		json.RawMessage(`{"code":"XC01","class":"C"}`),
	}
	wj := worldJSON{
		Hospitals: []HospitalRecord{
			{ID: "H3716020001", Region: "371602", Level: 3, AssistanceDesignated: true},
			{ID: "H3716210001", Region: "371621", Level: 1, AssistanceDesignated: true},
			{ID: "H3701020001", Region: "370102", Level: 3, AssistanceDesignated: true},
			{ID: "H1525020001", Region: "152502", Level: 3, AssistanceDesignated: true},
		},
		Catalogs: map[string][]json.RawMessage{"371602": cat, "371621": cat, "370102": cat, "152502": cat},
		Persons:  map[string][]json.RawMessage{},
	}
	for region, ps := range persons {
		for _, p := range ps {
			wj.Persons[region] = append(wj.Persons[region], json.RawMessage(p))
		}
	}
	return wj.toWorld(tb)
}

const (
	empActive = `{"id":"EMP1","scheme":"employee","employment":"active","groups":[],"conditions":[],"registration":"long_term","account_balance":"1000.00","enrolled_on":"2010-01-01","in_concentrated_period":true}`
	resident  = `{"id":"RES1","scheme":"resident","employment":"active","groups":[],"conditions":["hypertension"],"registration":"long_term","account_balance":"0.00","enrolled_on":"2010-01-01","in_concentrated_period":true}`
)

func settleBody(requestID, person, region, visit string, items string) []byte {
	return []byte(fmt.Sprintf(`{"request_id":%q,"person":{"id":%q,"insured_region":%q},"visit":%s,"use_personal_account":true,"items":%s}`,
		requestID, person, region, visit, items))
}

const (
	chronicVisit = `{"type":"chronic","visit_date":"2025-06-01"}`
	oneLine      = `[{"code":"XA01","unit_price":"1000.00","quantity":"1","amount":"1000.00"}]`
)

func TestIdempotencySurvivesRestart(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	body := settleBody("R-1", "EMP1", "371600", chronicVisit, oneLine)
	status, first := h.do("POST", "/v1/settlements", "tok-H3716020001", body)
	if status != 200 {
		t.Fatalf("settle: %d %s", status, first)
	}
	a1 := decodeAnswer(t, first)
	check := func(when string) {
		t.Helper()
		head := h.head()
		// The same body in another key order and spacing is the same request.
		same := []byte(fmt.Sprintf(`{ "items": %s, "use_personal_account": true, "visit": %s, "person": {"insured_region":"371600","id":"EMP1"}, "request_id": "R-1" }`, oneLine, chronicVisit))
		status, again := h.do("POST", "/v1/settlements", "tok-H3716020001", same)
		a2 := decodeAnswer(t, again)
		if status != 200 || !a2.Replayed || a2.SettlementID != a1.SettlementID || a2.Seq != a1.Seq {
			t.Fatalf("%s: replay = %d %s", when, status, again)
		}
		if strings.Replace(string(again), `"replayed":true`, `"replayed":false`, 1) != string(first) {
			t.Fatalf("%s: replay differs from the first answer:\n%s\n%s", when, first, again)
		}
		other := settleBody("R-1", "EMP1", "371600", chronicVisit, `[{"code":"XA01","unit_price":"999.00","quantity":"1","amount":"999.00"}]`)
		status, conflict := h.do("POST", "/v1/settlements", "tok-H3716020001", other)
		if a := decodeAnswer(t, conflict); status != 409 || a.Error.Code != "idempotency_conflict" || a.Error.Field != "request_id" {
			t.Fatalf("%s: another body = %d %s", when, status, conflict)
		}
		// Another hospital may use the same request id: keys are per hospital.
		if h.head() != head {
			t.Fatalf("%s: replay or conflict wrote to the ledger", when)
		}
	}
	check("before restart")
	h.restart()
	check("after restart")
	status, other := h.do("POST", "/v1/settlements", "tok-H3716210001", body)
	if a := decodeAnswer(t, other); status != 200 || a.Replayed {
		t.Fatalf("the same request id at another hospital = %d %s", status, other)
	}
}

func TestTraceCodes(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive, resident}}))
	items := `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00","trace_codes":["83900000000000000001"]},
	           {"code":"XB01","unit_price":"20.00","quantity":"2","amount":"40.00","trace_codes":["83900000000000000002","83900000000000000003"]}]`
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("T-1", "EMP1", "371600", chronicVisit, items))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	first := decodeAnswer(t, body)
	reuse := `[{"code":"XA01","unit_price":"5.00","quantity":"1","amount":"5.00"},
	           {"code":"XB01","unit_price":"20.00","quantity":"1","amount":"20.00","trace_codes":["83900000000000000003"]}]`
	head := h.head()
	for _, path := range []string{"/v1/settlements", "/v1/settlements/quote"} {
		// Another person, another hospital: a code is settled once nationally.
		status, body = h.do("POST", path, "tok-H3716210001", settleBody("T-2", "RES1", "371600", chronicVisit, reuse))
		a := decodeAnswer(t, body)
		if status != 409 || a.Error.Code != "trace_code_reused" || a.Error.Field != "items[1].trace_codes[0]" || !strings.Contains(a.Error.Message, "83900000000000000003") {
			t.Fatalf("%s with a settled code = %d %s", path, status, body)
		}
		// Not which settlement holds it: that is another hospital's.
		if strings.Contains(a.Error.Message, first.SettlementID) {
			t.Fatalf("%s: the refusal names another hospital's settlement: %s", path, body)
		}
		// The hospital that settled it is told which of its settlements.
		status, body = h.do("POST", path, "tok-H3716020001", settleBody("T-3", "RES1", "371600", chronicVisit, reuse))
		if a := decodeAnswer(t, body); status != 409 || !strings.Contains(a.Error.Message, "("+first.SettlementID+")") {
			t.Fatalf("%s at the owning hospital = %d %s", path, status, body)
		}
	}
	if h.head() != head {
		t.Fatal("refusals wrote to the ledger")
	}
	status, body = h.do("POST", "/v1/settlements/"+first.SettlementID+"/reversal", "tok-H3716020001", []byte(`{"request_id":"T-1-R","reason":"wrong patient"}`))
	if status != 200 {
		t.Fatalf("reversal: %d %s", status, body)
	}
	status, body = h.do("POST", "/v1/settlements", "tok-H3716210001", settleBody("T-2", "RES1", "371600", chronicVisit, reuse))
	if status != 200 {
		t.Fatalf("after the reversal the code is free: %d %s", status, body)
	}
	// A code twice in one bill is a malformed bill.
	dup := `[{"code":"XA01","unit_price":"5.00","quantity":"1","amount":"5.00","trace_codes":["X1","X1"]}]`
	status, body = h.do("POST", "/v1/settlements", "tok-H3716210001", settleBody("T-3", "RES1", "371600", chronicVisit, dup))
	if a := decodeAnswer(t, body); status != 400 || a.Error.Field != "items[0].trace_codes[1]" {
		t.Fatalf("duplicate code in one bill = %d %s", status, body)
	}
}

func TestReversalRestoresState(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	state := func() (int64, []abi.Counter) {
		bal, err := h.db.Balance("371600", "EMP1")
		if err != nil {
			t.Fatal(err)
		}
		cs, err := h.db.Counters("371600", "EMP1", 2025, nil)
		if err != nil {
			t.Fatal(err)
		}
		return bal, cs
	}
	bal0, cs0 := state()
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("V-1", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	a := decodeAnswer(t, body)
	status, body = h.do("GET", "/v1/settlements/"+a.SettlementID, "tok-H3716020001", nil)
	if g := decodeAnswer(t, body); status != 200 || g.ReversedBy != "" || strings.Contains(string(body), "reversed_by") {
		t.Fatalf("GET before the reversal = %d %s", status, body)
	}
	bal1, cs1 := state()
	if bal1 >= bal0 || len(cs1) == 0 {
		t.Fatalf("settlement moved nothing: balance %d -> %d, counters %v", bal0, bal1, cs1)
	}
	rev := []byte(`{"request_id":"V-1-R","reason":"billing error"}`)
	status, body = h.do("POST", "/v1/settlements/"+a.SettlementID+"/reversal", "tok-H3716020001", rev)
	r := decodeAnswer(t, body)
	if status != 200 || r.Reverses != a.SettlementID || r.SettlementID == a.SettlementID {
		t.Fatalf("reversal = %d %s", status, body)
	}
	for k, v := range a.Amounts {
		want := "-" + v
		if v == "0.00" {
			want = v
		}
		if r.Amounts[k] != want {
			t.Errorf("reversal %s = %s, want %s", k, r.Amounts[k], want)
		}
	}
	bal2, cs2 := state()
	if bal2 != bal0 {
		t.Errorf("balance after reversal %d, want %d", bal2, bal0)
	}
	for _, c := range cs2 {
		if c.Value != 0 {
			t.Errorf("counter %s = %d after reversal (before: %v)", c.Name, c.Value, cs0)
		}
	}
	head := h.head()
	status, again := h.do("POST", "/v1/settlements/"+a.SettlementID+"/reversal", "tok-H3716020001", rev)
	if a2 := decodeAnswer(t, again); status != 200 || !a2.Replayed || a2.SettlementID != r.SettlementID {
		t.Fatalf("reversal retry = %d %s", status, again)
	}
	status, body = h.do("POST", "/v1/settlements/"+a.SettlementID+"/reversal", "tok-H3716020001", []byte(`{"request_id":"V-1-R2"}`))
	if e := decodeAnswer(t, body); status != 409 || e.Error.Code != "already_reversed" {
		t.Fatalf("second reversal = %d %s", status, body)
	}
	status, body = h.do("POST", "/v1/settlements/"+r.SettlementID+"/reversal", "tok-H3716020001", []byte(`{"request_id":"V-1-R3"}`))
	if status != 409 {
		t.Fatalf("reversing a reversal = %d %s", status, body)
	}
	status, body = h.do("POST", "/v1/settlements/"+a.SettlementID+"/reversal", "tok-H3716210001", []byte(`{"request_id":"V-1-R4"}`))
	if status != 404 {
		t.Fatalf("another hospital's reversal = %d %s", status, body)
	}
	status, body = h.do("GET", "/v1/settlements/"+a.SettlementID, "tok-H3716210001", nil)
	if status != 404 {
		t.Fatalf("another hospital's GET = %d %s", status, body)
	}
	status, body = h.do("GET", "/v1/settlements/"+r.SettlementID, "tok-H3716020001", nil)
	if g := decodeAnswer(t, body); status != 200 || g.Reverses != a.SettlementID {
		t.Fatalf("GET reversal = %d %s", status, body)
	}
	// A hospital queries before it reverses (domain.md §0): the settlement
	// says it was reversed, and by which reversal.
	status, body = h.do("GET", "/v1/settlements/"+a.SettlementID, "tok-H3716020001", nil)
	if g := decodeAnswer(t, body); status != 200 || g.ReversedBy != r.SettlementID {
		t.Fatalf("GET of the reversed settlement = %d %s, want reversed_by %s", status, body, r.SettlementID)
	}
	if h.head() != head {
		t.Fatal("refused reversals wrote to the ledger")
	}
}

// TestConcurrentSettlementsOfOnePerson settles many bills of one person at
// once and compares the end state with the same bills settled one by one.
func TestConcurrentSettlementsOfOnePerson(t *testing.T) {
	const n = 64
	bills := make([][]byte, n)
	for i := range bills {
		visit := chronicVisit
		if i%3 == 0 {
			visit = `{"type":"outpatient","visit_date":"2025-06-01"}`
		}
		bills[i] = settleBody(fmt.Sprintf("C-%d", i), "EMP1", "371600", visit,
			fmt.Sprintf(`[{"code":"XA01","unit_price":"%d.00","quantity":"1","amount":"%d.00"}]`, 100+i*37, 100+i*37))
	}
	run := func(concurrent bool) (int64, []abi.Counter, map[string]int64) {
		h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
		var wg sync.WaitGroup
		for _, b := range bills {
			send := func(b []byte) {
				defer wg.Done()
				if status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", b); status != 200 {
					t.Errorf("settle: %d %s", status, body)
				}
			}
			wg.Add(1)
			if concurrent {
				go send(b)
			} else {
				send(b)
			}
		}
		wg.Wait()
		bal, _ := h.db.Balance("371600", "EMP1")
		cs, _ := h.db.Counters("371600", "EMP1", 2025, nil)
		sums := map[string]int64{}
		h.db.Scan(1, func(e *ledger.Entry) error {
			sums["fund"] += e.Amounts.FundTotal
			sums["account"] += e.Amounts.PersonalAccount
			sums["deductible"] += e.Amounts.Deductible
			return nil
		})
		if _, err := h.db.Verify(); err != nil {
			t.Fatal(err)
		}
		return bal, cs, sums
	}
	bal1, cs1, sums1 := run(false)
	bal2, cs2, sums2 := run(true)
	if bal1 != bal2 || fmt.Sprint(cs1) != fmt.Sprint(cs2) {
		t.Fatalf("concurrent end state differs:\nsequential: balance %d %v\nconcurrent: balance %d %v", bal1, cs1, bal2, cs2)
	}
	// The order differs, so individual splits may differ, but yearly
	// deductibles are paid once and the account is spent exactly.
	if sums1["deductible"] != sums2["deductible"] || sums1["account"] != sums2["account"] {
		t.Fatalf("totals differ: %v vs %v", sums1, sums2)
	}
}

var _ = bytes.Equal

// TestOverlappingRetries sends one settlement (with trace codes) and then
// one reversal many times at once, as a hospital system that times out and
// resends does: every copy gets the one answer, none a conflict with its
// own first attempt (which holds the person's lock while the copies wait).
func TestOverlappingRetries(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	items := `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00","trace_codes":["83900000000000000101","83900000000000000102"]}]`
	const n = 8
	send := func(path string, body []byte) []answer {
		out := make([]answer, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range out {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				status, b := h.do("POST", path, "tok-H3716020001", body)
				if status != 200 {
					t.Errorf("copy %d of %s: %d %s", i, path, status, b)
				}
				out[i] = decodeAnswer(t, b)
			}()
		}
		close(start)
		wg.Wait()
		return out
	}
	for round := range 5 {
		head := h.head()
		got := send("/v1/settlements", settleBody(fmt.Sprintf("OV-%d", round), "EMP1", "371600", chronicVisit, items))
		first := 0
		for _, a := range got {
			if !a.Replayed {
				first++
			}
			if a.SettlementID != got[0].SettlementID {
				t.Fatalf("round %d: copies answered %s and %s", round, got[0].SettlementID, a.SettlementID)
			}
		}
		if first != 1 || h.head() != head+1 {
			t.Fatalf("round %d: %d first answers, head moved by %d", round, first, h.head()-head)
		}
		id := got[0].SettlementID
		rev := send("/v1/settlements/"+id+"/reversal", []byte(fmt.Sprintf(`{"request_id":"OVR-%d"}`, round)))
		first = 0
		for _, a := range rev {
			if !a.Replayed {
				first++
			}
			if a.SettlementID != rev[0].SettlementID || a.Reverses != id {
				t.Fatalf("round %d: reversal copies answered %s and %s (of %s)", round, rev[0].SettlementID, a.SettlementID, a.Reverses)
			}
		}
		if first != 1 || h.head() != head+2 {
			t.Fatalf("round %d: %d first reversal answers, head moved by %d", round, first, h.head()-head)
		}
	}
}

// TestFutureDatesRefused: a bill dated after today (UTC+8, with a day's
// grace) is refused for settlement and quote alike, naming the date, and
// nothing is written; its date would pick the year whose deductible and
// caps it counts against.
func TestFutureDatesRefused(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T17:00:00Z") // 01:00 on 11 October, UTC+8
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}), clk)
	head := h.head()
	for _, c := range []struct {
		visit, field string
	}{
		{`{"type":"outpatient","visit_date":"2026-10-13"}`, "visit.visit_date"},
		{`{"type":"inpatient","admitted_on":"2026-10-01","discharged_on":"2062-10-09"}`, "visit.discharged_on"},
	} {
		for _, path := range []string{"/v1/settlements", "/v1/settlements/quote"} {
			status, body := h.do("POST", path, "tok-H3716020001", settleBody("F-1", "EMP1", "371600", c.visit, oneLine))
			if a := decodeAnswer(t, body); status != 400 || a.Error.Code != "invalid_field" || a.Error.Field != c.field {
				t.Fatalf("%s %s: %d %s, want 400 naming %s", path, c.visit, status, body, c.field)
			}
		}
	}
	if h.head() != head {
		t.Fatal("a refused future bill was written")
	}
	// Today and tomorrow (the grace day) in UTC+8 are fine.
	for i, d := range []string{"2026-10-11", "2026-10-12"} {
		visit := `{"type":"outpatient","visit_date":"` + d + `"}`
		if status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody(fmt.Sprintf("F-%d", i+2), "EMP1", "371600", visit, oneLine)); status != 200 {
			t.Fatalf("a bill of %s: %d %s", d, status, body)
		}
	}
}

// TestReversalOfAMalformedIDIsNotAReplay: the reversal's content is its
// settlement id and reason; an id that is no settlement id (here with a
// NUL, moved from the start of the reason) must be 404, not the replay of
// the reversal booked with that request_id.
func TestReversalOfAMalformedIDIsNotAReplay(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("V-1", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	id := decodeAnswer(t, body).SettlementID
	status, body = h.do("POST", "/v1/settlements/"+id+"/reversal", "tok-H3716020001", []byte(`{"request_id":"V-1-R","reason":"\u0000billing error"}`))
	if status != 200 {
		t.Fatalf("reversal: %d %s", status, body)
	}
	head := h.head()
	for _, bad := range []string{id + "%00", "S1", "S0000000000x1", "s000000000001"} {
		status, body = h.do("POST", "/v1/settlements/"+bad+"/reversal", "tok-H3716020001", []byte(`{"request_id":"V-1-R","reason":"billing error"}`))
		if status != 404 || !strings.Contains(string(body), `"not_found"`) {
			t.Errorf("reversal of %q = %d %s, want 404 not_found", bad, status, body)
		}
	}
	if h.head() != head {
		t.Errorf("the ledger moved: %v -> %v", head, h.head())
	}
}

// TestReversalBlockedByALaterDecrease: a policy may record a counter
// decrease (none of the reference policies does). When a later settlement
// lowered what an earlier one added, reversing the earlier one alone would
// take the counter below zero: that is 409 reversal_blocked, which says
// what to do (not "retry", which could never succeed), and nothing is
// written; reversing the later settlement first lets it through.
func TestReversalBlockedByALaterDecrease(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {resident}}))
	counter := func(delta int64) func(*abi.Input, *abi.Output) {
		return func(in *abi.Input, out *abi.Output) { out.Add("xp.visits", delta) }
	}
	h.policies.Put("371600", engine.Version{Name: "up", EffectiveFrom: 20250101, Module: engine.NewNative("371600", "up", counter(1))})
	h.policies.Put("371600", engine.Version{Name: "down", EffectiveFrom: 20250701, Module: engine.NewNative("371600", "down", counter(-1))})
	settle := func(rid, date string) string {
		status, body := h.do("POST", "/v1/settlements", "tok-H3716020001",
			settleBody(rid, "RES1", "371600", `{"type":"outpatient","visit_date":"`+date+`"}`, oneLine))
		if status != 200 {
			t.Fatalf("settle %s: %d %s", rid, status, body)
		}
		return decodeAnswer(t, body).SettlementID
	}
	reverse := func(id, rid string) (int, []byte) {
		return h.do("POST", "/v1/settlements/"+id+"/reversal", "tok-H3716020001", []byte(`{"request_id":"`+rid+`"}`))
	}
	up, down := settle("DEC-1", "2025-06-02"), settle("DEC-2", "2025-08-04")
	head := h.head()
	if status, body := reverse(up, "DEC-1-R"); status != 409 || !strings.Contains(string(body), `"reversal_blocked"`) || !strings.Contains(string(body), "later settlements") {
		t.Fatalf("reversal of the raising settlement = %d %s, want 409 reversal_blocked", status, body)
	}
	if h.head() != head {
		t.Fatalf("a blocked reversal moved the ledger: %v -> %v", head, h.head())
	}
	for _, r := range [][2]string{{down, "DEC-2-R"}, {up, "DEC-1-R"}} {
		if status, body := reverse(r[0], r[1]); status != 200 {
			t.Fatalf("reversal of %s in order = %d %s", r[0], status, body)
		}
	}
	if cs, err := h.db.Counters("371600", "RES1", 2025, nil); err != nil || len(cs) != 0 {
		t.Fatalf("counters after both reversals: %v %v", cs, err)
	}
}
