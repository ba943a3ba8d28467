package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/gateway/internal/testenv"
	"medgate/ledger"
	"medgate/plugins/conformance"
)

// The tests of this file run the same random workload through two
// gateways side by side, one with the regions' WebAssembly modules and one
// with the same policies compiled natively, and hold every answer of the
// two to each other (to the fen, field by field, line by line), to the
// invariants of policies.md, domain.md and abi.md, a quote to the
// settlement that follows it, and a reversal's accumulator changes to the
// negation of its settlement's.
//
// MEDGATE_DIFF_N sets the number of steps (default 200, 100 with -short),
// MEDGATE_DIFF_SEED the seed (default 7), for a long run:
//
//	MEDGATE_DIFF_N=20000 go test ./gateway -run TestR7DiffWasmNative -count=1 -timeout 1h

// diffBoundaries are yuan amounts at which a split changes rule: the
// deductibles, segment bounds, thresholds and caps of the reference
// policies (and sums of them: a bill that fills a deductible and reaches a
// segment bound exactly).
var diffBoundaries = []int64{
	200, 300, 400, 500, 600, 700, 800, 1000, 1500, 3000, 5000, 7500, 10000, 10400, 10800, 11000,
	12000, 15000, 16000, 27000, 30000, 50000, 62000, 100000, 115000, 150000, 200000, 215000, 300000, 400000,
}

// diffSide is one of the two gateways.
type diffSide struct {
	name string
	h    *harness
}

// diffNorm is an answer with what legitimately differs between the two
// gateways (the module's hash, the commit time) and, for quote, what
// differs between a quote and its settlement, left out.
func diffNorm(tb testing.TB, body []byte, quote bool) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatalf("answer is not JSON: %v\n%s", err, body)
	}
	delete(m, "committed_at")
	if p, ok := m["policy"].(map[string]any); ok {
		delete(p, "module_sha256")
	}
	if quote {
		for _, k := range []string{"settlement_id", "seq", "quote", "replayed"} {
			delete(m, k)
		}
	}
	return m
}

// diffCounters is a person's counters of a year, by name.
func diffCounters(tb testing.TB, h *harness, region, person string, year int32) map[string]int64 {
	tb.Helper()
	cs, err := h.db.Counters(region, person, year, nil)
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]int64{}
	for _, c := range cs {
		m[c.Name] = c.Value
	}
	return m
}

// diffDelta is after − before, without the zeros.
func diffDelta(before, after map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok && v != 0 {
			d[k] = -v
		}
	}
	return d
}

func diffEnvInt(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		tb.Fatalf("%s=%q: not a count", name, s)
	}
	return n
}

// diffLinePrice is a line's unit price and quantity: large, fine, ordinary,
// or a boundary amount give or take a fen.
func diffLinePrice(rng *rand.Rand) (price, qty string) {
	switch rng.IntN(12) {
	case 11: // near the largest bill the gateway takes (1e12 yuan)
		return domDecimal(rng, 100_000_000, 6), domDecimal(rng, 1000, 4)
	case 0, 5, 6:
		return domDecimal(rng, 20000, 2), domDecimal(rng, 5, 0)
	case 1, 7:
		return domDecimal(rng, 30, 6), domDecimal(rng, 20, 4)
	case 2, 8, 9:
		b := diffBoundaries[rng.IntN(len(diffBoundaries))]*100 + int64(rng.IntN(3)) - 1
		return fenString(b), "1"
	default:
		return domDecimal(rng, 3000, 2), domDecimal(rng, 10, 2)
	}
}

// diffSides starts the two gateways on the same world drawn from seed, and
// returns them, the world's persons, and a function that sends a request to
// both and fails the test unless they answer alike.
func diffSides(t *testing.T, seed uint64) ([]diffSide, []*domPerson, func(ctx, method, path, token string, body []byte) (int, []byte)) {
	// The same world twice (drawn from the same seed), one per gateway.
	wWasm, persons := domWorld(t, rand.New(rand.NewPCG(seed, 1)))
	wNative, _ := domWorld(t, rand.New(rand.NewPCG(seed, 1)))
	sides := []diffSide{{"wasm", newHarness(t, wWasm)}, {"native", newHarness(t, wNative)}}
	for _, v := range conformance.Versions {
		sides[1].h.policies.Put(v.Region, engine.Version{Name: v.Name, EffectiveFrom: v.Effective, Module: engine.NewNative(v.Region, v.Name, v.Policy)})
	}
	do := func(ctx, method, path, token string, body []byte) (int, []byte) {
		t.Helper()
		var status [2]int
		var bodies [2][]byte
		for i, s := range sides {
			status[i], bodies[i] = s.h.do(method, path, token, body)
		}
		if status[0] != status[1] || !reflect.DeepEqual(diffNorm(t, bodies[0], false), diffNorm(t, bodies[1], false)) {
			t.Fatalf("%s: %s %s: wasm and native answer differently:\nwasm   %d %s\nnative %d %s\nrequest %s",
				ctx, method, path, status[0], bodies[0], status[1], bodies[1], body)
		}
		return status[0], bodies[0]
	}
	return sides, persons, do
}

