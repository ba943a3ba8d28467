package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"medgate/engine"
	"medgate/plugins/conformance"
)

// The tests of this file hold the reference policies to policies.md clause
// by clause at the boundaries the worked examples leave out: a cap reached
// exactly by rounding, a cap crossed within one bill, a deductible taken
// when the cap is already used up, a serious-illness threshold and segment
// bound met exactly, an assistance limit reached exactly and then crossed,
// the first and the last day of a waiting period (leap day and month end
// included), version and year by the discharge date of a stay spanning New
// Year, per-line rounding of the catalog step. Every expected amount was
// computed by hand from policies.md (the arithmetic is in the comments),
// never by running the code, and every scenario runs through the real HTTP
// API with the WebAssembly modules and with the same policies compiled
// natively.

// clItem is one bill line; quantity "" is 1.
type clItem struct{ code, price, qty string }

// clWant is the expected answer: the amounts a policy decides (the
// catalog step's sums are checked by the identities), and the version.
type clWant struct {
	version                                  string
	e, d, basic, serious, assist, acct, cash string
}

// clStep is one request of a scenario.
type clStep struct {
	id        string // request_id, and the name a reversal refers to
	op        string // "" (settle), "quote", "reverse", "upsert" (line into region's registry)
	line      string // upsert: the person line
	ref       string // reverse: the id of the settlement to reverse
	hosp      string
	region    string
	person    string
	typ       string
	admitted  string // inpatient and maternity; the date is the discharge
	date      string
	emergency bool
	birth     int
	account   bool
	items     []clItem // default: one XA line of price e
	e         string
	want      clWant
}

// clScenario is a sequence of requests against a fresh ledger.
type clScenario struct {
	name    string
	persons map[string][]string // insured region -> person lines
	steps   []clStep
}

var clHospitals = []HospitalRecord{
	{ID: "H3716020001", Region: "371602", Level: 3, AssistanceDesignated: true},
	{ID: "H3716020002", Region: "371602", Level: 2},
	{ID: "H3716210001", Region: "371621", Level: 1},
	{ID: "H3701020001", Region: "370102", Level: 3, AssistanceDesignated: true},
	{ID: "H3701020002", Region: "370102", Level: 2},
	{ID: "H3701020003", Region: "370102", Level: 1},
	{ID: "H1525020001", Region: "152502", Level: 3, AssistanceDesignated: true},
	{ID: "H1525020002", Region: "152502", Level: 2},
	{ID: "H1525270001", Region: "152527", Level: 1, AssistanceDesignated: true},
	{ID: "H1501020001", Region: "150102", Level: 3, AssistanceDesignated: true},
	{ID: "H1101050001", Region: "110105", Level: 3},
	{ID: "H1101050002", Region: "110105", Level: 1},
}

// clCatalog is every province's catalog (the hospitals' regions have none
// of their own, so the province's applies, policies.md §1).
var clCatalog = []string{
	`{"code":"XA","class":"A"}`,
	`{"code":"XB","class":"B","selfpay_prop":"0.10"}`,
	`{"code":"XP","class":"A","price_cap":"100.00"}`,
	`{"code":"XC","class":"C"}`,
}

func clPerson(id, scheme, employment, registration, extra string) string {
	return fmt.Sprintf(`{"id":%q,"scheme":%q,"employment":%q,"registration":%q%s}`, id, scheme, employment, registration, extra)
}

func (s *clScenario) world(t *testing.T) *World {
	wj := worldJSON{Hospitals: clHospitals, Catalogs: map[string][]json.RawMessage{}, Persons: map[string][]json.RawMessage{}}
	for _, r := range []string{"370000", "150000", "110000"} {
		for _, l := range clCatalog {
			wj.Catalogs[r] = append(wj.Catalogs[r], json.RawMessage(l))
		}
	}
	for r, lines := range s.persons {
		for _, l := range lines {
			wj.Persons[r] = append(wj.Persons[r], json.RawMessage(l))
		}
	}
	return wj.toWorld(t)
}

func (st *clStep) body(t *testing.T) []byte {
	v := map[string]any{"type": st.typ}
	if st.admitted != "" {
		v["admitted_on"], v["discharged_on"] = st.admitted, st.date
	} else {
		v["visit_date"] = st.date
	}
	if st.emergency {
		v["emergency"] = true
	}
	if st.birth != 0 {
		v["birth_order"] = st.birth
	}
	items := []map[string]string{}
	list := st.items
	if list == nil {
		list = []clItem{{"XA", st.e, ""}}
	}
	for _, it := range list {
		q := it.qty
		if q == "" {
			q = "1"
		}
		items = append(items, map[string]string{"code": it.code, "unit_price": it.price, "quantity": q, "amount": clAmount(t, it.price, q)})
	}
	b, _ := json.Marshal(map[string]any{
		"request_id":           st.id,
		"person":               map[string]string{"id": st.person, "insured_region": st.region},
		"visit":                v,
		"use_personal_account": st.account,
		"items":                items,
	})
	return b
}

// clAmount is round(unit_price × quantity) half up to the fen, in exact
// decimal arithmetic (policies.md §1).
func clAmount(t *testing.T, price, qty string) string {
	p, q := ratOf(t, price), ratOf(t, qty)
	return fenString(halfUpFen(p.Mul(p, q)))
}

