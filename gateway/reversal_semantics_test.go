package gateway

import (
	"bytes"
	"maps"
	"strings"
	"testing"

	"medgate/engine/money"
)

// Reversal, year and clearing-month semantics (policies.md §2 and §6,
// api.md "Clearing houses"), end to end through the HTTP API with a
// controlled clock.

func mustSettle(t *testing.T, h *harness, hospital string, body []byte) answer {
	t.Helper()
	status, out := h.do("POST", "/v1/settlements", "tok-"+hospital, body)
	if status != 200 {
		t.Fatalf("settle: %d %s", status, out)
	}
	return decodeAnswer(t, out)
}

func mustReverse(t *testing.T, h *harness, hospital, id, requestID string) answer {
	t.Helper()
	status, out := h.do("POST", "/v1/settlements/"+id+"/reversal", "tok-"+hospital, []byte(`{"request_id":"`+requestID+`","reason":"test"}`))
	if status != 200 {
		t.Fatalf("reverse %s: %d %s", id, status, out)
	}
	r := decodeAnswer(t, out)
	if r.Reverses != id {
		t.Fatalf("reversal of %s says reverses %q", id, r.Reverses)
	}
	return r
}

// wantAmounts checks the listed amounts of an answer.
func wantAmounts(t *testing.T, what string, a answer, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got := a.Amounts[kv[i]]; got != kv[i+1] {
			t.Errorf("%s: %s = %s, want %s (notes %q)", what, kv[i], got, kv[i+1], a.Notes)
		}
	}
}

// wantNegated checks that r's amounts are exactly a's negated.
func wantNegated(t *testing.T, r, a answer) {
	t.Helper()
	if len(r.Amounts) != len(a.Amounts) {
		t.Fatalf("reversal amounts %v, settlement %v", r.Amounts, a.Amounts)
	}
	for k, v := range a.Amounts {
		if fen(t, r.Amounts[k]) != -fen(t, v) {
			t.Errorf("reversal %s = %s, settlement %s", k, r.Amounts[k], v)
		}
	}
}