// diffRun drives n steps through a WebAssembly gateway and a native one.
func diffRun(t *testing.T, seed uint64, n int, replay bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	sides, persons, do := diffSides(t, seed)
	// counters reads a person's counters on both and checks they agree.
	counters := func(ctx string, p *domPerson, year int32) map[string]int64 {
		t.Helper()
		a := diffCounters(t, sides[0].h, p.region, p.id, year)
		b := diffCounters(t, sides[1].h, p.region, p.id, year)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: counters of %s %d differ: wasm %v, native %v", ctx, p.id, year, a, b)
		}
		return a
	}

	type settled struct {
		id, token string
		answer    []byte
		person    *domPerson
		year      int32
		amounts   map[string]int64
		delta     map[string]int64
		codes     []string
		reversed  bool
		vt, hosp  string
		birth     int
	}
	var caps diffCaps
	// The catalogs as this run changes them (a copy: domCatalogs is
	// shared with other tests).
	catalogs := map[string]map[string]domCatEntry{}
	for r, c := range domCatalogs {
		catalogs[r] = map[string]domCatEntry{}
		for code, e := range c {
			catalogs[r][code] = e
		}
	}
	catalogOf := func(region string) map[string]domCatEntry {
		for _, r := range []string{region, region[:4] + "00", region[:2] + "0000"} {
			if c, ok := catalogs[r]; ok {
				return c
			}
		}
		return nil
	}
	// The months the run commits in (UTC+8), and the net amounts it
	// settled: the clearing statements of both gateways must hold them.
	months := map[string]bool{time.Now().In(ledger.ChinaTime).Format("2006-01"): true}
	net := map[string]int64{}
	statementFields := []string{"total", "eligible", "basic_fund", "serious_illness", "medical_assistance", "fund_total", "personal_account", "cash"}
	var live []*settled
	traceOwner := map[string]*settled{}
	nextCode := 0
	codes := []string{"D1", "D2", "D3", "D4", "D5", "D6", "ZZ9", "D1", "D3"}
	visitTypes := []string{"inpatient", "outpatient", "chronic", "two_disease", "maternity", "inpatient", "chronic"}
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		if len(live) > 0 && rng.IntN(6) == 0 {
			// Reverse a settlement: often the last one, so that the
			// counters after it are those before the settlement.
			s := live[len(live)-1]
			if rng.IntN(2) == 0 {
				s = live[rng.IntN(len(live))]
			}
			if s.reversed {
				continue
			}
			ctx := fmt.Sprintf("step %d: reversal of %s", i, s.id)
			before := counters(ctx, s.person, s.year)
			status, body := do(ctx, "POST", "/v1/settlements/"+s.id+"/reversal", s.token, []byte(fmt.Sprintf(`{"request_id":"rev-%d","reason":"diff"}`, i)))
			if status != 200 {
				t.Fatalf("%s: %d %s", ctx, status, body)
			}
			m := domAmounts(t, ctx, decodeAnswer(t, body), -1)
			for k, v := range s.amounts {
				if m[k] != -v {
					t.Fatalf("%s: %s = %d, want %d", ctx, k, m[k], -v)
				}
			}
			rev, orig := decodeAnswer(t, body), decodeAnswer(t, s.answer)
			if len(rev.Lines) != len(orig.Lines) {
				t.Fatalf("%s: %d lines, the settlement had %d", ctx, len(rev.Lines), len(orig.Lines))
			}
			for j, l := range rev.Lines {
				for _, k := range []string{"amount", "full_self_pay", "over_limit", "pre_self_pay", "eligible"} {
					if fenOf(t, ctx, l[k].(string)) != -fenOf(t, ctx, orig.Lines[j][k].(string)) {
						t.Fatalf("%s: lines[%d].%s = %v, want the negation of %v", ctx, j, k, l[k], orig.Lines[j][k])
					}
				}
				for _, k := range []string{"code", "class", "listed"} {
					if l[k] != orig.Lines[j][k] {
						t.Fatalf("%s: lines[%d].%s = %v, the settlement's %v", ctx, j, k, l[k], orig.Lines[j][k])
					}
				}
			}
			after := counters(ctx, s.person, s.year)
			d := diffDelta(before, after)
			for k, v := range s.delta {
				if d[k] != -v {
					t.Fatalf("%s: counter %s moved by %d, the settlement moved it by %d (before %v, after %v)", ctx, k, d[k], v, before, after)
				}
			}
			if len(d) != len(s.delta) {
				t.Fatalf("%s: counters moved %v, the settlement's moved %v", ctx, d, s.delta)
			}
			caps.add(t, ctx, sides[0].h, s.person, s.year, s.vt, s.hosp, s.birth, s.amounts, -1)
			for _, k := range statementFields {
				net[k] -= s.amounts[k]
			}
			s.reversed = true
			s.person.balance += s.amounts["personal_account"]
			for _, c := range s.codes {
				delete(traceOwner, c)
			}
			counts["reversal"]++
			continue
		}

		if rng.IntN(150) == 0 {
			// Restart one gateway: balances and counters read from the
			// store must be those its caches served.
			sides[rng.IntN(2)].h.restart()
			counts["restart"]++
			continue
		}
		if rng.IntN(40) == 0 {
			// Change a code of a catalog: later bills are split with the
			// new entry, reversals of earlier ones negate what was
			// recorded.
			region := []string{"371602", "371600", "370000", "152502"}[rng.IntN(4)]
			code := fmt.Sprintf("D%d", 1+rng.IntN(6))
			var e domCatEntry
			switch rng.IntN(3) {
			case 0:
				e.class = "A"
			case 1:
				e.class = "B"
				e.prop = []string{"0", "0.05", "0.1", "0.3333", "1", "0.0001"}[rng.IntN(6)]
			default:
				e.class = "C"
			}
			if e.class != "C" && rng.IntN(2) == 0 {
				e.cap = domDecimal(rng, 200, 6)
			}
			line := fmt.Sprintf(`{"code":%q,"class":%q`, code, e.class)
			if e.prop != "" {
				line += fmt.Sprintf(`,"selfpay_prop":%q`, e.prop)
			}
			if e.cap != "" {
				line += fmt.Sprintf(`,"price_cap":%q`, e.cap)
			}
			owner := map[string]string{"371602": "371600", "371600": "371600", "370000": "370000", "152502": "152500"}[region]
			ctx := fmt.Sprintf("step %d: catalog %s %s", i, region, line)
			status, body := do(ctx, "POST", "/v1/regions/"+region+"/catalog", "tok-region-"+owner, []byte(line+"}\n"))
			if status != 200 {
				t.Fatalf("%s: %d %s", ctx, status, body)
			}
			catalogs[region][code] = e
			counts["catalog"]++
			continue
		}
		if rng.IntN(15) == 0 {
			// Credit an employee's personal account, so that it pays
			// again after being spent.
			p := persons[2*rng.IntN(len(persons)/2)]
			amt := rng.Int64N(500000) + 1
			ctx := fmt.Sprintf("step %d: credit of %s", i, p.id)
			status, body := do(ctx, "POST", "/v1/regions/"+p.region+"/persons/"+p.id+"/credits", "tok-region-"+p.region,
				[]byte(fmt.Sprintf(`{"reference":"c-%d","amount":%q}`, i, fenString(amt))))
			if status != 200 {
				t.Fatalf("%s: %d %s", ctx, status, body)
			}
			p.balance += amt
			counts["credit"]++
			continue
		}
		// A few persons of each region carry most bills, so that their
		// years' deductibles, caps and admission counts fill up.
		p := persons[rng.IntN(len(persons))]
		if rng.IntN(2) == 0 {
			p = persons[12*rng.IntN(3)+rng.IntN(3)]
		}
		hosp := domHospitals[rng.IntN(len(domHospitals)-1)] // the last has no catalog: TestDomainIdentities*
		token := "tok-" + hosp.ID
		cat := catalogOf(hosp.Region)
		vt := visitTypes[rng.IntN(len(visitTypes))]
		year := 2023 + rng.IntN(4)
		if rng.IntN(3) > 0 {
			year = 2025
		}
		day := fmt.Sprintf("%d-%02d-%02d", year, 1+rng.IntN(11), 1+rng.IntN(28))
		admitted := fmt.Sprintf("%d-%02d-%02d", year-rng.IntN(2), 1+rng.IntN(11), 1+rng.IntN(28))
		if admitted > day {
			admitted = day
		}
		var visit string
		birth := 1 + rng.IntN(4)
		switch vt {
		case "inpatient":
			visit = fmt.Sprintf(`{"type":%q,"admitted_on":%q,"discharged_on":%q,"emergency":%t}`, vt, admitted, day, rng.IntN(4) == 0)
		case "maternity":
			visit = fmt.Sprintf(`{"type":%q,"admitted_on":%q,"discharged_on":%q,"emergency":%t,"birth_order":%d}`,
				vt, admitted, day, rng.IntN(4) == 0, birth)
		default:
			visit = fmt.Sprintf(`{"type":%q,"visit_date":%q,"emergency":%t}`, vt, day, rng.IntN(4) == 0)
		}
		lines := make([]domLine, 1+rng.IntN(5))
		var items, billCodes []string
		for j := range lines {
			l := &lines[j]
			l.code = codes[rng.IntN(len(codes))]
			l.price, l.qty = diffLinePrice(rng)
			if ratOf(t, l.qty).Sign() == 0 {
				l.qty = "1"
			}
			domSplit(t, cat, l)
			item := fmt.Sprintf(`{"code":%q,"unit_price":%q,"quantity":%q,"amount":%q`, l.code, l.price, l.qty, fenString(l.amount))
			if rng.IntN(4) == 0 {
				nextCode++
				c := fmt.Sprintf("839%017d", nextCode)
				l.codes = []string{c}
				billCodes = append(billCodes, c)
				item += fmt.Sprintf(`,"trace_codes":[%q]`, c)
			}
			items = append(items, item+"}")
		}
		useAccount := rng.IntN(3) > 0
		body := []byte(fmt.Sprintf(`{"request_id":"r-%d","person":{"id":%q,"insured_region":%q},"visit":%s,"use_personal_account":%t,"items":[%s]}`,
			i, p.id, p.region, visit, useAccount, strings.Join(items, ",")))
		ctx := fmt.Sprintf("step %d (%s at %s, %s)", i, p.id, hosp.ID, vt)

		y := int32(year)
		before := counters(ctx, p, y)
		qs, qb := do(ctx, "POST", "/v1/settlements/quote", token, body)
		if qs != 200 {
			t.Fatalf("%s: quote %d %s\n%s", ctx, qs, qb, body)
		}
		if got := counters(ctx+" after the quote", p, y); !reflect.DeepEqual(got, before) {
			t.Fatalf("%s: a quote moved the counters: %v → %v", ctx, before, got)
		}
		status, sb := do(ctx, "POST", "/v1/settlements", token, body)
		if status != 200 {
			t.Fatalf("%s: settle %d %s\n%s", ctx, status, sb, body)
		}
		if q, a := diffNorm(t, qb, true), diffNorm(t, sb, true); !reflect.DeepEqual(q, a) {
			t.Fatalf("%s: the quote differs from the settlement that follows it:\nquote  %s\nsettle %s\nrequest %s", ctx, qb, sb, body)
		}
		a := decodeAnswer(t, sb)
		m := domAmounts(t, ctx, a, 1)
		domCheckLines(t, ctx, a, lines)
		// policies.md §2.5: employees only, when asked,
		// min(balance, total − fund_total − full_self_pay − over_limit).
		wantAcct := int64(0)
		if p.employee && useAccount {
			wantAcct = min(p.balance, m["total"]-m["fund_total"]-m["full_self_pay"]-m["over_limit"])
		}
		if m["personal_account"] != wantAcct {
			t.Fatalf("%s: personal_account %d, want %d (balance %d)", ctx, m["personal_account"], wantAcct, p.balance)
		}
		p.balance -= m["personal_account"]
		for _, s := range sides {
			bal, err := s.h.db.Balance(p.region, p.id)
			if err != nil {
				t.Fatal(err)
			}
			if bal != p.balance {
				t.Fatalf("%s: %s balance %d, want %d", ctx, s.name, bal, p.balance)
			}
		}
		after := counters(ctx, p, y)
		s := &settled{id: a.SettlementID, token: token, answer: sb, person: p, year: y, amounts: m, delta: diffDelta(before, after), codes: billCodes,
			vt: vt, hosp: hosp.ID, birth: birth}
		caps.add(t, ctx, sides[0].h, p, y, vt, hosp.ID, birth, m, 1)
		for _, k := range statementFields {
			net[k] += m[k]
		}
		for _, c := range billCodes {
			traceOwner[c] = s
		}
		live = append(live, s)
		counts["settlement"]++
		counts[vt]++
		if m["fund_total"] > 0 {
			counts["funded"]++
		}
		// What the run reached, by the policies' notes.
		for _, note := range a.Notes {
			for _, k := range []string{"cut to the", "waiting period", "waived", "off-site", "no medical assistance"} {
				if strings.Contains(note, k) {
					counts[k]++
				}
			}
		}
		for _, k := range []string{"serious_illness", "medical_assistance", "personal_account", "deductible"} {
			if m[k] > 0 {
				counts[k]++
			}
		}
	}
	// The clearing statements of the months of the run sum, over their
	// pairs, to what was settled net of reversals, on both gateways.
	months[time.Now().In(ledger.ChinaTime).Format("2006-01")] = true
	for _, side := range sides {
		got := map[string]int64{}
		for month := range months {
			status, body := side.h.do("GET", "/v1/clearing/months/"+month, "tok-clearing", nil)
			var st struct {
				Pairs []map[string]any `json:"pairs"`
			}
			if err := json.Unmarshal(body, &st); status != 200 || err != nil {
				t.Fatalf("%s: statement %s: %d %s", side.name, month, status, body)
			}
			for _, pair := range st.Pairs {
				for _, k := range statementFields {
					got[k] += fenOf(t, side.name+" statement "+k, pair[k].(string))
				}
			}
		}
		for _, k := range statementFields {
			if got[k] != net[k] {
				t.Fatalf("%s: the statements' %s sums to %d, the run settled %d net", side.name, k, got[k], net[k])
			}
		}
	}
	// Every entry re-executed with the module recorded for it answers
	// what the ledger holds (in a long run only: the replay compiles a
	// private copy of every module, which takes seconds).
	if replay {
		checked, skipped, mm, err := sides[0].h.srv.Replay(context.Background(), "", 0, 0)
		if err != nil || skipped != 0 || len(mm) != 0 || checked != counts["settlement"]+counts["reversal"] {
			t.Fatalf("replay of the wasm ledger: checked %d, skipped %d, %v, mismatches %v", checked, skipped, err, mm)
		}
	}
	t.Logf("%v", counts)
}

