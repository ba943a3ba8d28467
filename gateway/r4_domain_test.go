package gateway

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"medgate/engine"
	"medgate/plugins/conformance"
)

// The tests of this file hold every answered split to domain.md §4's
// arithmetic identities and policies.md §1's catalog step, computed here
// independently (math/big, half up), over random bills of random persons
// sent through the real HTTP API, for the WebAssembly policies and for the
// same policies compiled natively.

// domCatEntry is a catalog entry as the test world writes it.
type domCatEntry struct {
	class string // A, B, C
	prop  string // selfpay_prop of class B, "" otherwise
	cap   string // price_cap, "" for none
}

// domCatalogs are the catalogs of the test world. The same code has a
// different class, ratio or cap in each region, so a line split with
// another region's catalog than the treating one shows.
var domCatalogs = map[string]map[string]domCatEntry{
	"371602": { // a county's own catalog
		"D1": {"A", "", ""}, "D2": {"A", "", "15.50"}, "D3": {"B", "0.1", ""}, "D4": {"B", "0.0375", "7.123456"},
		"D5": {"C", "", ""}, "D6": {"B", "1", ""},
	},
	"371600": { // the prefecture's, used by 371621 which has none
		"D1": {"B", "0.2", ""}, "D2": {"A", "", "9.99"}, "D3": {"A", "", ""}, "D4": {"C", "", ""},
		"D5": {"B", "0.0001", "3"}, "D6": {"A", "", "0"},
	},
	"370000": { // the province's, used by 370102 and 371621's neighbours with none
		"D1": {"C", "", ""}, "D2": {"B", "0.15", "20"}, "D3": {"A", "", "1.000001"}, "D4": {"A", "", ""},
		"D5": {"B", "0.3333", ""},
	},
	"152502": {
		"D1": {"A", "", "2.5"}, "D2": {"B", "0.05", ""}, "D3": {"C", "", ""}, "D4": {"B", "0.125", "12"},
		"D6": {"A", "", ""},
	},
	"150000": { // Inner Mongolia's province catalog, used by 150102
		"D1": {"A", "", ""}, "D2": {"A", "", "1"}, "D3": {"B", "0.5", "4.4"},
	},
}

// domHospitals: local, same-prefecture, same-province, other-province and
// catalog-less treating regions, all levels, designated or not. The last
// one's bills are refused (no_catalog).
var domHospitals = []HospitalRecord{
	{ID: "H3716020001", Region: "371602", Level: 3, AssistanceDesignated: true},
	{ID: "H3716210001", Region: "371621", Level: 1, AssistanceDesignated: false},
	{ID: "H3701020001", Region: "370102", Level: 2, AssistanceDesignated: true},
	{ID: "H1525020001", Region: "152502", Level: 3, AssistanceDesignated: true},
	{ID: "H1501020001", Region: "150102", Level: 1, AssistanceDesignated: false},
	{ID: "H1101010001", Region: "110101", Level: 2, AssistanceDesignated: true},
}

// domCatalogOf is the treating catalog of region (policies.md §1): its
// own, its prefecture's, its province's; nil when none has one.
func domCatalogOf(region string) map[string]domCatEntry {
	for _, r := range []string{region, region[:4] + "00", region[:2] + "0000"} {
		if c, ok := domCatalogs[r]; ok {
			return c
		}
	}
	return nil
}

// domPerson is a person of the test world and what the test tracks of it.
type domPerson struct {
	region, id string
	employee   bool
	balance    int64 // fen, the running personal-account balance
}