func counterMap(t *testing.T, h *harness, region, person string, year int32) map[string]int64 {
	t.Helper()
	cs, err := h.db.Counters(region, person, year, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, c := range cs {
		m[c.Name] = c.Value
	}
	return m
}

// sameCounters compares counter maps, an absent counter being 0.
func sameCounters(a, b map[string]int64) bool {
	zero := func(_ string, v int64) bool { return v == 0 }
	a, b = maps.Clone(a), maps.Clone(b)
	maps.DeleteFunc(a, zero)
	maps.DeleteFunc(b, zero)
	return maps.Equal(a, b)
}

func balanceOf(t *testing.T, h *harness, region, person string) int64 {
	t.Helper()
	b, err := h.db.Balance(region, person)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReversalAcrossTheYearBoundary: a bill dated 31 December and settled
// on 2 January counts against the old year; a reversal committed in the
// new year restores exactly the reversed settlement's counters of ITS
// year (the old one), leaves the new year's alone, gives back its account
// money, and later settlements are not recomputed (policies.md §6). The
// settlement is in December's statement, its reversal in January's.
func TestReversalAcrossTheYearBoundary(t *testing.T) {
	clk := &clock{}
	clk.set("2025-12-31T15:00:00Z") // 23:00 on 31 December in UTC+8
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}), clk)
	const hosp = "H3716020001"
	old := `{"type":"chronic","visit_date":"2025-12-31"}`
	nu := `{"type":"chronic","visit_date":"2026-01-02"}`

	// 371600 employee chronic, local L3: yearly deductible 700, 85%.
	s1 := mustSettle(t, h, hosp, settleBody("Y-1", "EMP1", "371600", old, oneLine))
	wantAmounts(t, "S1 (2025)", s1, "deductible", "700.00", "basic_fund", "255.00", "personal_account", "745.00")
	c1 := counterMap(t, h, "371600", "EMP1", 2025)
	if len(c1) == 0 {
		t.Fatal("S1 moved no 2025 counter")
	}

	clk.set("2026-01-02T02:00:00Z") // 10:00 on 2 January in UTC+8
	// Dated 31 December, settled in January: 2025's deductible is paid.
	s2 := mustSettle(t, h, hosp, settleBody("Y-2", "EMP1", "371600", old, oneLine))
	wantAmounts(t, "S2 (dated 2025, settled 2026)", s2, "deductible", "0.00", "basic_fund", "850.00", "personal_account", "150.00")
	c12 := counterMap(t, h, "371600", "EMP1", 2025)
	if n := counterMap(t, h, "371600", "EMP1", 2026); len(n) != 0 {
		t.Fatalf("a bill dated 2025 moved 2026 counters: %v", n)
	}
	// Dated in 2026: a fresh year.
	s3 := mustSettle(t, h, hosp, settleBody("Y-3", "EMP1", "371600", nu, oneLine))
	wantAmounts(t, "S3 (2026)", s3, "deductible", "700.00", "basic_fund", "255.00", "personal_account", "105.00")
	n3 := counterMap(t, h, "371600", "EMP1", 2026)
	bal := balanceOf(t, h, "371600", "EMP1")
	if bal != 0 {
		t.Fatalf("balance %d after three settlements, want 0", bal)
	}

	// Reverse S1 in 2026.
	r1 := mustReverse(t, h, hosp, s1.SettlementID, "Y-1-R")
	wantNegated(t, r1, s1)
	want := map[string]int64{}
	for k, v := range c12 {
		want[k] = v - c1[k] // S2's own changes
	}
	if got := counterMap(t, h, "371600", "EMP1", 2025); !sameCounters(got, want) {
		t.Errorf("2025 counters after reversing S1: %v, want %v (after S1 %v, after S2 %v)", got, want, c1, c12)
	}
	if got := counterMap(t, h, "371600", "EMP1", 2026); !sameCounters(got, n3) {
		t.Errorf("2026 counters moved by a reversal of a 2025 settlement: %v, want %v", got, n3)
	}
	if got := balanceOf(t, h, "371600", "EMP1"); got != 745_00 {
		t.Errorf("balance after the reversal %d, want 745.00", got)
	}
	// S2 is not recomputed.
	status, body := h.do("GET", "/v1/settlements/"+s2.SettlementID, "tok-"+hosp, nil)
	if g := decodeAnswer(t, body); status != 200 || g.Amounts["deductible"] != "0.00" || g.Amounts["basic_fund"] != "850.00" {
		t.Errorf("S2 after the reversal of S1: %d %s", status, body)
	}
	// 2025's deductible is free again: a new 2025 bill pays it.
	s4 := mustSettle(t, h, hosp, settleBody("Y-4", "EMP1", "371600", old, oneLine))
	wantAmounts(t, "S4 (dated 2025, after the reversal)", s4, "deductible", "700.00", "basic_fund", "255.00", "personal_account", "745.00")

	// Months: S1 in December 2025; S2, S3, the reversal and S4 in January.
	dec, _ := getStatement(t, h, "2025-12")
	if len(dec.Pairs) != 1 || dec.Pairs[0].Settlements != 1 || dec.Pairs[0].Reversals != 0 || dec.Pairs[0].Total != "1000.00" || dec.LedgerSeq != s1.Seq {
		t.Errorf("December: %+v", dec)
	}
	jan, _ := getStatement(t, h, "2026-01")
	if len(jan.Pairs) != 1 || jan.Pairs[0].Settlements != 3 || jan.Pairs[0].Reversals != 1 || jan.Pairs[0].Total != "2000.00" ||
		jan.Pairs[0].PersonalAccount != money.FormatFen(150_00+105_00-745_00+745_00) {
		t.Errorf("January: %+v", jan)
	}
}