func runClauses(t *testing.T, scenarios []clScenario) {
	for _, native := range []bool{false, true} {
		mode := "wasm"
		if native {
			mode = "native"
		}
		for _, sc := range scenarios {
			t.Run(mode+"/"+sc.name, func(t *testing.T) {
				h := newHarness(t, sc.world(t))
				if native {
					for _, v := range conformance.Versions {
						h.policies.Put(v.Region, engine.Version{Name: v.Name, EffectiveFrom: v.Effective, Module: engine.NewNative(v.Region, v.Name, v.Policy)})
					}
				}
				ids := map[string]answer{}
				for i := range sc.steps {
					st := &sc.steps[i]
					label := fmt.Sprintf("step %d (%s)", i, st.id)
					if st.op == "upsert" {
						status, body := h.do("POST", "/v1/regions/"+st.region+"/persons", "tok-region-"+st.region, []byte(st.line+"\n"))
						if status != 200 || !strings.Contains(string(body), `"updated":1`) {
							t.Fatalf("%s: %d %s", label, status, body)
						}
						continue
					}
					if st.op == "reverse" {
						orig := ids[st.ref]
						status, body := h.do("POST", "/v1/settlements/"+orig.SettlementID+"/reversal", "tok-"+st.hosp,
							[]byte(`{"request_id":"`+st.id+`","reason":"test"}`))
						if status != 200 {
							t.Fatalf("%s: %d %s", label, status, body)
						}
						a := decodeAnswer(t, body)
						for k, v := range orig.Amounts {
							if want := fenString(-fenOf(t, k, v)); a.Amounts[k] != want {
								t.Errorf("%s: %s = %s, want %s", label, k, a.Amounts[k], want)
							}
						}
						continue
					}
					path := "/v1/settlements"
					if st.op == "quote" {
						path += "/quote"
					}
					status, body := h.do("POST", path, "tok-"+st.hosp, st.body(t))
					if status != 200 {
						t.Fatalf("%s: %d %s", label, status, body)
					}
					a := decodeAnswer(t, body)
					ids[st.id] = a
					w := st.want
					if w.version != "" && a.Policy["version"] != w.version {
						t.Errorf("%s: version %s, want %s", label, a.Policy["version"], w.version)
					}
					zero := func(s string) string {
						if s == "" {
							return "0.00"
						}
						return s
					}
					e := w.e
					if e == "" {
						e = st.e
					}
					for _, c := range []struct{ k, want string }{
						{"eligible", e}, {"deductible", zero(w.d)}, {"basic_fund", zero(w.basic)},
						{"serious_illness", zero(w.serious)}, {"medical_assistance", zero(w.assist)},
						{"personal_account", zero(w.acct)}, {"cash", zero(w.cash)},
					} {
						if a.Amounts[c.k] != c.want {
							t.Errorf("%s: %s = %s, want %s\nnotes: %s", label, c.k, a.Amounts[c.k], c.want, strings.Join(a.Notes, "; "))
						}
					}
					am := func(k string) int64 { return fenOf(t, k, a.Amounts[k]) }
					if am("fund_total") != am("basic_fund")+am("serious_illness")+am("medical_assistance") ||
						am("cash") != am("total")-am("fund_total")-am("personal_account") {
						t.Errorf("%s: amounts do not add up: %v", label, a.Amounts)
					}
				}
			})
		}
	}
}