// diffCaps holds a person's year of settlements not reversed to the caps
// of policies.md §3–5: what the funds paid, summed by pool, never exceeds
// the pool's annual cap, and a fund a visit type or scheme does not pay
// pays nothing.
type diffCaps struct {
	sums map[string]map[string]int64 // person/year → pool → fen
}

// add adds (sign +1) or takes back (−1) a settlement's fund payments and
// checks the caps of its person's year.
func (c *diffCaps) add(t *testing.T, ctx string, h *harness, p *domPerson, year int32, vt, hospID string, birthOrder int, m map[string]int64, sign int64) {
	t.Helper()
	rec, ok, err := h.db.Person(p.region, p.id)
	if err != nil || !ok {
		t.Fatalf("%s: person %s: %v %v", ctx, p.id, ok, err)
	}
	f := rec.Facts
	resident := f.Scheme == abi.SchemeResident
	key := fmt.Sprintf("%s/%d", p.id, year)
	if c.sums == nil {
		c.sums = map[string]map[string]int64{}
	}
	s := c.sums[key]
	if s == nil {
		s = map[string]int64{}
		c.sums[key] = s
	}
	pool := vt
	if vt == "inpatient" || vt == "chronic" {
		pool = "inpatient+chronic"
	}
	s["basic "+pool] += sign * m["basic_fund"]
	s["serious"] += sign * m["serious_illness"]
	s["assistance"] += sign * m["medical_assistance"]
	level := 0
	for _, hr := range domHospitals {
		if hr.ID == hospID {
			level = int(hr.Level)
		}
	}
	dedPool := "ded " + vt
	if vt == "outpatient" {
		dedPool += fmt.Sprint(level) // 371600 employees: each level its own
	}
	if vt != "inpatient" {
		s[dedPool] += sign * m["deductible"]
	}
	if sign < 0 {
		return
	}
	const none = int64(-1)
	yuan := func(v int64) int64 { return v * 100 }
	// The deductible: per admission by level (at most), or a yearly one
	// whose sum over the year stays within it.
	admission := map[string][2][4]int64{ // region → employee, resident → by level
		"371600": {{0, 200, 400, 800}, {0, 200, 500, 1000}},
		"152500": {{0, 300, 500, 800}, {0, 200, 400, 800}},
		"370000": {{0, 300, 600, 1000}, {0, 200, 500, 1000}},
	}[p.region]
	scheme := 0
	if resident {
		scheme = 1
	}
	dedCap := int64(0) // for one settlement
	yearCap := none    // for the year's sum
	switch {
	case vt == "inpatient":
		dedCap = yuan(admission[scheme][level])
	case vt == "chronic" && p.region == "371600" && resident:
		dedCap, yearCap = yuan(200), yuan(200)
	case vt == "chronic" && p.region == "371600":
		dedCap, yearCap = yuan(700), yuan(700)
	case vt == "chronic" && p.region == "152500":
		dedCap, yearCap = yuan(300), yuan(300)
	case vt == "chronic": // 370000: the admission deductible of the level, less what chronic visits paid
		dedCap, yearCap = yuan(admission[scheme][level]), yuan(1000)
	case vt == "outpatient" && p.region == "371600" && !resident:
		dedCap = yuan([4]int64{0, 200, 300, 400}[level])
		yearCap = dedCap
	}
	if m["deductible"] > dedCap {
		t.Fatalf("%s: deductible %d above %d (level %d)", ctx, m["deductible"], dedCap, level)
	}
	if yearCap != none && s[dedPool] > yearCap {
		t.Fatalf("%s: %s of %s in %d sums to %d, above %d", ctx, dedPool, p.id, year, s[dedPool], yearCap)
	}
	conditionsCap := func(hyp, dia, both int64) int64 {
		switch {
		case f.HasCondition("hypertension") && f.HasCondition("diabetes"):
			return yuan(both)
		case f.HasCondition("hypertension"):
			return yuan(hyp)
		case f.HasCondition("diabetes"):
			return yuan(dia)
		}
		return 0
	}
	grant := func(g1, g2, g3 int64) int64 {
		switch {
		case birthOrder >= 3:
			return yuan(g3)
		case birthOrder == 2:
			return yuan(g2)
		}
		return yuan(g1)
	}
	basicCap, seriousCap, assistCap := none, none, none
	groups := len(f.Groups) > 0
	special := f.HasGroup("destitute") || f.HasGroup("subsistence") || f.HasGroup("monitored")
	switch p.region {
	case "371600":
		switch {
		case pool == "inpatient+chronic" && resident:
			basicCap = yuan(150000)
		case pool == "inpatient+chronic":
			basicCap = yuan(200000)
		case vt == "outpatient" && resident:
			basicCap = yuan(300)
		case vt == "outpatient":
			basicCap = yuan(5000)
		case vt == "two_disease" && resident:
			basicCap = conditionsCap(300, 400, 600)
		case vt == "two_disease":
			basicCap = 0
		case vt == "maternity" && resident:
			basicCap = grant(1500, 1500, 3000)
		}
		if resident && !special {
			seriousCap = yuan(400000)
		}
		assistCap = yuan(30000)
	case "152500":
		if pool == "inpatient+chronic" {
			basicCap = yuan(150000)
		} else {
			basicCap = 0
		}
		seriousCap = yuan(300000 + 3000*max(0, int64(f.ContinuousYears)-4) + min(20000, 3000*int64(f.ZeroClaimYears)))
		assistCap = yuan(30000)
		for _, hr := range domHospitals {
			if hr.ID == hospID && !hr.AssistanceDesignated && m["medical_assistance"] != 0 {
				t.Fatalf("%s: medical assistance %d at %s, not designated", ctx, m["medical_assistance"], hospID)
			}
		}
	case "370000":
		switch {
		case pool == "inpatient+chronic" && !resident:
			basicCap = yuan(300000)
		case vt == "outpatient" && resident:
			basicCap = yuan(400)
		case vt == "outpatient":
			basicCap = 0
		case vt == "two_disease" && resident:
			basicCap = conditionsCap(300, 400, 600)
		case vt == "two_disease":
			basicCap = 0
		case vt == "maternity" && resident:
			basicCap = grant(1000, 1500, 3000)
		}
		if resident && !special {
			seriousCap = yuan(400000)
		}
		assistCap = yuan(50000)
	}
	if vt == "maternity" {
		// Not counted: the cap is the grant of this one visit.
		if basicCap != none && m["basic_fund"] > basicCap {
			t.Fatalf("%s: maternity basic %d above the grant %d", ctx, m["basic_fund"], basicCap)
		}
		basicCap = none
	}
	// Serious illness for residents, assistance for the special groups,
	// both on inpatient and chronic visits only; the year's sums count
	// every visit.
	if (!resident || pool != "inpatient+chronic") && m["serious_illness"] != 0 {
		t.Fatalf("%s: serious illness %d paid on a %s visit (scheme %d)", ctx, m["serious_illness"], vt, f.Scheme)
	}
	if (!groups || pool != "inpatient+chronic") && m["medical_assistance"] != 0 {
		t.Fatalf("%s: medical assistance %d paid on a %s visit (groups %v)", ctx, m["medical_assistance"], vt, f.Groups)
	}
	for _, c := range []struct {
		name string
		sum  int64
		cap  int64
	}{{"basic " + pool, s["basic "+pool], basicCap}, {"serious", s["serious"], seriousCap}, {"assistance", s["assistance"], assistCap}} {
		if c.cap != none && c.sum > c.cap {
			t.Fatalf("%s: %s of %s in %d sums to %d over the settlements not reversed, above its cap %d (scheme %d, groups %v)",
				ctx, c.name, p.id, year, c.sum, c.cap, f.Scheme, f.Groups)
		}
	}
}