// TestReversalOfASettlementWhoseCapALaterOneFilled: policies.md §6 —
// later settlements are not recomputed. A later bill that was cut by the
// cap keeps its amounts; the reversal takes off exactly the reversed
// settlement's share of the cap, which the next bill may use.
func TestReversalOfASettlementWhoseCapALaterOneFilled(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {resident}}))
	const hosp = "H3716210001" // 371621, L1: residents' outpatient 65%, 300 a year
	visit := `{"type":"outpatient","visit_date":"2025-06-01"}`
	bill := `[{"code":"XA01","unit_price":"400.00","quantity":"1","amount":"400.00"}]`

	a := mustSettle(t, h, hosp, settleBody("CAP-1", "RES1", "371600", visit, bill))
	wantAmounts(t, "A", a, "basic_fund", "260.00", "deductible", "0.00")
	ca := counterMap(t, h, "371600", "RES1", 2025)
	b := mustSettle(t, h, hosp, settleBody("CAP-2", "RES1", "371600", visit, bill))
	wantAmounts(t, "B (cut by the cap)", b, "basic_fund", "40.00", "cash", "360.00")
	cab := counterMap(t, h, "371600", "RES1", 2025)

	r := mustReverse(t, h, hosp, a.SettlementID, "CAP-1-R")
	wantNegated(t, r, a)
	want := map[string]int64{}
	for k, v := range cab {
		want[k] = v - ca[k]
	}
	if got := counterMap(t, h, "371600", "RES1", 2025); !sameCounters(got, want) {
		t.Errorf("counters after reversing A: %v, want B's changes alone %v", got, want)
	}
	status, body := h.do("GET", "/v1/settlements/"+b.SettlementID, "tok-"+hosp, nil)
	if g := decodeAnswer(t, body); status != 200 || g.Amounts["basic_fund"] != "40.00" || g.ReversedBy != "" {
		t.Errorf("B after the reversal of A: %d %s", status, body)
	}
	// 300 − 40 = 260 left: the next bill gets its full 65%.
	c := mustSettle(t, h, hosp, settleBody("CAP-3", "RES1", "371600", visit, bill))
	wantAmounts(t, "C", c, "basic_fund", "260.00")
	d := mustSettle(t, h, hosp, settleBody("CAP-4", "RES1", "371600", visit, bill))
	wantAmounts(t, "D (cap full again)", d, "basic_fund", "0.00")
}

// TestReversalGivesBackTheAccountAfterCreditsAndSpending: the reversal
// gives back exactly what its settlement took from the personal account,
// added to the balance as it is at the reversal (credited and spent
// meanwhile), not a restored snapshot.
func TestReversalGivesBackTheAccountAfterCreditsAndSpending(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	const hosp = "H3716020001"
	s1 := mustSettle(t, h, hosp, settleBody("B-1", "EMP1", "371600", chronicVisit, oneLine))
	wantAmounts(t, "S1", s1, "personal_account", "745.00")
	if got := balanceOf(t, h, "371600", "EMP1"); got != 255_00 {
		t.Fatalf("balance after S1 %d", got)
	}
	if status, out := h.do("POST", "/v1/regions/371600/persons/EMP1/credits", "tok-region-371600", []byte(`{"reference":"CR-B","amount":"100.00"}`)); status != 200 {
		t.Fatalf("credit: %d %s", status, out)
	}
	s2 := mustSettle(t, h, hosp, settleBody("B-2", "EMP1", "371600", chronicVisit, oneLine))
	wantAmounts(t, "S2", s2, "deductible", "0.00", "personal_account", "150.00")
	if got := balanceOf(t, h, "371600", "EMP1"); got != 205_00 {
		t.Fatalf("balance after credit and S2 %d, want 205.00", got)
	}
	r1 := mustReverse(t, h, hosp, s1.SettlementID, "B-1-R")
	wantAmounts(t, "reversal of S1", r1, "personal_account", "-745.00")
	if got := balanceOf(t, h, "371600", "EMP1"); got != 950_00 {
		t.Errorf("balance after the reversal %d, want 205.00 + 745.00", got)
	}
	// Reversing S2 too: back to the opening balance plus the credit.
	mustReverse(t, h, hosp, s2.SettlementID, "B-2-R")
	if got := balanceOf(t, h, "371600", "EMP1"); got != 1100_00 {
		t.Errorf("balance after both reversals %d, want 1100.00", got)
	}
	for k, v := range counterMap(t, h, "371600", "EMP1", 2025) {
		t.Errorf("counter %s = %d after both reversals", k, v)
	}
}