// TestR5Clauses371600 holds region 371600 (policies.md §3) to hand-computed
// boundaries.
func TestR5Clauses371600(t *testing.T) {
	const r = "371600"
	runClauses(t, []clScenario{{
		// Employees' 200,000 cap reached exactly by rounding; the yearly
		// chronic deductible is still taken once it is (§2.1); a stay
		// spanning New Year counts in its discharge year; a reversal of a
		// 2025 settlement booked after 2026 ones moves 2025 only.
		name:    "employee cap exact",
		persons: map[string][]string{r: {clPerson("EMPCAP", "employee", "active", "none", "")}},
		steps: []clStep{
			// L1: D 200; 222,222.22 × 90% = 199,999.998 → 200,000.00 = the cap.
			{id: "a1", hosp: "H3716210001", region: r, person: "EMPCAP", typ: "inpatient", admitted: "2025-03-01", date: "2025-03-05", e: "222422.22",
				want: clWant{version: "v2024", d: "200.00", basic: "200000.00", cash: "22422.22"}},
			// Chronic: D 700 (yearly, before the cap); 300 × 85% = 255 → room 0.
			{id: "a2", hosp: "H3716020001", region: r, person: "EMPCAP", typ: "chronic", date: "2025-04-01", e: "1000.00",
				want: clWant{d: "700.00", cash: "1000.00"}},
			// Chronic deductible used up: D 0; 850 → room 0.
			{id: "a3", hosp: "H3716020001", region: r, person: "EMPCAP", typ: "chronic", date: "2025-04-02", e: "1000.00",
				want: clWant{cash: "1000.00"}},
			// 2026: a fresh deductible and cap: D 700; 300 × 85% = 255.00.
			{id: "a4", hosp: "H3716020001", region: r, person: "EMPCAP", typ: "chronic", date: "2026-01-02", e: "1000.00",
				want: clWant{d: "700.00", basic: "255.00", cash: "745.00"}},
			// Admitted 2025-12-30, discharged 2026-01-05: 2026's cap (room
			// 199,745): D 200; 10,000 × 90% = 9,000.00.
			{id: "a5", hosp: "H3716210001", region: r, person: "EMPCAP", typ: "inpatient", admitted: "2025-12-30", date: "2026-01-05", e: "10200.00",
				want: clWant{d: "200.00", basic: "9000.00", cash: "1200.00"}},
			{id: "a6", op: "reverse", ref: "a2", hosp: "H3716020001"},
			// 2025's chronic deductible paid is 0 again (a2 reversed, a3
			// paid none): D 700; the cap is still full: basic 0.
			{id: "a7", hosp: "H3716020001", region: r, person: "EMPCAP", typ: "chronic", date: "2025-04-05", e: "1000.00",
				want: clWant{d: "700.00", cash: "1000.00"}},
			// 2026 untouched by the reversal: D 0; 850.00.
			{id: "a8", hosp: "H3716020001", region: r, person: "EMPCAP", typ: "chronic", date: "2026-02-01", e: "1000.00",
				want: clWant{basic: "850.00", cash: "150.00"}},
		},
	}, {
		// Retired employee, registration temporary: retired +5 pp and
		// -10 pp off-site on every segment; the 5,000 outpatient cap
		// crossed within one bill; each level's own yearly deductible
		// taken though the cap is used up; the personal account.
		name:    "employee retired temporary",
		persons: map[string][]string{r: {clPerson("EMPRET", "employee", "retired", "temporary", `,"account_balance":"1000.00"`)}},
		steps: []clStep{
			// Beijing L1 (off-site): D 200; 80 + 5 - 10 = 75 %: 300 × 75 % = 225.00;
			// account min(1,000, 500 - 225) = 275.00.
			{id: "b1", hosp: "H1101050002", region: r, person: "EMPRET", typ: "outpatient", date: "2025-05-01", e: "500.00", account: true,
				want: clWant{d: "200.00", basic: "225.00", acct: "275.00"}},
			// L3 local: D 400; 7,600 × 70 % = 5,320 → room 5,000 - 225 = 4,775.00;
			// account min(725, 8,000 - 4,775) = 725.00.
			{id: "b2", hosp: "H3716020001", region: r, person: "EMPRET", typ: "outpatient", date: "2025-05-02", e: "8000.00", account: true,
				want: clWant{d: "400.00", basic: "4775.00", acct: "725.00", cash: "2500.00"}},
			// L2: its own deductible 300.00 though the cap is full;
			// round(0.01 × 75 %) = 0.01 → room 0; balance 0.
			{id: "b3", hosp: "H3716020002", region: r, person: "EMPRET", typ: "outpatient", date: "2025-05-03", e: "300.01", account: true,
				want: clWant{d: "300.00", cash: "300.01"}},
			// Beijing L3 inpatient: D 800; E - D 20,000.01: 10,000 × 82.5 % =
			// 8,250.00 + 10,000.01 × 85 % = 8,500.0085 → 8,500.01.
			{id: "b4", hosp: "H1101050001", region: r, person: "EMPRET", typ: "inpatient", admitted: "2025-06-01", date: "2025-06-10", e: "20800.01",
				want: clWant{d: "800.00", basic: "16750.01", cash: "4050.00"}},
			// Emergency: no adjustment: 9,250.00 + 9,500.0095 → 9,500.01.
			{id: "b5", hosp: "H1101050001", region: r, person: "EMPRET", typ: "inpatient", admitted: "2025-06-15", date: "2025-06-20", e: "20800.01", emergency: true,
				want: clWant{d: "800.00", basic: "18750.01", cash: "2050.00"}},
		},
	}, {
		// Resident: the serious-illness base meets the threshold exactly
		// (PAY 0), then passes it by 1 fen (round(0.6 fen) = 1 fen), PAY
		// differences rounded per PAY, a cap crossed within a bill, a
		// segment bound crossed within a bill, a reversal and the same
		// bill again.
		name:    "resident serious threshold",
		persons: map[string][]string{r: {clPerson("RESSER", "resident", "active", "long_term", "")}},
		steps: []clStep{
			// L1: D 200; 148,000 × 90 % = 133,200.00; base 15,000.00 = T: 0.
			{id: "c1", hosp: "H3716210001", region: r, person: "RESSER", typ: "inpatient", admitted: "2025-02-01", date: "2025-02-10", e: "148200.00",
				want: clWant{d: "200.00", basic: "133200.00", cash: "15000.00"}},
			// Chronic E 0.02: D 0.02; base 15,000.02: PAY round(1.2 fen) = 0.01.
			{id: "c2", hosp: "H3716020001", region: r, person: "RESSER", typ: "chronic", date: "2025-02-20", e: "0.02",
				want: clWant{d: "0.02", serious: "0.01", cash: "0.01"}},
			// E 0.01: D 0.01; base 15,000.03: PAY round(1.8 fen) = 0.02: +0.01.
			{id: "c3", hosp: "H3716020001", region: r, person: "RESSER", typ: "chronic", date: "2025-02-21", e: "0.01",
				want: clWant{d: "0.01", serious: "0.01"}},
			// L2, 1st L2/L3 admission: D 500; 500 × 75 % = 375.00 (cap used
			// 133,575); base 15,625.03: PAY = 625.03 × 60 % = 375.018 → 375.02;
			// serious 375.00.
			{id: "c4", hosp: "H3716020002", region: r, person: "RESSER", typ: "inpatient", admitted: "2025-02-25", date: "2025-03-01", e: "1000.00",
				want: clWant{d: "500.00", basic: "375.00", serious: "375.00", cash: "250.00"}},
			// L3, 2nd: D 1,000; 28,000 × 60 % = 16,800 → room 16,425.00; base
			// += 12,575 → 28,200.03: PAY = 13,200.03 × 60 % = 7,920.018 →
			// 7,920.02; serious 7,545.00.
			{id: "c5", hosp: "H3716020001", region: r, person: "RESSER", typ: "inpatient", admitted: "2025-03-25", date: "2025-04-01", e: "29000.00",
				want: clWant{d: "1000.00", basic: "16425.00", serious: "7545.00", cash: "5030.00"}},
			// L3, 3rd: D 0; room 0; base 128,200.03: PAY = 100,000 × 60 % +
			// 13,200.03 × 65 % (8,580.0195 → 8,580.02) = 68,580.02; serious
			// 60,660.00.
			{id: "c6", hosp: "H3716020001", region: r, person: "RESSER", typ: "inpatient", admitted: "2025-04-20", date: "2025-05-01", e: "100000.00",
				want: clWant{serious: "60660.00", cash: "39340.00"}},
			{id: "c7", op: "reverse", ref: "c6", hosp: "H3716020001"},
			{id: "c8", hosp: "H3716020001", region: r, person: "RESSER", typ: "inpatient", admitted: "2025-04-20", date: "2025-05-01", e: "100000.00",
				want: clWant{serious: "60660.00", cash: "39340.00"}},
		},
	}, {
		// Several groups: subsistence's special serious terms and the
		// highest assistance ratio (70 % over low_income_edge's 60 %);
		// illness_poverty: normal terms, 60 %.
		name: "resident groups",
		persons: map[string][]string{r: {
			clPerson("RESSUB", "resident", "active", "long_term", `,"groups":["low_income_edge","subsistence"]`),
			clPerson("RESILL", "resident", "active", "long_term", `,"groups":["illness_poverty"]`),
		}},
		steps: []clStep{
			// L3: D 1,000; 19,000 × 60 % = 11,400.00; base 8,600: PAY special
			// (8,600 - 7,500) × 65 % = 715.00; assistance (20,000 - 11,400 -
			// 715) × 70 % = 5,519.50.
			{id: "d1", hosp: "H3716020001", region: r, person: "RESSUB", typ: "inpatient", admitted: "2025-02-20", date: "2025-03-01", e: "20000.00",
				want: clWant{d: "1000.00", basic: "11400.00", serious: "715.00", assist: "5519.50", cash: "2365.50"}},
			// Base 8,600 < 15,000: 0; assistance 8,600 × 60 % = 5,160.00.
			{id: "d2", hosp: "H3716020001", region: r, person: "RESILL", typ: "inpatient", admitted: "2025-02-20", date: "2025-03-01", e: "20000.00",
				want: clWant{d: "1000.00", basic: "11400.00", assist: "5160.00", cash: "3440.00"}},
		},
	}, {
		// Destitute: assistance 100 % of E - basic - serious until the
		// 30,000 limit is reached exactly, then nothing.
		name:    "destitute assistance limit",
		persons: map[string][]string{r: {clPerson("RESDES", "resident", "active", "long_term", `,"groups":["destitute"]`)}},
		steps: []clStep{
			// D 1,000; 29,400.00; base 20,600: PAY (13,100 × 65 %) 8,515.00;
			// assistance 12,085.00 (paid 12,085).
			{id: "e1", hosp: "H3716020001", region: r, person: "RESDES", typ: "inpatient", admitted: "2025-01-20", date: "2025-02-01", e: "50000.00",
				want: clWant{d: "1000.00", basic: "29400.00", serious: "8515.00", assist: "12085.00"}},
			// D 1,000; 23,400.00; base 37,200: PAY 19,305: 10,790.00;
			// assistance 5,810.00 (17,895).
			{id: "e2", hosp: "H3716020001", region: r, person: "RESDES", typ: "inpatient", admitted: "2025-02-20", date: "2025-03-01", e: "40000.00",
				want: clWant{d: "1000.00", basic: "23400.00", serious: "10790.00", assist: "5810.00"}},
			// 3rd: D 0; 24,000.00; base 53,200: PAY 29,705: 10,400.00;
			// assistance 5,600.00 (23,495).
			{id: "e3", hosp: "H3716020001", region: r, person: "RESDES", typ: "inpatient", admitted: "2025-03-20", date: "2025-04-01", e: "40000.00",
				want: clWant{basic: "24000.00", serious: "10400.00", assist: "5600.00"}},
			// Base 69,200: PAY 40,105: 10,400.00; assistance 5,600.00 (29,095).
			{id: "e4", hosp: "H3716020001", region: r, person: "RESDES", typ: "inpatient", admitted: "2025-04-20", date: "2025-05-01", e: "40000.00",
				want: clWant{basic: "24000.00", serious: "10400.00", assist: "5600.00"}},
			// 6,464.29 × 60 % = 3,878.574 → 3,878.57; base 71,785.72: PAY
			// 64,285.72 × 65 % = 41,785.718 → 41,785.72: 1,680.72; assistance
			// 6,464.29 - 3,878.57 - 1,680.72 = 905.00 = the room exactly.
			{id: "e5", hosp: "H3716020001", region: r, person: "RESDES", typ: "inpatient", admitted: "2025-05-20", date: "2025-06-01", e: "6464.29",
				want: clWant{basic: "3878.57", serious: "1680.72", assist: "905.00"}},
			// 600.00; base 72,185.72: PAY 42,045.718 → 42,045.72: 260.00;
			// assistance 140 → room 0.
			{id: "e6", hosp: "H3716020001", region: r, person: "RESDES", typ: "inpatient", admitted: "2025-06-20", date: "2025-07-01", e: "1000.00",
				want: clWant{basic: "600.00", serious: "260.00", cash: "140.00"}},
		},
	}, {
		// Residents' outpatient cap 300 met exactly by rounding; the
		// catalog step rounds per line (two class B lines of 0.05: pre
		// 0.01 each) and a price cap's over-limit per line.
		name:    "resident outpatient cap and line rounding",
		persons: map[string][]string{r: {clPerson("RESOP", "resident", "active", "none", "")}},
		steps: []clStep{
			// 461.54 × 65 % = 300.001 → 300.00 = the cap.
			{id: "f1", hosp: "H3716210001", region: r, person: "RESOP", typ: "outpatient", date: "2025-03-01", e: "461.54",
				want: clWant{basic: "300.00", cash: "161.54"}},
			// Two lines of 0.05 at 10 %: pre round(0.005) = 0.01 each, E 0.08;
			// 0.052 → 0.05 → room 0.
			{id: "f2", hosp: "H3716210001", region: r, person: "RESOP", typ: "outpatient", date: "2025-03-02",
				items: []clItem{{"XB", "0.05", ""}, {"XB", "0.05", ""}},
				want:  clWant{e: "0.08", cash: "0.10"}},
			// 2026: 100.005 × 3 = 300.015 → 300.02; over-limit round(0.005 × 3
			// = 0.015) = 0.02; E 300.00 × 65 % = 195.00.
			{id: "f3", hosp: "H3716210001", region: r, person: "RESOP", typ: "outpatient", date: "2026-03-01",
				items: []clItem{{"XP", "100.005", "3"}},
				want:  clWant{e: "300.00", basic: "195.00", cash: "105.02"}},
		},
	}, {
		// The settlement date (discharge for a stay) picks the version and
		// the year: a stay from 2023-12-28 to 2024-01-02 is v2024's and
		// 2024's; two_disease caps are per year and version.
		name:    "version by discharge date",
		persons: map[string][]string{r: {clPerson("RESHTN", "resident", "active", "long_term", `,"conditions":["hypertension"]`)}},
		steps: []clStep{
			// v2023: 100 × 60 % = 60.00 (cap 300).
			{id: "g1", hosp: "H3716210001", region: r, person: "RESHTN", typ: "two_disease", date: "2023-12-31", e: "100.00",
				want: clWant{version: "v2023", basic: "60.00", cash: "40.00"}},
			// v2024, 2024's first L2/L3: D 1,000; 4,000 × 60 % = 2,400.00.
			{id: "g2", hosp: "H3716020001", region: r, person: "RESHTN", typ: "inpatient", admitted: "2023-12-28", date: "2024-01-02", e: "5000.00",
				want: clWant{version: "v2024", d: "1000.00", basic: "2400.00", cash: "2600.00"}},
			// v2024, 2024's cap: 500 × 70 % = 350 → 300.00.
			{id: "g3", hosp: "H3716210001", region: r, person: "RESHTN", typ: "two_disease", date: "2024-01-01", e: "500.00",
				want: clWant{version: "v2024", basic: "300.00", cash: "200.00"}},
			// Back in 2023: 500 × 60 % = 300 → room 240.00.
			{id: "g4", hosp: "H3716210001", region: r, person: "RESHTN", typ: "two_disease", date: "2023-12-31", e: "500.00",
				want: clWant{version: "v2023", basic: "240.00", cash: "260.00"}},
		},
	}})
}