func TestR7DiffWasmNative(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 100
	}
	long := os.Getenv("MEDGATE_DIFF_N") != ""
	n = diffEnvInt(t, "MEDGATE_DIFF_N", n)
	diffRun(t, uint64(diffEnvInt(t, "MEDGATE_DIFF_SEED", 7)), n, long)
}

// TestR7DiffLargestBill sends the largest bill the gateway takes (1,000
// lines of 64-byte codes, 32 long diagnoses, amounts near the bill's limit)
// of a person in every region through both gateways.
func TestR7DiffLargestBill(t *testing.T) {
	_, persons, do := diffSides(t, 3)
	var diags []string
	for i := 0; i < MaxDiagnoses; i++ {
		diags = append(diags, fmt.Sprintf("%q", strings.Repeat("I", 60)+fmt.Sprintf("%04d", i)))
	}
	codes := []string{"D1", "D2", "D3", "D4", "D5", "D6"}
	for _, pi := range []int{0, 13, 24, 25} {
		p := persons[pi]
		var items []string
		for i := 0; i < MaxItems; i++ {
			code := codes[i%len(codes)]
			if i%7 == 0 {
				code = fmt.Sprintf("X%063d", i) // unlisted, 64 bytes
			}
			price, qty := "99999999.999999", "9.9999"
			amount := halfUpFen(new(big.Rat).Mul(ratOf(t, price), ratOf(t, qty)))
			items = append(items, fmt.Sprintf(`{"code":%q,"unit_price":%q,"quantity":%q,"amount":%q}`, code, price, qty, fenString(amount)))
		}
		for _, vt := range []string{"inpatient", "chronic"} {
			visit := fmt.Sprintf(`{"type":"inpatient","admitted_on":"2026-01-02","discharged_on":"2026-02-03","diagnoses":[%s]}`, strings.Join(diags, ","))
			if vt == "chronic" {
				visit = fmt.Sprintf(`{"type":"chronic","visit_date":"2026-03-04","diagnoses":[%s]}`, strings.Join(diags, ","))
			}
			body := []byte(fmt.Sprintf(`{"request_id":"big-%s-%s","person":{"id":%q,"insured_region":%q},"visit":%s,"use_personal_account":true,"items":[%s]}`,
				p.id, vt, p.id, p.region, visit, strings.Join(items, ",")))
			for _, path := range []string{"/v1/settlements/quote", "/v1/settlements"} {
				ctx := fmt.Sprintf("%s %s %s", p.id, vt, path)
				status, b := do(ctx, "POST", path, "tok-H3716020001", body)
				if status != 200 {
					t.Fatalf("%s: %d %.500s", ctx, status, b)
				}
				domAmounts(t, ctx, decodeAnswer(t, b), 1)
			}
		}
	}
}