func domWorld(tb testing.TB, rng *rand.Rand) (*World, []*domPerson) {
	wj := worldJSON{Hospitals: domHospitals, Catalogs: map[string][]json.RawMessage{}, Persons: map[string][]json.RawMessage{}}
	for region, entries := range domCatalogs {
		for code, e := range entries {
			s := fmt.Sprintf(`{"code":%q,"class":%q`, code, e.class)
			if e.prop != "" {
				s += fmt.Sprintf(`,"selfpay_prop":%q`, e.prop)
			}
			if e.cap != "" {
				s += fmt.Sprintf(`,"price_cap":%q`, e.cap)
			}
			wj.Catalogs[region] = append(wj.Catalogs[region], json.RawMessage(s+"}"))
		}
	}
	groups := []string{"destitute", "subsistence", "low_income_edge", "monitored", "illness_poverty"}
	regs := []string{"long_term", "referral", "temporary", "none"}
	var persons []*domPerson
	for _, region := range []string{"371600", "152500", "370000"} {
		for i := 0; i < 12; i++ {
			p := &domPerson{region: region, id: fmt.Sprintf("P%s-%02d", region, i), employee: i%2 == 0}
			scheme, employment := "resident", "active"
			if p.employee {
				scheme = "employee"
				if rng.IntN(2) == 0 {
					employment = "retired"
				}
				p.balance = rng.Int64N(300000)
			}
			var gs, cs []string
			if rng.IntN(3) == 0 {
				gs = append(gs, groups[rng.IntN(len(groups))])
			}
			for _, c := range []string{"hypertension", "diabetes"} {
				if rng.IntN(2) == 0 {
					cs = append(cs, c)
				}
			}
			gj, _ := json.Marshal(append([]string{}, gs...))
			cj, _ := json.Marshal(append([]string{}, cs...))
			enrolled := "2010-01-01"
			if rng.IntN(4) == 0 {
				enrolled = fmt.Sprintf("2025-%02d-%02d", 1+rng.IntN(9), 1+rng.IntN(28))
			}
			wj.Persons[region] = append(wj.Persons[region], json.RawMessage(fmt.Sprintf(
				`{"id":%q,"scheme":%q,"employment":%q,"groups":%s,"conditions":%s,"registration":%q,"account_balance":%q,`+
					`"enrolled_on":%q,"in_concentrated_period":%t,"lapsed_years":%d,"repaid_years":%d,"continuous_years":%d,"zero_claim_years":%d}`,
				p.id, scheme, employment, gj, cj, regs[rng.IntN(len(regs))], fenString(p.balance),
				enrolled, rng.IntN(2) == 0, rng.IntN(6), rng.IntN(3), rng.IntN(10), rng.IntN(8))))
			persons = append(persons, p)
		}
	}
	return wj.toWorld(tb), persons
}

func fenString(fen int64) string {
	return new(big.Rat).SetFrac64(fen, 100).FloatString(2)
}

// ratOf parses a decimal string exactly.
func ratOf(tb testing.TB, s string) *big.Rat {
	tb.Helper()
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		tb.Fatalf("not a decimal: %q", s)
	}
	return r
}

// halfUpFen is x yuan rounded half up to the fen, for x ≥ 0.
func halfUpFen(x *big.Rat) int64 {
	n := new(big.Int).Mul(x.Num(), big.NewInt(200))
	d := new(big.Int).Mul(x.Denom(), big.NewInt(2))
	n.Add(n, x.Denom()) // (2·100x + 1) / 2 floored = floor(100x + 1/2)
	return new(big.Int).Quo(n, d).Int64()
}

var twoDecimals = regexp.MustCompile(`^-?(0|[1-9][0-9]*)\.[0-9]{2}$`)

// fenOf parses an answered amount, which must print exactly two decimals.
func fenOf(tb testing.TB, what, s string) int64 {
	tb.Helper()
	if !twoDecimals.MatchString(s) {
		tb.Fatalf("%s = %q: not an amount with two decimals", what, s)
	}
	r := ratOf(tb, s)
	r.Mul(r, big.NewRat(100, 1))
	return r.Num().Int64()
}

// domLine is one bill line and its expected split.
type domLine struct {
	code, price, qty string
	amount           int64
	codes            []string
	class            string
	listed           bool
	full, over, pre  int64
	elig             int64
}

// domSplit computes the catalog step of policies.md §1 for l at a hospital
// whose treating catalog is cat.
func domSplit(tb testing.TB, cat map[string]domCatEntry, l *domLine) {
	price, qty := ratOf(tb, l.price), ratOf(tb, l.qty)
	l.amount = halfUpFen(new(big.Rat).Mul(price, qty))
	e, ok := cat[l.code]
	l.listed, l.class = ok, "C"
	l.full, l.over, l.pre, l.elig = 0, 0, 0, 0
	if !ok || e.class == "C" {
		l.full = l.amount
		return
	}
	l.class = e.class
	if e.cap != "" {
		if d := new(big.Rat).Sub(price, ratOf(tb, e.cap)); d.Sign() > 0 {
			l.over = halfUpFen(d.Mul(d, qty))
		}
	}
	rest := l.amount - l.over
	if e.class == "B" {
		x := new(big.Rat).Mul(big.NewRat(rest, 100), ratOf(tb, e.prop))
		l.pre = halfUpFen(x)
	}
	l.elig = rest - l.pre
}