// TestR5ClausesRegistryChanges holds the readings chosen where policies.md
// is silent: a person's groups or conditions changed by the region within
// a year. The terms in force at each settlement apply to the year's
// counters as they stand: the serious-illness cap counts everything paid in
// the year under whichever terms (a reimbursement officer reads "cap
// 400,000 a year" as the year's total), and a two_disease cap raised by a
// newly registered condition leaves the room the year's payments left.
func TestR5ClausesRegistryChanges(t *testing.T) {
	const r = "371600"
	runClauses(t, []clScenario{{
		name: "groups and conditions change",
		persons: map[string][]string{r: {
			clPerson("GRPOUT", "resident", "active", "long_term", `,"groups":["destitute"]`),
			clPerson("GRPIN", "resident", "active", "long_term", ""),
			clPerson("TDCHG", "resident", "active", "long_term", `,"conditions":["hypertension"]`),
		}},
		steps: []clStep{
			// Destitute: D 1,000; 539,400 → cap 150,000.00; base 750,000: PAY
			// special 65,000 + 70,000 + 542,500 × 75 % = 541,875.00, no cap;
			// assistance 208,125 → limit 30,000.00.
			{id: "h1", hosp: "H3716020001", region: r, person: "GRPOUT", typ: "inpatient", admitted: "2025-02-20", date: "2025-03-01", e: "900000.00",
				want: clWant{d: "1000.00", basic: "150000.00", serious: "541875.00", assist: "30000.00", cash: "178125.00"}},
			{id: "h2", op: "upsert", region: r, line: clPerson("GRPOUT", "resident", "active", "long_term", `,"groups":[]`)},
			// No longer destitute: D 1,000; basic room 0; base 760,000: normal
			// PAY + 7,000, but 541,875 paid this year > 400,000: room 0.
			{id: "h3", hosp: "H3716020001", region: r, person: "GRPOUT", typ: "inpatient", admitted: "2025-03-20", date: "2025-04-01", e: "10000.00",
				want: clWant{d: "1000.00", cash: "10000.00"}},
			// Normal: basic 150,000.00; PAY 499,500 → cap 400,000.00.
			{id: "i1", hosp: "H3716020001", region: r, person: "GRPIN", typ: "inpatient", admitted: "2025-02-20", date: "2025-03-01", e: "900000.00",
				want: clWant{d: "1000.00", basic: "150000.00", serious: "400000.00", cash: "350000.00"}},
			{id: "i2", op: "upsert", region: r, line: clPerson("GRPIN", "resident", "active", "long_term", `,"groups":["destitute"]`)},
			// Destitute now, no cap: base 750,000 → 760,000 at 75 % = 7,500.00;
			// assistance 10,000 - 0 - 7,500 = 2,500.00.
			{id: "i3", hosp: "H3716020001", region: r, person: "GRPIN", typ: "inpatient", admitted: "2025-03-20", date: "2025-04-01", e: "10000.00",
				want: clWant{d: "1000.00", serious: "7500.00", assist: "2500.00"}},
			// Hypertension cap 300: 500 × 70 % = 350 → 300.00.
			{id: "j1", hosp: "H3716210001", region: r, person: "TDCHG", typ: "two_disease", date: "2025-03-01", e: "500.00",
				want: clWant{basic: "300.00", cash: "200.00"}},
			{id: "j2", op: "upsert", region: r, line: clPerson("TDCHG", "resident", "active", "long_term", `,"conditions":["hypertension","diabetes"]`)},
			// Both: cap 600, 300 paid: 350 → 300.00.
			{id: "j3", hosp: "H3716210001", region: r, person: "TDCHG", typ: "two_disease", date: "2025-03-02", e: "500.00",
				want: clWant{basic: "300.00", cash: "200.00"}},
		},
	}})
}