// TestR7DiffABI calls each reference version's module and its native build
// with the same random inputs, including states the gateway's workload
// rarely reaches (counters near and past every cap and threshold, long
// waiting periods, every level, group and registration), and holds the two
// answers to each other, byte for byte, and to the host's checks.
// MEDGATE_DIFF_ABI_N sets the number of inputs per version (default 3,000).
func TestR7DiffABI(t *testing.T) {
	_, loaded := testenv.Engine(t)
	n := diffEnvInt(t, "MEDGATE_DIFF_ABI_N", 3000)
	rng := rand.New(rand.NewPCG(uint64(diffEnvInt(t, "MEDGATE_DIFF_SEED", 7)), 3))
	ctx := context.Background()
	groups := []string{"destitute", "subsistence", "low_income_edge", "monitored", "illness_poverty", "veteran"}
	names := []string{"adm.l23", "ded.chronic", "cap.basic", "cap.op", "cap.two_disease", "serious.base", "serious.paid", "assist.paid", "ded.op.l1", "ded.op.l2", "ded.op.l3"}
	// A fen amount: small, near a boundary (give or take a fen), or large.
	amount := func() int64 {
		switch rng.IntN(3) {
		case 0:
			return rng.Int64N(500000)
		case 1:
			return diffBoundaries[rng.IntN(len(diffBoundaries))]*100 + rng.Int64N(3) - 1
		}
		return rng.Int64N(100_000_000_00)
	}
	for _, v := range conformance.Versions {
		m := loaded[v.Region+"/"+v.Name].Module
		nat := engine.NewNative(v.Region, v.Name, v.Policy)
		var enc []byte
		var outW, outN abi.Output
		for i := 0; i < n; i++ {
			in := abi.Input{
				Date:       abi.MakeDate(int32(2023+rng.IntN(4)), int32(1+rng.IntN(12)), int32(1+rng.IntN(28))),
				UseAccount: rng.IntN(2) == 0,
				Person: abi.Person{
					Scheme: abi.Scheme(1 + rng.IntN(2)), Employment: abi.Employment(1 + rng.IntN(2)), Registration: abi.Registration(rng.IntN(5)),
					InConcentratedPeriod: rng.IntN(2) == 0, LapsedYears: int32(rng.IntN(8)), RepaidYears: int32(rng.IntN(4)),
					ContinuousYears: int32(rng.IntN(12)), ZeroClaimYears: int32(rng.IntN(10)), AccountBalance: amount(),
				},
				Visit:    abi.Visit{Type: abi.VisitType(1 + rng.IntN(5)), Emergency: rng.IntN(4) == 0},
				Hospital: abi.Hospital{Level: uint8(1 + rng.IntN(3)), AssistanceDesignated: rng.IntN(2) == 0, Offsite: rng.IntN(2) == 0, TreatingRegion: "371602", InsuredRegion: v.Region},
			}
			if rng.IntN(3) > 0 {
				in.Person.EnrolledOn = abi.MakeDate(int32(2022+rng.IntN(5)), int32(1+rng.IntN(12)), int32(1+rng.IntN(28)))
			}
			if rng.IntN(20) == 0 {
				in.Person.LapsedYears = 1<<31 - 1 - int32(rng.IntN(3))
			}
			for _, g := range groups {
				if rng.IntN(5) == 0 {
					in.Person.Groups = append(in.Person.Groups, g)
				}
			}
			for _, c := range []string{"hypertension", "diabetes"} {
				if rng.IntN(2) == 0 {
					in.Person.Conditions = append(in.Person.Conditions, c)
				}
			}
			switch in.Visit.Type {
			case abi.VisitInpatient, abi.VisitMaternity:
				in.Visit.AdmittedOn, in.Visit.DischargedOn = abi.MakeDate(in.Date.Year()-int32(rng.IntN(2)), 1, 1), in.Date
				if in.Visit.Type == abi.VisitMaternity {
					in.Visit.BirthOrder = int32(1 + rng.IntN(5))
				}
			default:
				in.Visit.VisitDate = in.Date
			}
			for k := 1 + rng.IntN(4); k > 0; k-- {
				l := abi.Line{Code: "D1", Class: abi.Class(1 + rng.IntN(3)), Listed: true, Amount: amount()}
				switch l.Class {
				case abi.ClassC:
					l.FullSelfPay = l.Amount
				default:
					l.OverLimit = rng.Int64N(l.Amount/4 + 1)
					if l.Class == abi.ClassB {
						l.PreSelfPay = (l.Amount - l.OverLimit) / 10
					}
					l.Eligible = l.Amount - l.OverLimit - l.PreSelfPay
				}
				in.Lines = append(in.Lines, l)
				in.Sums.Total += l.Amount
				in.Sums.FullSelfPay += l.FullSelfPay
				in.Sums.OverLimit += l.OverLimit
				in.Sums.PreSelfPay += l.PreSelfPay
				in.Sums.Eligible += l.Eligible
			}
			for _, name := range names {
				if rng.IntN(3) == 0 {
					val := amount()
					if name == "adm.l23" {
						val = int64(rng.IntN(5))
					}
					if val > 0 {
						in.Counters = append(in.Counters, abi.Counter{Name: name, Value: val})
					}
				}
			}
			enc = in.AppendBinary(enc[:0])
			errW := m.Call(ctx, &in, enc, &outW)
			errN := nat.Call(ctx, &in, enc, &outN)
			if fmt.Sprint(errW) != fmt.Sprint(errN) {
				t.Fatalf("%s/%s input %d: wasm %v, native %v\n%+v", v.Region, v.Name, i, errW, errN, in)
			}
			if errW != nil {
				t.Fatalf("%s/%s input %d: %v\n%+v", v.Region, v.Name, i, errW, in)
			}
			if w, nn := outW.AppendBinary(nil), outN.AppendBinary(nil); string(w) != string(nn) {
				t.Fatalf("%s/%s input %d: wasm and native answer differently:\nwasm   %+v\nnative %+v\n%+v", v.Region, v.Name, i, outW, outN, in)
			}
		}
	}
}