// domDecimal is a random decimal with at most decimals digits after the
// point and below max in its integer part, written as a hospital might
// (trailing zeros kept or not).
func domDecimal(rng *rand.Rand, max int64, decimals int) string {
	s := fmt.Sprint(rng.Int64N(max))
	if decimals > 0 && rng.IntN(3) > 0 {
		n := 1 + rng.IntN(decimals)
		f := fmt.Sprint(rng.Int64N(pow10i(n)) + pow10i(n))
		s += "." + f[1:]
	}
	return s
}

func pow10i(n int) int64 {
	p := int64(1)
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}

// domAmounts checks the identities of one settlement, quote or reversal
// answer (sign +1 or −1) against its lines, and returns its amounts in fen.
// domCheckLines fails tb unless a's lines are lines, as computed by hand
// (the catalog step, L1–L4).
func domCheckLines(tb testing.TB, ctx string, a answer, lines []domLine) {
	tb.Helper()
	for j, l := range lines {
		got := a.Lines[j]
		want := map[string]any{"code": l.code, "class": l.class, "listed": l.listed, "amount": fenString(l.amount),
			"full_self_pay": fenString(l.full), "over_limit": fenString(l.over), "pre_self_pay": fenString(l.pre), "eligible": fenString(l.elig)}
		for k, v := range want {
			if got[k] != v {
				tb.Fatalf("%s: lines[%d].%s = %v, want %v (price %s × %s)", ctx, j, k, got[k], v, l.price, l.qty)
			}
		}
	}
}

func domAmounts(tb testing.TB, ctx string, a answer, sign int64) map[string]int64 {
	tb.Helper()
	names := []string{"total", "full_self_pay", "over_limit", "pre_self_pay", "eligible", "deductible", "basic_fund",
		"serious_illness", "medical_assistance", "fund_total", "personal_account", "cash", "personal_total"}
	m := map[string]int64{}
	for _, n := range names {
		s, ok := a.Amounts[n]
		if !ok {
			tb.Fatalf("%s: amounts.%s missing", ctx, n)
		}
		m[n] = fenOf(tb, ctx+" amounts."+n, s)
		if m[n]*sign < 0 {
			tb.Fatalf("%s: amounts.%s = %s has the wrong sign", ctx, n, s)
		}
	}
	if len(a.Amounts) != len(names) {
		tb.Fatalf("%s: amounts has %d fields, want %d: %v", ctx, len(a.Amounts), len(names), a.Amounts)
	}
	var sum [5]int64
	for i, l := range a.Lines {
		var v [5]int64
		for j, n := range []string{"amount", "full_self_pay", "over_limit", "pre_self_pay", "eligible"} {
			s, _ := l[n].(string)
			v[j] = fenOf(tb, fmt.Sprintf("%s lines[%d].%s", ctx, i, n), s)
			sum[j] += v[j]
		}
		if v[0] != v[1]+v[2]+v[3]+v[4] { // L1
			tb.Fatalf("%s: lines[%d]: amount %d ≠ full %d + over %d + pre %d + eligible %d", ctx, i, v[0], v[1], v[2], v[3], v[4])
		}
	}
	ident := []struct {
		name        string
		left, right int64
	}{
		{"S1 lines: total = Σ line amounts", m["total"], sum[0]},
		{"S1 lines: full_self_pay = Σ lines", m["full_self_pay"], sum[1]},
		{"S1 lines: over_limit = Σ lines", m["over_limit"], sum[2]},
		{"S1 lines: pre_self_pay = Σ lines", m["pre_self_pay"], sum[3]},
		{"S1 lines: eligible = Σ lines", m["eligible"], sum[4]},
		{"S1: total = full + over + pre + eligible", m["total"], m["full_self_pay"] + m["over_limit"] + m["pre_self_pay"] + m["eligible"]},
		{"S2: personal_total = personal_account + cash", m["personal_total"], m["personal_account"] + m["cash"]},
		{"S3: total = fund_total + personal_total", m["total"], m["fund_total"] + m["personal_total"]},
		{"S4: fund_total = basic + serious + assistance", m["fund_total"], m["basic_fund"] + m["serious_illness"] + m["medical_assistance"]},
		{"A2: total = fund_total + cash + personal_account", m["total"], m["fund_total"] + m["cash"] + m["personal_account"]},
	}
	for _, id := range ident {
		if id.left != id.right {
			tb.Fatalf("%s: %s broken: %d ≠ %d\n%v", ctx, id.name, id.left, id.right, a.Amounts)
		}
	}
	abs := func(v int64) int64 { return v * sign }
	if abs(m["personal_total"]) < abs(m["full_self_pay"]+m["over_limit"]+m["pre_self_pay"]) { // S6
		tb.Fatalf("%s: S6 broken: personal_total below the out-of-policy amounts: %v", ctx, a.Amounts)
	}
	if abs(m["fund_total"]) > abs(m["eligible"]) || abs(m["deductible"]) > abs(m["eligible"]) {
		tb.Fatalf("%s: funds or deductible above eligible: %v", ctx, a.Amounts)
	}
	return m
}