// statementMatches checks a statement against the answers booked in its
// month: per pair, every amount is the sum of the answers' (reversals
// negative), counts are right, cross_province follows the codes' first
// two digits, clearing_amount = fund_total + personal_account, and the
// province positions follow from the cross-province pairs and net to 0.
func statementMatches(t *testing.T, st *Statement, booked []bookedAnswer) {
	t.Helper()
	type pairKey struct{ ins, trt string }
	keys := []string{"total", "eligible", "basic_fund", "serious_illness", "medical_assistance", "fund_total", "personal_account", "cash"}
	sums := map[pairKey]map[string]int64{}
	counts := map[pairKey][2]uint64{}
	for _, b := range booked {
		k := pairKey{b.insured, b.treating}
		if sums[k] == nil {
			sums[k] = map[string]int64{}
		}
		for _, f := range keys {
			sums[k][f] += fen(t, b.a.Amounts[f])
		}
		c := counts[k]
		if b.a.Reverses != "" {
			c[1]++
		} else {
			c[0]++
		}
		counts[k] = c
	}
	if len(st.Pairs) != len(sums) {
		t.Fatalf("%s: %d pairs, want %d: %+v", st.Month, len(st.Pairs), len(sums), st.Pairs)
	}
	recv, pay := map[string]int64{}, map[string]int64{}
	for _, p := range st.Pairs {
		k := pairKey{p.InsuredRegion, p.TreatingRegion}
		s, ok := sums[k]
		if !ok {
			t.Fatalf("%s: unexpected pair %+v", st.Month, p)
		}
		got := map[string]string{"total": p.Total, "eligible": p.Eligible, "basic_fund": p.BasicFund, "serious_illness": p.SeriousIllness,
			"medical_assistance": p.MedicalAssistance, "fund_total": p.FundTotal, "personal_account": p.PersonalAccount, "cash": p.Cash}
		for _, f := range keys {
			if fen(t, got[f]) != s[f] {
				t.Errorf("%s %s→%s: %s = %s, want %s", st.Month, k.ins, k.trt, f, got[f], money.FormatFen(s[f]))
			}
		}
		clearing := s["fund_total"] + s["personal_account"]
		if fen(t, p.ClearingAmount) != clearing {
			t.Errorf("%s %s→%s: clearing_amount %s, want %s", st.Month, k.ins, k.trt, p.ClearingAmount, money.FormatFen(clearing))
		}
		if c := counts[k]; p.Settlements != c[0] || p.Reversals != c[1] {
			t.Errorf("%s %s→%s: %d settlements %d reversals, want %d %d", st.Month, k.ins, k.trt, p.Settlements, p.Reversals, c[0], c[1])
		}
		if cross := k.ins[:2] != k.trt[:2]; p.CrossProvince != cross {
			t.Errorf("%s %s→%s: cross_province %v", st.Month, k.ins, k.trt, p.CrossProvince)
		}
		if p.CrossProvince {
			recv[k.trt[:2]+"0000"] += clearing
			pay[k.ins[:2]+"0000"] += clearing
		}
	}
	var net int64
	seen := map[string]bool{}
	for _, pv := range st.Provinces {
		seen[pv.Province] = true
		if fen(t, pv.Receivable) != recv[pv.Province] || fen(t, pv.Payable) != pay[pv.Province] ||
			fen(t, pv.Net) != recv[pv.Province]-pay[pv.Province] {
			t.Errorf("%s province %+v, want receivable %d payable %d", st.Month, pv, recv[pv.Province], pay[pv.Province])
		}
		net += fen(t, pv.Net)
	}
	for p := range recv {
		if !seen[p] {
			t.Errorf("%s: province %s missing", st.Month, p)
		}
	}
	for p := range pay {
		if !seen[p] {
			t.Errorf("%s: province %s missing", st.Month, p)
		}
	}
	if net != 0 {
		t.Errorf("%s: province nets sum to %d fen", st.Month, net)
	}
}