// TestR5Clauses152500 holds region 152500 (policies.md §4) to hand-computed
// boundaries: the first and last day of each kind of waiting period.
func TestR5Clauses152500(t *testing.T) {
	const r = "152500"
	res := func(id, enrolled string, conc bool, lapsed, repaid int, extra string) string {
		return clPerson(id, "resident", "active", "long_term", fmt.Sprintf(`,"enrolled_on":%q,"in_concentrated_period":%v,"lapsed_years":%d,"repaid_years":%d%s`,
			enrolled, conc, lapsed, repaid, extra))
	}
	// Chronic at Taibus L1 (designated) in the wait: all 0; on the first
	// day of benefits: D 300; 700 × 85 % = 595.00.
	waitPair := func(id, person, last, first string) []clStep {
		return []clStep{
			{id: id + "-wait", hosp: "H1525270001", region: r, person: person, typ: "chronic", date: last, e: "1000.00",
				want: clWant{cash: "1000.00"}},
			{id: id + "-paid", hosp: "H1525270001", region: r, person: person, typ: "chronic", date: first, e: "1000.00",
				want: clWant{d: "300.00", basic: "595.00", cash: "405.00"}},
		}
	}
	var waits []clStep
	// 2023-11-30 + 3 months = 2024-02-29 (a leap year's last day of February).
	waits = append(waits, waitPair("w1", "XLLEAP", "2024-02-28", "2024-02-29")...)
	// Lapsed 4 repaid 2, in the concentrated period: 3 + 2 = 5 → at least 6.
	waits = append(waits, waitPair("w3", "XL42C", "2025-07-14", "2025-07-15")...)
	// Lapsed 7: 3 + 7 = 10 months.
	waits = append(waits, waitPair("w4", "XL70", "2025-11-14", "2025-11-15")...)
	// Concentrated, no lapse: no wait, but a bill before enrolled_on is in it.
	waits = append(waits, waitPair("w5", "XLCONC", "2025-01-14", "2025-01-15")...)
	// 2025-08-31 + 4 months = 2025-12-31.
	waits = append(waits, waitPair("w6", "XLDEC", "2025-12-30", "2025-12-31")...)
	waits = append(waits,
		// Lapsed 4 repaid 4: 3 → at least 6: 2025-07-15. A stay discharged
		// the day before is in the wait; one discharged on it is paid: D 200;
		// 1,000 × 85 % = 850.00.
		clStep{id: "w2-wait", hosp: "H1525270001", region: r, person: "XL44", typ: "inpatient", admitted: "2025-07-01", date: "2025-07-14", e: "1200.00",
			want: clWant{cash: "1200.00"}},
		clStep{id: "w2-paid", hosp: "H1525270001", region: r, person: "XL44", typ: "inpatient", admitted: "2025-07-10", date: "2025-07-15", e: "1200.00",
			want: clWant{d: "200.00", basic: "850.00", cash: "350.00"}},
		// An employee has no wait: D 300; 700 × 90 % (employees' L1) = 630.00.
		clStep{id: "w7", hosp: "H1525270001", region: r, person: "XLEMP", typ: "chronic", date: "2025-09-01", e: "1000.00",
			want: clWant{d: "300.00", basic: "630.00", cash: "370.00"}},
		// Subsistence in the wait (until 2025-09-01): no assistance at a
		// hospital not designated; 80 % of E at a designated one.
		clStep{id: "w8a", hosp: "H1525020002", region: r, person: "XLSUB", typ: "inpatient", admitted: "2025-07-25", date: "2025-08-01", e: "5000.00",
			want: clWant{cash: "5000.00"}},
		clStep{id: "w8b", hosp: "H1525020001", region: r, person: "XLSUB", typ: "inpatient", admitted: "2025-08-10", date: "2025-08-15", e: "5000.00",
			want: clWant{assist: "4000.00", cash: "1000.00"}},
		// Out of the wait: D 800; 4,200 × 60 % = 2,520.00; base 2,480 (the
		// wait moved nothing) < 12,000; assistance 2,480 × 80 % = 1,984.00.
		clStep{id: "w8c", hosp: "H1525020001", region: r, person: "XLSUB", typ: "inpatient", admitted: "2025-08-25", date: "2025-09-01", e: "5000.00",
			want: clWant{d: "800.00", basic: "2520.00", assist: "1984.00", cash: "496.00"}},
	)
	runClauses(t, []clScenario{{
		name: "waiting periods",
		persons: map[string][]string{r: {
			res("XLLEAP", "2023-11-30", false, 0, 0, ""),
			res("XL44", "2025-01-15", false, 4, 4, ""),
			res("XL42C", "2025-01-15", true, 4, 2, ""),
			res("XL70", "2025-01-15", false, 7, 0, ""),
			res("XLCONC", "2025-01-15", true, 0, 0, ""),
			res("XLDEC", "2025-08-31", false, 1, 0, ""),
			res("XLSUB", "2025-06-01", false, 0, 0, `,"groups":["subsistence"]`),
			clPerson("XLEMP", "employee", "active", "none", `,"enrolled_on":"2025-08-31"`),
		}},
		steps: waits,
	}, {
		name: "serious segment and cap raise",
		persons: map[string][]string{r: {
			res("XLSEG", "2010-01-01", true, 0, 0, ""),
			res("XLRAISE", "2010-01-01", true, 0, 0, `,"continuous_years":5,"zero_claim_years":7`),
			clPerson("XLRETEMP", "employee", "retired", "temporary", ""),
		}},
		steps: []clStep{
			// L3: D 800; 153,000 × 60 % = 91,800.00; base 62,000.00 = T +
			// 50,000 exactly: PAY 50,000 × 60 % = 30,000.00.
			{id: "x1", hosp: "H1525020001", region: r, person: "XLSEG", typ: "inpatient", admitted: "2025-03-01", date: "2025-03-10", e: "153800.00",
				want: clWant{d: "800.00", basic: "91800.00", serious: "30000.00", cash: "32000.00"}},
			// Chronic: D 300; round(0.01 × 60 %) = 0.01; base += 300.00, all
			// at 70 %: 210.00.
			{id: "x2", hosp: "H1525020001", region: r, person: "XLSEG", typ: "chronic", date: "2025-03-20", e: "300.01",
				want: clWant{d: "300.00", basic: "0.01", serious: "210.00", cash: "90.00"}},
			// Cap 300,000 + 3,000 × (5 - 4) + min(20,000, 3,000 × 7) = 323,000:
			// D 800; 419,520 → 150,000.00; base 550,000: PAY 30,000 + 488,000 ×
			// 70 % = 371,600 → 323,000.00.
			{id: "x3", hosp: "H1525020001", region: r, person: "XLRAISE", typ: "inpatient", admitted: "2025-04-01", date: "2025-04-10", e: "700000.00",
				want: clWant{d: "800.00", basic: "150000.00", serious: "323000.00", cash: "227000.00"}},
			// Hohhot L3 (off-site for 1525), retired temporary: D 800; 10,000 ×
			// (80 + 5 - 10) % = 7,500.00.
			{id: "x4", hosp: "H1501020001", region: r, person: "XLRETEMP", typ: "inpatient", admitted: "2025-05-01", date: "2025-05-10", e: "10800.00",
				want: clWant{d: "800.00", basic: "7500.00", cash: "3300.00"}},
		},
	}})
}