// domRun settles, quotes and reverses n random bills through the HTTP API
// and checks every answer.
func domRun(t *testing.T, native bool, seed uint64, n int) {
	rng := rand.New(rand.NewPCG(seed, 42))
	w, persons := domWorld(t, rng)
	h := newHarness(t, w)
	if native {
		for _, v := range conformance.Versions {
			h.policies.Put(v.Region, engine.Version{Name: v.Name, EffectiveFrom: v.Effective, Module: engine.NewNative(v.Region, v.Name, v.Policy)})
		}
	}
	codes := []string{"D1", "D2", "D3", "D4", "D5", "D6", "ZZ9"}
	visitTypes := []string{"inpatient", "outpatient", "chronic", "two_disease", "maternity"}
	type settled struct {
		id       string
		token    string
		person   *domPerson
		body     []byte
		answer   []byte
		amounts  map[string]int64
		codes    []string
		reversed bool
	}
	var live []*settled
	traceOwner := map[string]*settled{} // live codes
	var freed []string                  // codes of reversed settlements
	nextCode := 0
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		// Now and then, reverse an earlier settlement.
		if len(live) > 0 && rng.IntN(5) == 0 {
			s := live[rng.IntN(len(live))]
			if s.reversed {
				continue
			}
			status, body := h.do("POST", "/v1/settlements/"+s.id+"/reversal", s.token, []byte(fmt.Sprintf(`{"request_id":"rev-%d","reason":"test"}`, i)))
			ctx := fmt.Sprintf("reversal %d of %s", i, s.id)
			if status != 200 {
				t.Fatalf("%s: %d %s", ctx, status, body)
			}
			a := decodeAnswer(t, body)
			if a.Reverses != s.id {
				t.Fatalf("%s: reverses %q", ctx, a.Reverses)
			}
			m := domAmounts(t, ctx, a, -1)
			for k, v := range s.amounts {
				if m[k] != -v {
					t.Fatalf("%s: %s = %d, want %d", ctx, k, m[k], -v)
				}
			}
			orig := decodeAnswer(t, s.answer)
			for j, l := range a.Lines {
				for _, k := range []string{"amount", "full_self_pay", "over_limit", "pre_self_pay", "eligible"} {
					if fenOf(t, ctx, l[k].(string)) != -fenOf(t, ctx, orig.Lines[j][k].(string)) {
						t.Fatalf("%s: lines[%d].%s = %v, want the negation of %v", ctx, j, k, l[k], orig.Lines[j][k])
					}
				}
				if l["code"] != orig.Lines[j]["code"] || l["class"] != orig.Lines[j]["class"] || l["listed"] != orig.Lines[j]["listed"] {
					t.Fatalf("%s: lines[%d] = %v, the original's is %v", ctx, j, l, orig.Lines[j])
				}
			}
			s.reversed = true
			s.person.balance += s.amounts["personal_account"]
			for _, c := range s.codes {
				delete(traceOwner, c)
				freed = append(freed, c)
			}
			counts["reversal"]++
			continue
		}

		p := persons[rng.IntN(len(persons))]
		hosp := domHospitals[rng.IntN(len(domHospitals))]
		token := "tok-" + hosp.ID
		cat := domCatalogOf(hosp.Region)
		vt := visitTypes[rng.IntN(len(visitTypes))]
		// 2023 to 2026: both versions of 371600, stays across New Year.
		year := 2023 + rng.IntN(4)
		day := fmt.Sprintf("%d-%02d-%02d", year, 1+rng.IntN(11), 1+rng.IntN(28))
		admitted := fmt.Sprintf("%d-%02d-%02d", year-rng.IntN(2), 1+rng.IntN(11), 1+rng.IntN(28))
		if admitted > day {
			admitted = day
		}
		var visit string
		switch vt {
		case "inpatient":
			visit = fmt.Sprintf(`{"type":%q,"admitted_on":%q,"discharged_on":%q,"emergency":%t}`, vt, admitted, day, rng.IntN(4) == 0)
		case "maternity":
			visit = fmt.Sprintf(`{"type":%q,"admitted_on":%q,"discharged_on":%q,"emergency":%t,"birth_order":%d}`,
				vt, admitted, day, rng.IntN(4) == 0, 1+rng.IntN(4))
		default:
			visit = fmt.Sprintf(`{"type":%q,"visit_date":%q,"emergency":%t}`, vt, day, rng.IntN(4) == 0)
		}
		lines := make([]domLine, 1+rng.IntN(6))
		var items []string
		var billCodes []string
		reuseLive := ""
		for j := range lines {
			l := &lines[j]
			l.code = codes[rng.IntN(len(codes))]
			switch rng.IntN(4) {
			case 0: // large
				l.price, l.qty = domDecimal(rng, 20000, 2), domDecimal(rng, 5, 0)
			case 1: // fine prices and quantities
				l.price, l.qty = domDecimal(rng, 30, 6), domDecimal(rng, 20, 4)
			default:
				l.price, l.qty = domDecimal(rng, 3000, 2), domDecimal(rng, 10, 2)
			}
			if ratOf(t, l.qty).Sign() == 0 {
				l.qty = "1"
			}
			domSplit(t, cat, l)
			if rng.IntN(3) == 0 {
				k := 1 + rng.IntN(2)
				for ; k > 0; k-- {
					var c string
					switch {
					case len(freed) > 0 && rng.IntN(4) == 0:
						c, freed = freed[len(freed)-1], freed[:len(freed)-1]
					default:
						nextCode++
						c = fmt.Sprintf("839%017d", nextCode)
					}
					l.codes = append(l.codes, c)
				}
			}
			if reuseLive == "" && len(traceOwner) > 0 && rng.IntN(25) == 0 {
				for c := range traceOwner {
					reuseLive = c
					break
				}
				l.codes = append(l.codes, reuseLive)
			}
			billCodes = append(billCodes, l.codes...)
			item := fmt.Sprintf(`{"code":%q,"unit_price":%q,"quantity":%q,"amount":%q`, l.code, l.price, l.qty, fenString(l.amount))
			if len(l.codes) > 0 {
				cj, _ := json.Marshal(l.codes)
				item += `,"trace_codes":` + string(cj)
			}
			items = append(items, item+"}")
		}
		useAccount := rng.IntN(3) > 0
		body := []byte(fmt.Sprintf(`{"request_id":"r-%d","person":{"id":%q,"insured_region":%q},"visit":%s,"use_personal_account":%t,"items":[%s]}`,
			i, p.id, p.region, visit, useAccount, strings.Join(items, ",")))
		ctx := fmt.Sprintf("bill %d (%s at %s, %s, %s)", i, p.id, hosp.ID, vt, body)

		head := h.head()
		qs, qb := h.do("POST", "/v1/settlements/quote", token, body)
		if cat == nil {
			// No catalog on the treating region's chain: refused, not
			// settled as all unlisted (TestNoCatalogRefused).
			for _, path := range []string{"/v1/settlements/quote", "/v1/settlements"} {
				status, b := h.do("POST", path, token, body)
				if a := decodeAnswer(t, b); status != 422 || a.Error == nil || a.Error.Code != "no_catalog" {
					t.Fatalf("%s: %s without a catalog = %d %s", ctx, path, status, b)
				}
			}
			if h.head() != head {
				t.Fatalf("%s: a refused bill wrote to the ledger", ctx)
			}
			for _, c := range billCodes {
				if traceOwner[c] == nil {
					freed = append(freed, c)
				}
			}
			counts["no_catalog"]++
			continue
		}
		if reuseLive != "" {
			for _, path := range []string{"/v1/settlements/quote", "/v1/settlements"} {
				status, b := h.do("POST", path, token, body)
				if a := decodeAnswer(t, b); status != 409 || a.Error == nil || a.Error.Code != "trace_code_reused" || !strings.Contains(a.Error.Message, reuseLive) {
					t.Fatalf("%s: %s with live code %s = %d %s", ctx, path, reuseLive, status, b)
				}
			}
			if h.head() != head {
				t.Fatalf("%s: a refused bill wrote to the ledger", ctx)
			}
			// Its fresh codes were not taken.
			for _, c := range billCodes {
				if c != reuseLive && traceOwner[c] == nil {
					freed = append(freed, c)
				}
			}
			counts["trace_refused"]++
			continue
		}
		if qs != 200 {
			t.Fatalf("%s: quote %d %s", ctx, qs, qb)
		}
		if h.head() != head {
			t.Fatalf("%s: a quote wrote to the ledger", ctx)
		}
		status, sb := h.do("POST", "/v1/settlements", token, body)
		if status != 200 {
			t.Fatalf("%s: settle %d %s", ctx, status, sb)
		}
		q, a := decodeAnswer(t, qb), decodeAnswer(t, sb)
		mq := domAmounts(t, ctx+" quote", q, 1)
		m := domAmounts(t, ctx, a, 1)
		// A quote is the settlement it precedes.
		for k, v := range m {
			if mq[k] != v {
				t.Fatalf("%s: quote's %s = %d, the settlement's %d", ctx, k, mq[k], v)
			}
		}
		if fmt.Sprint(q.Notes) != fmt.Sprint(a.Notes) || fmt.Sprint(q.Lines) != fmt.Sprint(a.Lines) {
			t.Fatalf("%s: quote and settlement differ:\n%s\n%s", ctx, qb, sb)
		}
		// The catalog step, line by line (L1–L4), with the treating catalog.
		if len(a.Lines) != len(lines) {
			t.Fatalf("%s: %d lines answered for %d", ctx, len(a.Lines), len(lines))
		}
		domCheckLines(t, ctx, a, lines)
		// Personal account (policies.md §2.5): employees only, when asked,
		// min(balance, total − fund_total − full_self_pay − over_limit).
		wantAcct := int64(0)
		if p.employee && useAccount {
			wantAcct = min(p.balance, m["total"]-m["fund_total"]-m["full_self_pay"]-m["over_limit"])
		}
		if m["personal_account"] != wantAcct {
			t.Fatalf("%s: personal_account %d, want %d (balance %d): %s", ctx, m["personal_account"], wantAcct, p.balance, sb)
		}
		p.balance -= m["personal_account"]
		if m["personal_account"] > 0 {
			counts["account"]++
		}
		if m["fund_total"] > 0 {
			counts["funded"]++
		}
		// GET answers the same.
		gs, gb := h.do("GET", "/v1/settlements/"+a.SettlementID, token, nil)
		if gs != 200 || string(gb) != string(sb) {
			t.Fatalf("%s: GET = %d %s, settled %s", ctx, gs, gb, sb)
		}
		s := &settled{id: a.SettlementID, token: token, person: p, body: body, answer: sb, amounts: m, codes: billCodes}
		for _, c := range billCodes {
			traceOwner[c] = s
		}
		live = append(live, s)
		counts["settlement"]++
	}
	if counts["settlement"] < n/2 || counts["reversal"] == 0 || counts["account"] == 0 || counts["funded"] == 0 {
		t.Fatalf("the run did not cover what it should: %v", counts)
	}
	t.Logf("%v", counts)
}

func TestDomainIdentitiesWasm(t *testing.T) {
	n := 600
	if testing.Short() {
		n = 150
	}
	domRun(t, false, 1, n)
}

func TestDomainIdentitiesNative(t *testing.T) {
	n := 600
	if testing.Short() {
		n = 150
	}
	domRun(t, true, 2, n)
}