type bookedAnswer struct {
	insured, treating string
	a                 answer
}

// TestClearingMonthBoundaryAndLateReversal: a settlement committed at
// 23:59:59.999 on the last day of a month (UTC+8) is in that month, one
// committed at 00:00:00 the next day in the next; reversals committed
// after the month's close are booked into the open month with negative
// amounts while the closed statement stays byte for byte the same; every
// statement's pairs are the sums of their entries and the province nets
// sum to zero.
func TestClearingMonthBoundaryAndLateReversal(t *testing.T) {
	const xres = `{"id":"XRES","scheme":"resident","employment":"active","groups":[],"conditions":[],"registration":"long_term","account_balance":"0.00","enrolled_on":"2010-01-01","in_concentrated_period":true}`
	clk := &clock{}
	clk.set("2026-01-20T02:00:00Z")
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {empActive}, "152500": {xres}}), clk)
	visit := `{"type":"chronic","visit_date":"2026-01-31"}`

	// 23:59:59.999 on 31 January in UTC+8.
	clk.set("2026-01-31T15:59:59.999Z")
	a := mustSettle(t, h, "H3716020001", settleBody("M-A", "EMP1", "371600", visit, oneLine)) // 371600→371602, same province
	x := mustSettle(t, h, "H3701020001", settleBody("M-X", "XRES", "152500", visit, oneLine)) // 152500→370102, cross
	// 00:00:00 on 1 February in UTC+8.
	clk.set("2026-01-31T16:00:00Z")
	b := mustSettle(t, h, "H1525020001", settleBody("M-B", "EMP1", "371600", visit, oneLine)) // 371600→152502, cross

	jan, _ := getStatement(t, h, "2026-01")
	if jan.LedgerSeq != x.Seq {
		t.Errorf("January ledger_seq %d, want %d", jan.LedgerSeq, x.Seq)
	}
	janBooked := []bookedAnswer{{"371600", "371602", a}, {"152500", "370102", x}}
	statementMatches(t, jan, janBooked)
	feb, _ := getStatement(t, h, "2026-02")
	statementMatches(t, feb, []bookedAnswer{{"371600", "152502", b}})

	status, frozen := h.do("POST", "/v1/clearing/months/2026-01/close", "tok-clearing", nil)
	if status != 200 {
		t.Fatalf("close January: %d %s", status, frozen)
	}

	// Reversals of both January settlements, committed in February (the
	// clock even goes back to January: the close still wins).
	clk.set("2026-01-31T15:59:59.999Z")
	ra := mustReverse(t, h, "H3716020001", a.SettlementID, "M-A-R")
	clk.set("2026-02-03T04:00:00Z")
	rx := mustReverse(t, h, "H3701020001", x.SettlementID, "M-X-R")
	wantNegated(t, ra, a)
	wantNegated(t, rx, x)

	if _, got := getStatement(t, h, "2026-01"); !bytes.Equal(got, frozen) {
		t.Errorf("January changed after its close:\n%s\n%s", got, frozen)
	}
	feb, _ = getStatement(t, h, "2026-02")
	if feb.LedgerSeq != rx.Seq {
		t.Errorf("February ledger_seq %d, want %d", feb.LedgerSeq, rx.Seq)
	}
	statementMatches(t, feb, []bookedAnswer{{"371600", "152502", b}, {"371600", "371602", ra}, {"152500", "370102", rx}})
	for _, p := range feb.Pairs {
		if p.Reversals == 1 && (p.Settlements != 0 || !strings.HasPrefix(p.Total, "-") || !strings.HasPrefix(p.FundTotal, "-")) {
			t.Errorf("February reversal pair %+v: want negative amounts", p)
		}
	}
	// Across a restart the closed month is still byte for byte the same.
	h.restart()
	if _, got := getStatement(t, h, "2026-01"); !bytes.Equal(got, frozen) {
		t.Errorf("January changed across a restart")
	}
}