// TestR5Clauses370000 holds region 370000 (policies.md §5) to hand-computed
// boundaries.
func TestR5Clauses370000(t *testing.T) {
	const r = "370000"
	runClauses(t, []clScenario{{
		// Employees' 300,000 cap met exactly by rounding; chronic then
		// pays its level's yearly deductible less what chronic paid.
		name:    "employee cap exact",
		persons: map[string][]string{r: {clPerson("SDEMP", "employee", "active", "none", "")}},
		steps: []clStep{
			// L3: D 1,000; 352,941.18 × 85 % = 300,000.003 → 300,000.00.
			{id: "s1", hosp: "H3701020001", region: r, person: "SDEMP", typ: "inpatient", admitted: "2025-03-01", date: "2025-03-10", e: "353941.18",
				want: clWant{d: "1000.00", basic: "300000.00", cash: "53941.18"}},
			// Chronic L1: D 300 - 0 = 300; 170 → room 0.
			{id: "s2", hosp: "H3701020003", region: r, person: "SDEMP", typ: "chronic", date: "2025-04-01", e: "500.00",
				want: clWant{d: "300.00", cash: "500.00"}},
			// Chronic L3: D 1,000 - 300 = 700; room 0.
			{id: "s3", hosp: "H3701020001", region: r, person: "SDEMP", typ: "chronic", date: "2025-04-02", e: "1000.00",
				want: clWant{d: "700.00", cash: "1000.00"}},
			{id: "s4", hosp: "H3701020001", region: r, person: "SDEMP", typ: "chronic", date: "2025-04-03", e: "1000.00",
				want: clWant{cash: "1000.00"}},
		},
	}, {
		// Subsistence resident: no basic cap; special serious terms across
		// the 100,000 and 200,000 segment bounds; assistance 70 % up to
		// the 50,000 limit, crossed within a bill.
		name:    "resident subsistence",
		persons: map[string][]string{r: {clPerson("SDSUB", "resident", "active", "none", `,"groups":["subsistence"]`)}},
		steps: []clStep{
			// D 1,000; 199,000 × 60 % = 119,400.00; base 80,600: PAY (73,100 ×
			// 65 %) 47,515.00; assistance 33,085 × 70 % = 23,159.50.
			{id: "t1", hosp: "H3701020001", region: r, person: "SDSUB", typ: "inpatient", admitted: "2025-02-01", date: "2025-02-10", e: "200000.00",
				want: clWant{d: "1000.00", basic: "119400.00", serious: "47515.00", assist: "23159.50", cash: "9925.50"}},
			// D 1,000 (no 3rd-admission rule here); 59,400.00; base 121,200:
			// PAY 65,000 + 13,700 × 70 % = 74,590: 27,075.00; assistance
			// 13,525 × 70 % = 9,467.50 (32,627).
			{id: "t2", hosp: "H3701020001", region: r, person: "SDSUB", typ: "inpatient", admitted: "2025-03-01", date: "2025-03-10", e: "100000.00",
				want: clWant{d: "1000.00", basic: "59400.00", serious: "27075.00", assist: "9467.50", cash: "4057.50"}},
			// Base 161,800: PAY 65,000 + 54,300 × 70 % = 103,010: 28,420.00;
			// assistance 12,180 × 70 % = 8,526.00 (41,153).
			{id: "t3", hosp: "H3701020001", region: r, person: "SDSUB", typ: "inpatient", admitted: "2025-04-01", date: "2025-04-10", e: "100000.00",
				want: clWant{d: "1000.00", basic: "59400.00", serious: "28420.00", assist: "8526.00", cash: "3654.00"}},
			// Base 202,400: PAY 131,430: 28,420.00; 8,526.00 (49,679).
			{id: "t4", hosp: "H3701020001", region: r, person: "SDSUB", typ: "inpatient", admitted: "2025-05-01", date: "2025-05-10", e: "100000.00",
				want: clWant{d: "1000.00", basic: "59400.00", serious: "28420.00", assist: "8526.00", cash: "3654.00"}},
			// Base 243,000: PAY 65,000 + 70,000 + 35,500 × 75 % = 161,625:
			// 30,195.00; assistance 10,405 × 70 % = 7,283.50 → room 321.00.
			{id: "t5", hosp: "H3701020001", region: r, person: "SDSUB", typ: "inpatient", admitted: "2025-06-01", date: "2025-06-10", e: "100000.00",
				want: clWant{d: "1000.00", basic: "59400.00", serious: "30195.00", assist: "321.00", cash: "10084.00"}},
		},
	}, {
		name:    "resident off-site chronic and maternity",
		persons: map[string][]string{r: {clPerson("SDRES", "resident", "active", "temporary", "")}},
		steps: []clStep{
			// Beijing L1 chronic: D 200; 1,000 × (80 - 10) % = 700.00.
			{id: "u1", hosp: "H1101050002", region: r, person: "SDRES", typ: "chronic", date: "2025-03-01", e: "1200.00",
				want: clWant{d: "200.00", basic: "700.00", cash: "500.00"}},
			// Birth order 2: min(1,500, 2,000) = 1,500.00.
			{id: "u2", hosp: "H3701020002", region: r, person: "SDRES", typ: "maternity", admitted: "2025-05-01", date: "2025-05-03", birth: 2, e: "2000.00",
				want: clWant{basic: "1500.00", cash: "500.00"}},
		},
	}})
}