// TestReversalOfAnAdmissionSpanningNewYear: an inpatient stay counts in
// the year of its discharge date (policies.md §2), and so does its
// reversal: reversing a stay admitted in December and discharged in
// January takes the admission off the new year's count (the next stay is
// the 2nd, not the 3rd, and pays its deductible) and leaves the old
// year's counters alone.
func TestReversalOfAnAdmissionSpanningNewYear(t *testing.T) {
	clk := &clock{}
	clk.set("2026-01-05T02:00:00Z")
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {resident}}), clk)
	const hosp = "H3716020001" // L3
	stay := func(req, in, out string) []byte {
		return settleBody(req, "RES1", "371600", `{"type":"inpatient","admitted_on":"`+in+`","discharged_on":"`+out+`","visit_date":"`+out+`"}`,
			`[{"code":"XA01","unit_price":"5000.00","quantity":"1","amount":"5000.00"}]`)
	}
	mustSettle(t, h, hosp, stay("NY-1", "2025-03-01", "2025-03-05"))
	mustSettle(t, h, hosp, stay("NY-2", "2025-06-01", "2025-06-05"))
	old := counterMap(t, h, "371600", "RES1", 2025)
	a := mustSettle(t, h, hosp, stay("NY-3", "2025-12-28", "2026-01-03"))
	wantAmounts(t, "stay spanning New Year (1st of 2026)", a, "deductible", "1000.00", "basic_fund", "2400.00")
	if got := counterMap(t, h, "371600", "RES1", 2025); !sameCounters(got, old) {
		t.Fatalf("a stay discharged in 2026 moved 2025 counters: %v, was %v", got, old)
	}
	clk.set("2026-02-10T02:00:00Z")
	b := mustSettle(t, h, hosp, stay("NY-4", "2026-02-01", "2026-02-03"))
	wantAmounts(t, "2nd of 2026", b, "deductible", "1000.00")
	nb := counterMap(t, h, "371600", "RES1", 2026)

	mustReverse(t, h, hosp, a.SettlementID, "NY-3-R")
	if got := counterMap(t, h, "371600", "RES1", 2025); !sameCounters(got, old) {
		t.Errorf("reversing a stay discharged in 2026 moved 2025 counters: %v, was %v", got, old)
	}
	if got := counterMap(t, h, "371600", "RES1", 2026); sameCounters(got, nb) {
		t.Errorf("reversing a stay discharged in 2026 left 2026 counters as they were: %v", got)
	}
	// Only b counts in 2026 now: the next stay is the 2nd, not the 3rd.
	c := mustSettle(t, h, hosp, stay("NY-5", "2026-02-05", "2026-02-08"))
	wantAmounts(t, "2nd of 2026 after the reversal", c, "deductible", "1000.00", "basic_fund", "2400.00")
	d := mustSettle(t, h, hosp, stay("NY-6", "2026-02-08", "2026-02-09"))
	wantAmounts(t, "3rd of 2026", d, "deductible", "0.00", "basic_fund", "3000.00")
}
