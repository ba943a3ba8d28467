package gateway

// The test of this file holds the gateway's settlements to a second,
// independent reading of policies.md: a small oracle written from the spec
// text alone (§1 catalog step, §2 skeleton, §3–§5 the three reference
// regions, §6 reversal), not from the policy modules. A seeded random
// workload of persons, hospitals, catalogs and visits (deductible
// crossings, segments, caps reached mid-bill, special groups, serious
// illness thresholds and caps, assistance limits, waiting periods, year
// boundaries, dates arriving out of order, bills near the largest amounts)
// with quotes, reversals of any earlier settlement, account credits,
// registry changes to persons, catalog upserts, replacements and removals
// (the fallback to the prefecture's or province's catalog coming and
// going), reads, replays and restarts is run through
// the real HTTP handler, once with the reference WebAssembly modules and
// once with the same policies compiled natively. Every amount and every
// line of every answer must equal the oracle's to the fen, and the month's
// clearing statement the sums of them. The run also counts the rules it
// made matter and fails when the default run no longer reaches one
// (orMustCover), so that the workload cannot drift into testing nothing.
//
// MEDGATE_ORACLE_N sets the number of steps of each of the two runs
// (default 500, 200 with -short), MEDGATE_ORACLE_SEED the seed (default
// 9), for a long run:
//
//	MEDGATE_ORACLE_N=20000 go test ./gateway -run TestR9Oracle -count=1 -timeout 1h

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"medgate/engine"
	"medgate/gateway/internal/testenv"
	"medgate/plugins/conformance"
)

// ---- the oracle ----------------------------------------------------------

// orPerson is an insured person as the oracle sees it.
type orPerson struct {
	id, region       string
	employee         bool
	retired          bool
	groups           []string
	conditions       []string
	registration     string // "" when the registry line has none
	enrolledOn       string // "" when none
	inConcentrated   bool
	lapsed, repaid   int
	continuous, zero int
	balance          int64 // fen, running
	// year is where most of the person's visits fall, so that a year's
	// accumulators fill up
	year int
}

func (p *orPerson) in(group ...string) bool {
	for _, g := range p.groups {
		for _, w := range group {
			if g == w {
				return true
			}
		}
	}
	return false
}

func (p *orPerson) has(cond string) bool {
	for _, c := range p.conditions {
		if c == cond {
			return true
		}
	}
	return false
}

type orHospital struct {
	id, region string
	level      int
	designated bool
}

// orEntry is a catalog entry: prop in 1/10,000, capMicro in 1e-6 orYuan
// (-1: no price cap).
type orEntry struct {
	code, class string
	prop        int64
	capMicro    int64
}

// orLine is a bill line: priceMicro in 1e-6 orYuan, qty in 1e-4.
type orLine struct {
	code       string
	priceMicro int64
	qty        int64
	amount     int64 // fen
}

type orLineSplit struct {
	class                  string
	listed                 bool
	fsp, ol, pre, eligible int64
}

type orVisit struct {
	typ        string
	emergency  bool
	birthOrder int
	admitted   time.Time // inpatient and maternity
	date       time.Time // settlement date: discharge for inpatient and maternity
}

// orAmounts are the 13 amounts of an answer, in fen.
type orAmounts struct {
	total, fsp, ol, pre, eligible, deductible, basic, serious, assistance, fund, account, cash, personal int64
}

func (a orAmounts) m() map[string]int64 {
	return map[string]int64{"total": a.total, "full_self_pay": a.fsp, "over_limit": a.ol, "pre_self_pay": a.pre,
		"eligible": a.eligible, "deductible": a.deductible, "basic_fund": a.basic, "serious_illness": a.serious,
		"medical_assistance": a.assistance, "fund_total": a.fund, "personal_account": a.account, "cash": a.cash,
		"personal_total": a.personal}
}

type orKey struct {
	person string
	year   int
	name   string
}

// orOutcome is one settlement's answer and what it moved.
type orOutcome struct {
	amounts orAmounts
	lines   []orLineSplit
	version string
	deltas  map[orKey]int64
	person  *orPerson
}

type oracle struct {
	acc      map[orKey]int64
	catalogs map[string]map[string]orEntry
	// cover counts the rules the workload made matter, by name
	cover map[string]int
}

// divRound is a/b rounded half up, for a >= 0, b > 0.
func orDivRound(a, b int64) int64 { return (a + b/2) / b }

// orMulDiv is a × b / d rounded half up, for a, b >= 0 and d > 0, in
// arbitrary precision: a bill's largest lines overflow int64 products.
func orMulDiv(a, b, d int64) int64 {
	x := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	x.Add(x, big.NewInt(d/2))
	return x.Quo(x, big.NewInt(d)).Int64()
}

// pct is r of amount, r in tenths of a percent (925 = 92.5%).
func orPct(amount, r int64) int64 { return orMulDiv(amount, r, 1000) }

const orYuan = 100 // fen

// catalogFor is the treating region's catalog: its own, else its
// prefecture's, else its province's (§1).
func (o *oracle) catalogFor(region string) map[string]orEntry {
	for i, r := range []string{region, region[:4] + "00", region[:2] + "0000"} {
		if c, ok := o.catalogs[r]; ok {
			o.cover[[]string{"catalog.own", "catalog.prefecture", "catalog.province"}[i]]++
			return c
		}
	}
	return nil
}

// split is the catalog step of §1.
func (o *oracle) split(region string, lines []orLine) ([]orLineSplit, orAmounts) {
	cat := o.catalogFor(region)
	var out []orLineSplit
	var a orAmounts
	for _, l := range lines {
		e, listed := cat[l.code]
		s := orLineSplit{class: "C", listed: listed}
		if listed {
			s.class = e.class
		}
		switch {
		case !listed || e.class == "C":
			s.fsp = l.amount
			if !listed {
				o.cover["line.unlisted"]++
			}
		default:
			if e.capMicro >= 0 && l.priceMicro > e.capMicro {
				s.ol = orMulDiv(l.priceMicro-e.capMicro, l.qty, 1e8)
				o.cover["line.over_limit"]++
			}
			if e.class == "B" {
				s.pre = orMulDiv(l.amount-s.ol, e.prop, 10000)
				if s.pre > 0 && s.pre < l.amount-s.ol {
					o.cover["line.pre_self_pay"]++
				}
			}
			s.eligible = l.amount - s.ol - s.pre
		}
		out = append(out, s)
		a.total += l.amount
		a.fsp += s.fsp
		a.ol += s.ol
		a.pre += s.pre
		a.eligible += s.eligible
	}
	return out, a
}

// orSeg is a ratio segment of a base: up to hi fen (-1: no bound) at r
// tenths of a percent.
type orSeg struct{ hi, r int64 }

// payFrom is PAY(x) of §2.3: segments counted from threshold t.
func orPay(x, t int64, segs []orSeg) int64 {
	var sum, lo int64
	for _, s := range segs {
		top := x
		if s.hi >= 0 {
			top = min(x, t+s.hi)
		}
		if part := top - (t + lo); part > 0 {
			sum += orPct(part, s.r)
		}
		lo = s.hi
		if s.hi < 0 {
			break
		}
	}
	return sum
}

func orAddMonths(d time.Time, n int) time.Time {
	y, m, day := d.Date()
	first := time.Date(y, m+time.Month(n), 1, 0, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 1, -1).Day()
	if day > last {
		day = last
	}
	return time.Date(first.Year(), first.Month(), day, 0, 0, 0, 0, time.UTC)
}

// inWait is the Xilingol residents' waiting period of §4.
func orInWait(p *orPerson, date time.Time) bool {
	if p.region != "152500" || p.employee || p.enrolledOn == "" {
		return false
	}
	enrolled, _ := time.Parse("2006-01-02", p.enrolledOn)
	if date.Before(enrolled) {
		return true
	}
	if p.inConcentrated && p.lapsed == 0 {
		return false
	}
	months := 3 + max(0, p.lapsed-p.repaid)
	if p.lapsed >= 4 && months < 6 {
		months = 6
	}
	return date.Before(orAddMonths(enrolled, months))
}

func orStrip(code string) string {
	for strings.HasSuffix(code, "00") {
		code = code[:len(code)-2]
	}
	return code
}

// settle computes one settlement from the spec and records (but does not
// yet apply) what it moves.
func (o *oracle) settle(p *orPerson, h *orHospital, v orVisit, lines []orLine, useAccount bool) orOutcome {
	out := orOutcome{deltas: map[orKey]int64{}, person: p}
	out.lines, out.amounts = o.split(h.region, lines)
	a := &out.amounts
	E := a.eligible
	year := v.date.Year()
	get := func(name string) int64 { return o.acc[orKey{p.id, year, name}] }
	add := func(name string, d int64) { out.deltas[orKey{p.id, year, name}] += d }
	out.version = "v1"
	if p.region == "371600" {
		out.version = "v2023"
		if !v.date.Before(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
			out.version = "v2024"
		}
	}

	// cross-region adjustment, tenths of a percent
	var adj int64
	if !strings.HasPrefix(h.region, orStrip(p.region)) && !v.emergency {
		switch p.registration {
		case "long_term", "referral":
		case "temporary":
			adj = 100
			o.cover["adjust.temporary"]++
		default:
			adj = 200
			o.cover["adjust.none"]++
		}
	}
	L := h.level
	lv := func(l1, l2, l3 int64) int64 { return [...]int64{l1, l2, l3}[L-1] }
	retired := int64(0)
	if p.retired {
		retired = 50
	}

	var (
		ded       int64   // deductible of this visit (before min with E)
		dedYearly string  // accumulator of a yearly deductible, "" per admission
		segs      []orSeg // ratio segments of E - D
		adjusted  bool    // the ratio takes the cross-region adjustment
		capName   string  // "" no cap
		capLimit  int64
		grant     int64 = -1 // maternity grant: basic = min(grant, E)
		serious   bool       // serious illness and assistance apply (inpatient, chronic)
	)
	flatR := func(r int64) []orSeg { return []orSeg{{-1, r}} }
	res := !p.employee
	switch p.region {
	case "371600":
		switch {
		case p.employee && v.typ == "inpatient":
			ded = lv(200, 400, 800) * orYuan
			if L == 3 {
				if p.retired {
					segs = []orSeg{{10000 * orYuan, 925}, {-1, 950}}
				} else {
					segs = []orSeg{{10000 * orYuan, 850}, {-1, 900}}
				}
			} else {
				segs = flatR(900 + retired)
			}
			adjusted, capName, capLimit = true, "main", 200000*orYuan
		case p.employee && v.typ == "chronic":
			ded, dedYearly = 700*orYuan, "chronic_ded"
			segs, adjusted, capName, capLimit = flatR(850+retired), true, "main", 200000*orYuan
		case p.employee && v.typ == "outpatient":
			ded, dedYearly = lv(200, 300, 400)*orYuan, "outpatient_ded_L"+strconv.Itoa(L)
			segs, adjusted, capName, capLimit = flatR(lv(800, 700, 650)+retired), true, "outpatient", 5000*orYuan
		case p.employee && v.typ == "maternity":
			segs = flatR(1000)
		case res && v.typ == "inpatient":
			ded = lv(200, 500, 1000) * orYuan
			if L >= 2 {
				if get("admissions_L23") >= 2 {
					ded = 0
					o.cover["deductible.third_admission"]++
				}
				add("admissions_L23", 1)
			}
			segs, adjusted, capName, capLimit = flatR(lv(900, 750, 600)), true, "main", 150000*orYuan
		case res && v.typ == "chronic":
			ded, dedYearly = 200*orYuan, "chronic_ded"
			segs, adjusted, capName, capLimit = flatR(650), true, "main", 150000*orYuan
		case res && v.typ == "outpatient":
			segs, adjusted, capName, capLimit = flatR(lv(650, 0, 0)), true, "outpatient", 300*orYuan
		case res && v.typ == "two_disease":
			r := int64(700)
			if out.version == "v2023" {
				r = 600
			}
			segs, capName = flatR(r), "two_disease"
			switch {
			case p.has("hypertension") && p.has("diabetes"):
				capLimit = 600 * orYuan
			case p.has("hypertension"):
				capLimit = 300 * orYuan
			case p.has("diabetes"):
				capLimit = 400 * orYuan
			}
		case res && v.typ == "maternity":
			grant = 1500 * orYuan
			if v.birthOrder >= 3 {
				grant = 3000 * orYuan
			}
		}
	case "152500":
		r := lv(900, 850, 800) + retired
		d := lv(300, 500, 800) * orYuan
		if res {
			r, d = lv(850, 750, 600), lv(200, 400, 800)*orYuan
		}
		switch v.typ {
		case "inpatient":
			ded, segs, adjusted, capName, capLimit = d, flatR(r), true, "main", 150000*orYuan
		case "chronic":
			ded, dedYearly = 300*orYuan, "chronic_ded"
			segs, adjusted, capName, capLimit = flatR(r), true, "main", 150000*orYuan
		}
	case "370000":
		r := int64(850) + retired
		d := lv(300, 600, 1000) * orYuan
		capName, capLimit = "main", 300000*orYuan
		if res {
			r, d = lv(800, 700, 600), lv(200, 500, 1000)*orYuan
			capName = "" // no basic annual cap for residents
		}
		switch {
		case v.typ == "inpatient":
			ded, segs, adjusted = d, flatR(r), true
		case v.typ == "chronic":
			// the level's admission deductible less what chronic visits
			// already paid towards it this year
			ded, dedYearly = max(0, d-get("chronic_ded")), "chronic_ded"
			segs, adjusted = flatR(r), true
		case res && v.typ == "outpatient":
			segs, adjusted, capName, capLimit = flatR(lv(650, 0, 0)), true, "outpatient", 400*orYuan
		case res && v.typ == "two_disease":
			segs, capName = flatR(750), "two_disease"
			capLimit = 0
			switch {
			case p.has("hypertension") && p.has("diabetes"):
				capLimit = 600 * orYuan
			case p.has("hypertension"):
				capLimit = 300 * orYuan
			case p.has("diabetes"):
				capLimit = 400 * orYuan
			}
		case p.employee && v.typ == "maternity":
			segs, capName = flatR(1000), ""
		case res && v.typ == "maternity":
			grant, capName = [...]int64{1000, 1500, 3000}[min(v.birthOrder, 3)-1]*orYuan, ""
		default:
			capName = ""
		}
	}
	if v.typ != "inpatient" && v.typ != "chronic" && v.typ != "outpatient" && v.typ != "two_disease" {
		// maternity is not counted against a cap
		capName = ""
	}
	serious = v.typ == "inpatient" || v.typ == "chronic"
	waiting := orInWait(p, v.date)
	if waiting {
		o.cover["waiting"]++
	}
	if waiting {
		// nothing but assistance; no deductible, cap, admission or
		// serious accumulator moves
		for k := range out.deltas {
			delete(out.deltas, k)
		}
		segs, grant, ded = nil, -1, 0
	}

	// 1. deductible
	var D int64
	if len(segs) > 0 {
		rem := ded
		if dedYearly != "" && !(p.region == "370000" && v.typ == "chronic") {
			rem = max(0, ded-get(dedYearly))
		}
		D = min(E, rem)
		switch {
		case rem > 0 && D < rem:
			o.cover["deductible.not_filled"]++
		case rem > 0 && rem < ded:
			o.cover["deductible.rest_of_yearly"]++
		case ded > 0 && rem == 0:
			o.cover["deductible.yearly_used"]++
		}
		if dedYearly != "" {
			add(dedYearly, D)
		}
	}
	a.deductible = D
	// 2. basic fund
	var basic int64
	if grant >= 0 {
		basic = min(grant, E)
		if E < grant {
			o.cover["maternity.grant_over_E"]++
		}
	} else {
		base := E - D
		var lo int64
		for _, s := range segs {
			r := s.r
			if adjusted {
				r = max(0, r-adj)
			}
			top := base
			if s.hi >= 0 {
				top = min(base, s.hi)
			}
			if top > lo {
				if lo > 0 {
					o.cover["ratio.second_segment"]++
				}
				basic += orPct(top-lo, r)
			}
			lo = s.hi
			if s.hi < 0 {
				break
			}
		}
		if capName != "" && len(segs) > 0 {
			room := max(0, capLimit-get(capName))
			if room == 0 && D > 0 {
				o.cover["deductible.taken_with_cap_exhausted"]++
			}
			if basic > room {
				o.cover["cap.cut."+capName]++
				if room > 0 {
					o.cover["cap.reached_mid_bill."+capName]++
				}
			}
			basic = min(basic, room)
			add(capName, basic)
		}
	}
	a.basic = basic
	// 3. serious illness, residents
	if serious && res && !waiting {
		var (
			t    int64
			ss   []orSeg
			sCap int64 = -1
		)
		switch p.region {
		case "371600", "370000":
			if p.in("destitute", "subsistence", "monitored") {
				t, ss = 7500*orYuan, []orSeg{{100000 * orYuan, 650}, {200000 * orYuan, 700}, {-1, 750}}
			} else {
				t, ss, sCap = 15000*orYuan, []orSeg{{100000 * orYuan, 600}, {200000 * orYuan, 650}, {-1, 700}}, 400000*orYuan
			}
		case "152500":
			t, ss = 12000*orYuan, []orSeg{{50000 * orYuan, 600}, {-1, 700}}
			sCap = (300000 + 3000*int64(max(0, p.continuous-4)) + min(20000, 3000*int64(p.zero))) * orYuan
		}
		before := get("serious_base")
		after := before + E - basic
		add("serious_base", E-basic)
		s := orPay(after, t, ss) - orPay(before, t, ss)
		if sCap >= 0 {
			if room := max(0, sCap-get("serious_paid")); s > room {
				o.cover["serious.cap_cut"]++
				s = room
			}
		}
		add("serious_paid", s)
		if s > 0 {
			o.cover["serious.paid."+p.region]++
			if before < t {
				o.cover["serious.crossed_threshold"]++
			}
			if t == 7500*orYuan {
				o.cover["serious.special_terms"]++
			}
		}
		a.serious = s
	}
	// 4. medical assistance
	if serious && len(p.groups) > 0 && (p.region != "152500" || h.designated) {
		var r, limit int64
		switch p.region {
		case "371600":
			r, limit = 60, 30000*orYuan
			if p.in("subsistence") {
				r = 70
			}
		case "152500":
			r, limit = 60, 30000*orYuan
			if p.in("subsistence") {
				r = 80
			}
		case "370000":
			r, limit = 60, 50000*orYuan
			if p.in("subsistence") {
				r = 70
			}
		}
		if p.in("destitute") {
			r = 100
		}
		m := orPct(E-a.basic-a.serious, r*10)
		if room := max(0, limit-get("assistance")); m > room {
			o.cover["assistance.limit_cut"]++
			m = room
		}
		if m > 0 && waiting {
			o.cover["waiting.assistance"]++
		}
		if m > 0 {
			o.cover[fmt.Sprintf("assistance.paid.%s.%d%%", p.region, r)]++
		}
		add("assistance", m)
		a.assistance = m
	}
	a.fund = a.basic + a.serious + a.assistance
	// 5. personal account
	if p.employee && useAccount {
		a.account = min(p.balance, a.total-a.fund-a.fsp-a.ol)
		if a.account > 0 && a.account == p.balance {
			o.cover["account.balance_used_up"]++
		}
	}
	a.cash = a.total - a.fund - a.account
	a.personal = a.total - a.fund
	return out
}

func (o *oracle) apply(out orOutcome, sign int64) {
	for k, d := range out.deltas {
		o.acc[k] += sign * d
	}
	out.person.balance -= sign * out.amounts.account
}

// ---- the workload ----------------------------------------------------------

func orFen(v int64) string {
	s := ""
	if v < 0 {
		s, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", s, v/100, v%100)
}

func orDecimal(v int64, places int) string {
	p := int64(1)
	for i := 0; i < places; i++ {
		p *= 10
	}
	return fmt.Sprintf("%d.%0*d", v/p, places, v%p)
}

var orHospitals = []*orHospital{
	{"H3716020001", "371602", 3, true},
	{"H3716020002", "371602", 2, false},
	{"H3716210001", "371621", 1, true}, // no own catalog: Binzhou's (371600)
	{"H3716210002", "371621", 2, true},
	{"H3710020001", "371002", 2, true}, // Weihai: no catalog but Shandong's (370000); off-site for 371600
	{"H3701020001", "370102", 3, true},
	{"H3701020002", "370102", 1, false},
	{"H1525020001", "152502", 3, true},
	{"H1525020002", "152502", 2, false},
	{"H1525270001", "152527", 1, true}, // Inner Mongolia's catalog (150000)
	{"H1501020001", "150102", 3, true},
	{"H1101050001", "110105", 3, false},
}

var orCodes = []string{"XA01", "XA02", "XA03", "XB01", "XB02", "XB03", "XB04", "XC01", "XN01"}

// orWorld makes the random world: catalogs, persons, and the world JSON.
func orWorld(rng *rand.Rand, nPersons int) (*oracle, []*orPerson, worldJSON) {
	o := &oracle{acc: map[orKey]int64{}, catalogs: map[string]map[string]orEntry{}, cover: map[string]int{}}
	var wj worldJSON
	wj.Catalogs = map[string][]json.RawMessage{}
	wj.Persons = map[string][]json.RawMessage{}
	for _, h := range orHospitals {
		wj.Hospitals = append(wj.Hospitals, HospitalRecord{ID: h.id, Region: h.region, Level: uint8(h.level), AssistanceDesignated: h.designated})
	}
	for _, region := range []string{"371602", "371600", "370102", "370000", "152502", "150000", "110105"} {
		cat, lines := orCatalog(rng)
		o.catalogs[region] = cat
		wj.Catalogs[region] = lines
	}
	groups := []string{"destitute", "subsistence", "low_income_edge", "monitored", "illness_poverty"}
	var persons []*orPerson
	for i := 0; i < nPersons; i++ {
		region := []string{"371600", "152500", "370000"}[i%3]
		p := &orPerson{id: fmt.Sprintf("%s%012d", region, i), region: region, employee: rng.IntN(5) < 2}
		p.retired = p.employee && rng.IntN(3) == 0
		// every region gets every assistance ratio and both serious terms
		switch k := i / 3; k % 6 {
		case 1:
			p.groups = []string{"destitute"}
		case 2:
			p.groups = []string{"subsistence"}
		case 3:
			p.groups = []string{"low_income_edge", "monitored"}
		case 4:
			p.groups = []string{groups[rng.IntN(len(groups))]}
		case 5:
			p.groups = []string{"illness_poverty", "subsistence"}
		}
		switch rng.IntN(5) {
		case 1:
			p.conditions = []string{"hypertension"}
		case 2:
			p.conditions = []string{"diabetes", "copd"}
		case 3:
			p.conditions = []string{"hypertension", "diabetes"}
		case 4:
			p.conditions = []string{"copd"} // neither of the two diseases
		}
		p.registration = []string{"", "none", "long_term", "referral", "temporary"}[rng.IntN(5)]
		if rng.IntN(4) > 0 {
			p.balance = int64(rng.IntN(300000))
		}
		if region == "152500" && rng.IntN(3) > 0 {
			d := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(800))
			if rng.IntN(3) == 0 {
				d = time.Date(2024+rng.IntN(2), time.Month(1+rng.IntN(12)), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, -1) // a month's end
			}
			p.enrolledOn = d.Format("2006-01-02")
			p.inConcentrated = rng.IntN(2) == 0
			if rng.IntN(2) == 0 {
				p.lapsed = rng.IntN(7)
				p.repaid = rng.IntN(p.lapsed + 2)
			}
		}
		p.continuous, p.zero = rng.IntN(12), rng.IntN(10)
		p.year = 2023 + rng.IntN(4)
		wj.Persons[region] = append(wj.Persons[region], orRecord(p, p.balance))
		persons = append(persons, p)
	}
	return o, persons, wj
}

// orCatalog makes a random catalog of orCodes (some codes left out, XN01
// always) and its NDJSON lines.
func orCatalog(rng *rand.Rand) (map[string]orEntry, []json.RawMessage) {
	cat := map[string]orEntry{}
	var lines []json.RawMessage
	for _, code := range orCodes {
		if code == "XN01" || rng.IntN(8) == 0 {
			continue // not listed here
		}
		e, b := orCatalogEntry(rng, code)
		cat[code] = e
		lines = append(lines, b)
	}
	return cat, lines
}

// orCatalogEntry is a random entry for code (its class is the code's
// second letter) and its NDJSON line.
func orCatalogEntry(rng *rand.Rand, code string) (orEntry, []byte) {
	e := orEntry{code: code, class: code[1:2], capMicro: -1}
	rec := map[string]string{"code": code, "class": e.class}
	if e.class == "B" {
		switch rng.IntN(4) {
		case 0:
			e.prop = int64(rng.IntN(10001))
		case 1:
			e.prop = 0
		default:
			e.prop = int64([]int{500, 1000, 1500, 2000, 3000, 5, 9999, 10000}[rng.IntN(8)])
		}
		rec["selfpay_prop"] = orDecimal(e.prop, 4)
	}
	if e.class != "C" && rng.IntN(3) == 0 {
		switch rng.IntN(3) {
		case 0:
			e.capMicro = int64(rng.IntN(500)) * 1e6
		case 1:
			e.capMicro = int64(rng.IntN(50000)) * 1e4
		default:
			e.capMicro = int64(rng.IntN(50_000_000))
		}
		rec["price_cap"] = orDecimal(e.capMicro, 6)
	}
	b, _ := json.Marshal(rec)
	return e, b
}

// orCatalogRegions are the treating regions whose catalogs the workload
// changes, and the catalog each falls back on without its own ("": none).
var orCatalogRegions = map[string]string{"371602": "371600", "371621": "371600", "370102": "370000",
	"152502": "150000", "371600": "370000", "370000": "", "150000": "", "110105": ""}

// orChangeCatalog upserts a few codes of a treating region's catalog,
// replaces it, or removes it where there is one to fall back on, through
// the region API, and makes the oracle's catalogs follow.
func orChangeCatalog(t *testing.T, rng *rand.Rand, o *oracle, h *harness, step int) {
	regions := make([]string, 0, len(orCatalogRegions))
	for r := range orCatalogRegions {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	r := regions[rng.IntN(len(regions))]
	tok := "tok-region-" + r
	path := "/v1/regions/" + r + "/catalog"
	var status int
	var resp []byte
	switch mode := rng.IntN(3); {
	case mode == 0 || (mode == 2 && (o.catalogs[r] == nil || orCatalogRegions[r] == "")):
		// upsert some codes (creating the region's own catalog if it had none)
		cat := map[string]orEntry{}
		for c, e := range o.catalogs[r] {
			cat[c] = e
		}
		var body []byte
		for _, i := range rng.Perm(len(orCodes) - 1)[:1+rng.IntN(3)] { // XN01 stays unlisted
			e, b := orCatalogEntry(rng, orCodes[i])
			cat[e.code] = e
			body = append(append(body, b...), '\n')
		}
		status, resp = h.do("POST", path, tok, body)
		o.catalogs[r] = cat
		o.cover["catalog.upsert"]++
	case mode == 1:
		cat, lines := orCatalog(rng)
		var body []byte
		for _, b := range lines {
			body = append(append(body, b...), '\n')
		}
		status, resp = h.do("PUT", path, tok, body)
		o.catalogs[r] = cat
		o.cover["catalog.replace"]++
	default:
		status, resp = h.do("PUT", path, tok, []byte{})
		delete(o.catalogs, r)
		o.cover["catalog.remove"]++
	}
	if status != 200 {
		t.Fatalf("step %d: catalog change of %s: status %d: %s", step, r, status, resp)
	}
}

// orRecord is p's registry line with the given account_balance.
func orRecord(p *orPerson, balance int64) []byte {
	employment := "active"
	if p.retired {
		employment = "retired"
	}
	scheme := "resident"
	if p.employee {
		scheme = "employee"
	}
	rec := map[string]any{"id": p.id, "scheme": scheme, "employment": employment,
		"groups": append([]string{}, p.groups...), "conditions": append([]string{}, p.conditions...),
		"account_balance": orFen(balance), "in_concentrated_period": p.inConcentrated,
		"lapsed_years": p.lapsed, "repaid_years": p.repaid, "continuous_years": p.continuous, "zero_claim_years": p.zero}
	if p.registration != "" {
		rec["registration"] = p.registration
	}
	if p.enrolledOn != "" {
		rec["enrolled_on"] = p.enrolledOn
	}
	b, _ := json.Marshal(rec)
	return b
}

// orChange changes what a registry upsert may change of p mid-run (not its
// scheme, on which the spec is silent): groups, conditions, registration,
// employment, the waiting-period and incentive fields.
func orChange(rng *rand.Rand, p *orPerson) {
	groups := []string{"destitute", "subsistence", "low_income_edge", "monitored", "illness_poverty"}
	p.groups = nil
	for _, g := range rng.Perm(len(groups))[:rng.IntN(3)] {
		p.groups = append(p.groups, groups[g])
	}
	p.conditions = [][]string{nil, {"hypertension"}, {"diabetes"}, {"diabetes", "hypertension"}}[rng.IntN(4)]
	p.registration = []string{"", "none", "long_term", "referral", "temporary"}[rng.IntN(5)]
	p.retired = p.employee && rng.IntN(2) == 0
	if p.enrolledOn != "" {
		p.inConcentrated = rng.IntN(2) == 0
		p.lapsed = rng.IntN(6)
		p.repaid = rng.IntN(p.lapsed + 1)
	}
	p.continuous, p.zero = rng.IntN(12), rng.IntN(10)
}

// orBoundaries are orYuan amounts where a rule changes.
var orBoundaries = []int64{200, 300, 400, 500, 600, 700, 800, 1000, 1500, 3000, 5000, 7500, 10000, 10200, 10400,
	10800, 11000, 12000, 15000, 50000, 62000, 100000, 115000, 150000, 200000, 215000, 300000}

// orBill makes a bill: its lines and their JSON.
func orBill(rng *rand.Rand, cover map[string]int) ([]orLine, []map[string]any) {
	var lines []orLine
	var js []map[string]any
	n := 1 + rng.IntN(4)
	if rng.IntN(4) == 0 {
		// one class A line at (or a fen around) a boundary
		b := orBoundaries[rng.IntN(len(orBoundaries))]*orYuan + int64(rng.IntN(5)-2)
		if rng.IntN(2) == 0 {
			b = orBoundaries[rng.IntN(len(orBoundaries))]*orYuan/int64(1+rng.IntN(3)) + int64(rng.IntN(3)-1)
		}
		b = max(1, b)
		lines = append(lines, orLine{code: "XA01", priceMicro: b * 1e4, qty: 1e4, amount: b})
		n = rng.IntN(2)
	}
	scale := []int64{5 * orYuan, 500 * orYuan, 5000 * orYuan, 5000 * orYuan, 60000 * orYuan, 300000 * orYuan}[rng.IntN(6)]
	for i := 0; i < n; i++ {
		code := orCodes[rng.IntN(len(orCodes))]
		var price, qty int64
		switch rng.IntN(3) {
		case 0: // whole fen price, whole quantity
			price = (1 + rng.Int64N(scale)) * 1e4
			qty = int64(1+rng.IntN(5)) * 1e4
		case 1: // 6-decimal price, 4-decimal quantity
			price = 1 + rng.Int64N(scale*1e4)
			qty = 1 + rng.Int64N(99999)
		default: // tiny
			price = 1 + rng.Int64N(20000)
			qty = 1 + rng.Int64N(30000)
		}
		if rng.IntN(150) == 0 {
			// near the largest lines a bill may carry: a unit price up to
			// 100,000,000 yuan, an amount up to 1e12 yuan, the bill's total
			// too (four lines of at most 2e11)
			price = 1e14 - rng.Int64N(1e12)
			qty = 2e7 - rng.Int64N(1e6)
			cover["line.huge"]++
		}
		amount := orMulDiv(price, qty, 1e8)
		lines = append(lines, orLine{code: code, priceMicro: price, qty: qty, amount: amount})
	}
	for _, l := range lines {
		if l.amount == 0 {
			cover["line.zero_amount"]++
		}
		js = append(js, map[string]any{"code": l.code, "unit_price": orDecimal(l.priceMicro, 6),
			"quantity": orDecimal(l.qty, 4), "amount": orFen(l.amount)})
	}
	return lines, js
}

// orDate is a settlement date, with the days next to the year ends and to
// the v2024 switch more likely.
func orDate(rng *rand.Rand, home int) time.Time {
	if rng.IntN(4) > 0 {
		d := time.Date(home, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(365))
		if d.After(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)) {
			d = d.AddDate(0, -2, 0)
		}
		return d
	}
	if rng.IntN(4) == 0 {
		y := 2023 + rng.IntN(3)
		return time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(3))
	}
	return time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(1420)) // to 2026-11-20: no visit in the future
}

// orPair is a (insured, treating region) pair of the month's statement.
type orPair struct {
	settlements, reversals                                                     int
	total, eligible, basic, serious, assistance, fund, account, cash, clearing int64
}

func (p *orPair) add(a orAmounts, sign int64) {
	p.total += sign * a.total
	p.eligible += sign * a.eligible
	p.basic += sign * a.basic
	p.serious += sign * a.serious
	p.assistance += sign * a.assistance
	p.fund += sign * a.fund
	p.account += sign * a.account
	p.cash += sign * a.cash
	p.clearing += sign * (a.fund + a.account)
}

type orSettled struct {
	id       string
	hospital string
	pair     [2]string
	body     []byte // the settlement's request
	out      orOutcome
	reversed bool
}

// TestR9Oracle runs the workload through a gateway with the regions'
// WebAssembly modules and through one with the same policies compiled
// natively (the project keeps both forms).
func TestR9Oracle(t *testing.T) {
	t.Run("wasm", func(t *testing.T) { orRun(t, false) })
	t.Run("native", func(t *testing.T) { orRun(t, true) })
}

func orRun(t *testing.T, native bool) {
	n := 500
	if testing.Short() {
		n = 200
	}
	if s := os.Getenv("MEDGATE_ORACLE_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	seed := uint64(9)
	if s := os.Getenv("MEDGATE_ORACLE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 0x0c1e))
	o, persons, wj := orWorld(rng, 30)
	w := wj.toWorld(t)
	for r := range orCatalogRegions {
		if r == "371600" || r == "370000" {
			continue // insured regions: toWorld gave them their tokens
		}
		w.Principals = append(w.Principals, PrincipalRecord{TokenSHA256: TokenHash("tok-region-" + r), Role: RoleRegion, ID: r})
	}
	h := newHarness(t, w)
	if native {
		for _, v := range conformance.Versions {
			h.policies.Put(v.Region, engine.Version{Name: v.Name, EffectiveFrom: v.Effective, Module: engine.NewNative(v.Region, v.Name, v.Policy)})
		}
	}
	hospitals := map[string]*orHospital{}
	for _, x := range orHospitals {
		hospitals[x.id] = x
	}
	var settled []*orSettled
	cst := time.FixedZone("UTC+8", 8*3600)
	month := time.Now().In(cst).Format("2006-01")
	pairs := map[[2]string]*orPair{}
	pairOf := func(k [2]string) *orPair {
		if pairs[k] == nil {
			pairs[k] = &orPair{}
		}
		return pairs[k]
	}
	failures := 0
	check := func(step int, what string, body []byte, got answer, want orOutcome, sign int64) {
		t.Helper()
		bad := []string{}
		for k, v := range want.amounts.m() {
			if g := got.Amounts[k]; g != orFen(sign*v) {
				bad = append(bad, fmt.Sprintf("%s = %s, oracle %s", k, g, orFen(sign*v)))
			}
		}
		if got.Policy["version"] != want.version {
			bad = append(bad, fmt.Sprintf("version %s, oracle %s", got.Policy["version"], want.version))
		}
		if len(got.Lines) != len(want.lines) {
			bad = append(bad, fmt.Sprintf("%d lines, oracle %d", len(got.Lines), len(want.lines)))
		} else {
			for i, l := range want.lines {
				g := got.Lines[i]
				for k, v := range map[string]string{"class": l.class, "full_self_pay": orFen(sign * l.fsp),
					"over_limit": orFen(sign * l.ol), "pre_self_pay": orFen(sign * l.pre), "eligible": orFen(sign * l.eligible)} {
					if fmt.Sprint(g[k]) != v {
						bad = append(bad, fmt.Sprintf("lines[%d].%s = %v, oracle %s", i, k, g[k], v))
					}
				}
				if listed, ok := g["listed"]; (ok || !l.listed) && listed != l.listed {
					bad = append(bad, fmt.Sprintf("lines[%d].listed = %v, oracle %v", i, listed, l.listed))
				}
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			failures++
			t.Errorf("step %d (%s): %s\nrequest: %s\nnotes: %q", step, what, strings.Join(bad, "; "), body, got.Notes)
			if failures > 5 {
				t.FailNow()
			}
		}
	}
	for step := 0; step < n; step++ {
		if rng.IntN(10) == 0 && len(settled) > 0 {
			// reverse an earlier settlement, not necessarily the latest
			s := settled[rng.IntN(len(settled))]
			body, _ := json.Marshal(map[string]string{"request_id": fmt.Sprintf("rev-%d", step), "reason": "oracle"})
			status, resp := h.do("POST", "/v1/settlements/"+s.id+"/reversal", "tok-"+s.hospital, body)
			if s.reversed {
				if status != 409 {
					t.Fatalf("step %d: second reversal of %s: status %d, want 409: %s", step, s.id, status, resp)
				}
				continue
			}
			if status != 200 {
				t.Fatalf("step %d: reversal of %s: status %d: %s", step, s.id, status, resp)
			}
			s.reversed = true
			o.cover["reversal"]++
			o.apply(s.out, -1)
			pairOf(s.pair).add(s.out.amounts, -1)
			pairOf(s.pair).reversals++
			check(step, "reversal of "+s.id, body, decodeAnswer(t, resp), s.out, -1)
			continue
		}
		if rng.IntN(60) == 0 {
			orChangeCatalog(t, rng, o, h, step)
			continue
		}
		if rng.IntN(250) == 0 {
			// a restart on the same ledger and world: counters, balances
			// and the regions' changes to persons stay as they were
			h.restart()
			o.cover["restart"]++
			continue
		}
		if rng.IntN(30) == 0 && len(settled) > 0 {
			// read an earlier settlement back, or send its request again:
			// its first answer, whatever moved since
			s := settled[rng.IntN(len(settled))]
			var status int
			var resp []byte
			what, replay := "read of "+s.id, rng.IntN(2) == 0
			if !replay {
				status, resp = h.do("GET", "/v1/settlements/"+s.id, "tok-"+s.hospital, nil)
				o.cover["read"]++
			} else {
				status, resp = h.do("POST", "/v1/settlements", "tok-"+s.hospital, s.body)
				what = "replay of " + s.id
				o.cover["replay"]++
			}
			if status != 200 {
				t.Fatalf("step %d: %s: status %d: %s", step, what, status, resp)
			}
			got := decodeAnswer(t, resp)
			if got.SettlementID != s.id || got.Replayed != replay {
				t.Errorf("step %d: %s: settlement %s, replayed %v", step, what, got.SettlementID, got.Replayed)
			}
			check(step, what, s.body, got, s.out, 1)
			continue
		}
		p := persons[rng.IntN(len(persons))]
		if rng.IntN(40) == 0 {
			// a credit to the personal account
			amount := 1 + rng.Int64N(300000)
			body, _ := json.Marshal(map[string]string{"reference": fmt.Sprintf("cr-%d", step), "amount": orFen(amount)})
			status, resp := h.do("POST", "/v1/regions/"+p.region+"/persons/"+p.id+"/credits", "tok-region-"+p.region, body)
			if status != 200 {
				t.Fatalf("step %d: credit: status %d: %s", step, status, resp)
			}
			p.balance += amount
			o.cover["credit"]++
			continue
		}
		if rng.IntN(40) == 0 {
			// the region changes the person; the balance it sends is not
			// applied to a person who exists
			orChange(rng, p)
			status, resp := h.do("POST", "/v1/regions/"+p.region+"/persons", "tok-region-"+p.region, orRecord(p, rng.Int64N(100000)))
			if status != 200 {
				t.Fatalf("step %d: upsert: status %d: %s", step, status, resp)
			}
			var up struct {
				Written  int               `json:"written"`
				Rejected []json.RawMessage `json:"rejected"`
			}
			if err := json.Unmarshal(resp, &up); err != nil || up.Written != 1 || len(up.Rejected) != 0 {
				t.Fatalf("step %d: upsert not written: %s", step, resp)
			}
			o.cover["upsert"]++
			continue
		}
		hosp := orHospitals[rng.IntN(len(orHospitals))]
		if rng.IntN(2) == 0 { // at home more often than not
			for {
				hosp = orHospitals[rng.IntN(len(orHospitals))]
				if strings.HasPrefix(hosp.region, p.region[:2]) {
					break
				}
			}
		}
		typ := []string{"inpatient", "inpatient", "inpatient", "chronic", "chronic", "outpatient", "two_disease", "maternity"}[rng.IntN(8)]
		v := orVisit{typ: typ, emergency: rng.IntN(6) == 0, date: orDate(rng, p.year)}
		visit := map[string]any{"type": typ, "emergency": v.emergency, "diagnoses": []string{}}
		if typ == "inpatient" || typ == "maternity" {
			v.admitted = v.date.AddDate(0, 0, -rng.IntN(20))
			visit["admitted_on"] = v.admitted.Format("2006-01-02")
			visit["discharged_on"] = v.date.Format("2006-01-02")
		} else {
			visit["visit_date"] = v.date.Format("2006-01-02")
		}
		if typ == "maternity" {
			v.birthOrder = 1 + rng.IntN(5)
			visit["birth_order"] = v.birthOrder
		}
		lines, items := orBill(rng, o.cover)
		useAccount := rng.IntN(2) == 0
		quote := rng.IntN(8) == 0
		req := map[string]any{"person": map[string]string{"id": p.id, "insured_region": p.region},
			"visit": visit, "use_personal_account": useAccount, "items": items}
		path := "/v1/settlements/quote"
		if !quote {
			req["request_id"] = fmt.Sprintf("or-%d", step)
			path = "/v1/settlements"
		}
		body, _ := json.Marshal(req)
		want := o.settle(p, hosp, v, lines, useAccount)
		o.cover["version."+p.region+"."+want.version]++
		if quote {
			o.cover["quote"]++
		}
		status, resp := h.do("POST", path, "tok-"+hosp.id, body)
		if status != 200 {
			t.Fatalf("step %d: status %d: %s\nrequest: %s", step, status, resp, body)
		}
		got := decodeAnswer(t, resp)
		what := "settle"
		if quote {
			what = "quote"
		}
		check(step, what, body, got, want, 1)
		if !quote {
			o.apply(want, 1)
			k := [2]string{p.region, hosp.region}
			settled = append(settled, &orSettled{id: got.SettlementID, hospital: hosp.id, pair: k, body: body, out: want})
			pairOf(k).add(want.amounts, 1)
			pairOf(k).settlements++
		}
	}
	if time.Now().In(cst).Format("2006-01") == month {
		orCheckStatement(t, h, month, pairs)
	}
	keys := make([]string, 0, len(o.cover))
	for k := range o.cover {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%-40s %d", k, o.cover[k])
	}
	// A workload that no longer reaches a rule would pass without
	// testing it: the default run must reach every one.
	if n >= 500 {
		for _, k := range orMustCover {
			if o.cover[k] == 0 {
				t.Errorf("the workload never reached %s: raise N or change the seed's mix", k)
			}
		}
	}
}

// orMustCover are the rules every default run must reach.
var orMustCover = []string{
	"catalog.own", "catalog.prefecture", "catalog.province", "line.unlisted", "line.over_limit", "line.pre_self_pay",
	"adjust.temporary", "adjust.none", "deductible.third_admission", "deductible.not_filled",
	"deductible.rest_of_yearly", "deductible.yearly_used", "ratio.second_segment", "waiting",
	"maternity.grant_over_E", "cap.cut.main", "cap.reached_mid_bill.main", "cap.cut.outpatient", "cap.cut.two_disease",
	"serious.paid.371600", "serious.paid.370000", "serious.paid.152500", "serious.crossed_threshold",
	"serious.special_terms", "serious.cap_cut",
	"assistance.paid.371600.100%", "assistance.paid.371600.70%", "assistance.paid.371600.60%",
	"assistance.paid.152500.100%", "assistance.paid.152500.80%", "assistance.paid.152500.60%",
	"assistance.paid.370000.100%", "assistance.paid.370000.70%", "assistance.paid.370000.60%", "assistance.limit_cut",
	"account.balance_used_up", "reversal", "credit", "upsert", "line.huge", "read", "replay", "restart", "catalog.upsert", "catalog.replace", "catalog.remove", "deductible.taken_with_cap_exhausted", "waiting.assistance", "line.zero_amount", "quote", "version.371600.v2023", "version.371600.v2024",
}

// orCheckStatement holds the month's clearing statement (every settlement
// and reversal of the run was committed in it) to the sums of the oracle's
// answers, pair by pair, and the provinces' net positions to them.
func orCheckStatement(t *testing.T, h *harness, month string, pairs map[[2]string]*orPair) {
	t.Helper()
	status, body := h.do("GET", "/v1/clearing/months/"+month, "tok-clearing", nil)
	if status != 200 {
		t.Fatalf("statement %s: status %d: %s", month, status, body)
	}
	var st Statement
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	seen := map[[2]string]bool{}
	for _, g := range st.Pairs {
		k := [2]string{g.InsuredRegion, g.TreatingRegion}
		seen[k] = true
		w, ok := pairs[k]
		if !ok {
			t.Errorf("statement pair %v: the oracle settled nothing there", k)
			continue
		}
		got := fmt.Sprint(g.Settlements, g.Reversals, g.Total, g.Eligible, g.BasicFund, g.SeriousIllness, g.MedicalAssistance,
			g.FundTotal, g.PersonalAccount, g.Cash, g.ClearingAmount, g.CrossProvince)
		want := fmt.Sprint(w.settlements, w.reversals, orFen(w.total), orFen(w.eligible), orFen(w.basic), orFen(w.serious),
			orFen(w.assistance), orFen(w.fund), orFen(w.account), orFen(w.cash), orFen(w.clearing), k[0][:2] != k[1][:2])
		if got != want {
			t.Errorf("statement pair %v:\ngot    %s\noracle %s", k, got, want)
		}
	}
	net := map[string]int64{}
	for k, w := range pairs {
		if !seen[k] {
			t.Errorf("statement has no pair %v (%d settlements)", k, w.settlements)
		}
		if k[0][:2] != k[1][:2] {
			net[k[1][:2]+"0000"] += w.clearing
			net[k[0][:2]+"0000"] -= w.clearing
		}
	}
	for _, p := range st.Provinces {
		if p.Net != orFen(net[p.Province]) {
			t.Errorf("province %s: net %s, oracle %s", p.Province, p.Net, orFen(net[p.Province]))
		}
		delete(net, p.Province)
	}
	for p, v := range net {
		if v != 0 {
			t.Errorf("statement has no province %s (net %s)", p, orFen(v))
		}
	}
}

// orParse reads a non-negative decimal string into an integer of the given
// number of decimal places ("12.5", 2 -> 1250).
func orParse(t *testing.T, s string, places int) int64 {
	t.Helper()
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > places {
		t.Fatalf("%q has more than %d decimals", s, places)
	}
	v, err := strconv.ParseInt(whole+frac+strings.Repeat("0", places-len(frac)), 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}

// TestR9OracleAgreesWithExamples holds the oracle itself to the spec's
// worked examples (computed by hand): a check on the second reading, which
// the gateway's answers are then held to.
func TestR9OracleAgreesWithExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "spec", "examples", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var ex exampleFile
		if err := json.Unmarshal(b, &ex); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		t.Run(ex.Name, func(t *testing.T) {
			o := &oracle{acc: map[orKey]int64{}, catalogs: map[string]map[string]orEntry{}, cover: map[string]int{}}
			hospitals := map[string]*orHospital{}
			for _, h := range ex.World.Hospitals {
				hospitals[h.ID] = &orHospital{h.ID, h.Region, int(h.Level), h.AssistanceDesignated}
			}
			for region, lines := range ex.World.Catalogs {
				cat := map[string]orEntry{}
				for _, l := range lines {
					var r struct{ Code, Class, SelfpayProp, PriceCap string }
					json.Unmarshal(l, &struct {
						Code        *string `json:"code"`
						Class       *string `json:"class"`
						SelfpayProp *string `json:"selfpay_prop"`
						PriceCap    *string `json:"price_cap"`
					}{&r.Code, &r.Class, &r.SelfpayProp, &r.PriceCap})
					e := orEntry{code: r.Code, class: r.Class, capMicro: -1}
					if r.SelfpayProp != "" {
						e.prop = orParse(t, r.SelfpayProp, 4)
					}
					if r.PriceCap != "" {
						e.capMicro = orParse(t, r.PriceCap, 6)
					}
					cat[r.Code] = e
				}
				o.catalogs[region] = cat
			}
			persons := map[string]*orPerson{}
			for region, lines := range ex.World.Persons {
				for _, l := range lines {
					var r struct {
						ID, Scheme, Employment, Registration, AccountBalance, EnrolledOn string
						Groups, Conditions                                               []string
						InConcentrated                                                   bool
						Lapsed, Repaid, Continuous, Zero                                 int
					}
					json.Unmarshal(l, &struct {
						ID             *string   `json:"id"`
						Scheme         *string   `json:"scheme"`
						Employment     *string   `json:"employment"`
						Registration   *string   `json:"registration"`
						AccountBalance *string   `json:"account_balance"`
						EnrolledOn     *string   `json:"enrolled_on"`
						Groups         *[]string `json:"groups"`
						Conditions     *[]string `json:"conditions"`
						InConcentrated *bool     `json:"in_concentrated_period"`
						Lapsed         *int      `json:"lapsed_years"`
						Repaid         *int      `json:"repaid_years"`
						Continuous     *int      `json:"continuous_years"`
						Zero           *int      `json:"zero_claim_years"`
					}{&r.ID, &r.Scheme, &r.Employment, &r.Registration, &r.AccountBalance, &r.EnrolledOn, &r.Groups,
						&r.Conditions, &r.InConcentrated, &r.Lapsed, &r.Repaid, &r.Continuous, &r.Zero})
					p := &orPerson{id: r.ID, region: region, employee: r.Scheme == "employee", retired: r.Employment == "retired",
						groups: r.Groups, conditions: r.Conditions, registration: r.Registration, enrolledOn: r.EnrolledOn,
						inConcentrated: r.InConcentrated, lapsed: r.Lapsed, repaid: r.Repaid, continuous: r.Continuous, zero: r.Zero}
					if r.AccountBalance != "" {
						p.balance = orParse(t, r.AccountBalance, 2)
					}
					persons[region+"/"+r.ID] = p
				}
			}
			done := map[string]orOutcome{}
			reversed := map[string]bool{}
			for i, r := range ex.Requests {
				var req struct {
					RequestID string `json:"request_id"`
					Person    struct {
						ID            string `json:"id"`
						InsuredRegion string `json:"insured_region"`
					} `json:"person"`
					Visit struct {
						Type         string `json:"type"`
						Emergency    bool   `json:"emergency"`
						BirthOrder   int    `json:"birth_order"`
						DischargedOn string `json:"discharged_on"`
						VisitDate    string `json:"visit_date"`
					} `json:"visit"`
					UseAccount bool `json:"use_personal_account"`
					Items      []struct {
						Code       string   `json:"code"`
						UnitPrice  string   `json:"unit_price"`
						Quantity   string   `json:"quantity"`
						Amount     string   `json:"amount"`
						TraceCodes []string `json:"trace_codes"`
					} `json:"items"`
				}
				json.Unmarshal(r.Body, &req)
				label := fmt.Sprintf("request %d (%s %s)", i, r.Op, req.RequestID)
				if r.Expect.Status != 200 {
					continue // refusals (409s) are not the oracle's
				}
				var out orOutcome
				sign := int64(1)
				if r.Op == "reversal" {
					out, sign = done[r.Ref], -1
					if reversed[r.Ref] {
						t.Fatalf("%s: reverses %s twice", label, r.Ref)
					}
					reversed[r.Ref] = true
					o.apply(out, -1)
				} else {
					p := persons[req.Person.InsuredRegion+"/"+req.Person.ID]
					h := hospitals[r.Hospital]
					if p == nil || h == nil {
						t.Fatalf("%s: unknown person or hospital", label)
					}
					date := req.Visit.VisitDate
					if req.Visit.Type == "inpatient" || req.Visit.Type == "maternity" {
						date = req.Visit.DischargedOn
					}
					d, err := time.Parse("2006-01-02", date)
					if err != nil {
						t.Fatalf("%s: %v", label, err)
					}
					var lines []orLine
					for _, it := range req.Items {
						lines = append(lines, orLine{code: it.Code, priceMicro: orParse(t, it.UnitPrice, 6),
							qty: orParse(t, it.Quantity, 4), amount: orParse(t, it.Amount, 2)})
					}
					out = o.settle(p, h, orVisit{typ: req.Visit.Type, emergency: req.Visit.Emergency,
						birthOrder: req.Visit.BirthOrder, date: d}, lines, req.UseAccount)
					if r.Op == "settle" {
						o.apply(out, 1)
						done[req.RequestID] = out
					}
				}
				got := out.amounts.m()
				for k, want := range r.Expect.Amounts {
					if orFen(sign*got[k]) != want {
						t.Errorf("%s: oracle %s = %s, the example says %s\nnote: %s", label, k, orFen(sign*got[k]), want, r.Note)
					}
				}
				if r.Expect.PolicyVersion != "" && out.version != r.Expect.PolicyVersion {
					t.Errorf("%s: oracle version %s, the example says %s", label, out.version, r.Expect.PolicyVersion)
				}
				for j, want := range r.Expect.Lines {
					if j >= len(out.lines) {
						t.Errorf("%s: oracle has %d lines, the example %d", label, len(out.lines), len(r.Expect.Lines))
						break
					}
					l := out.lines[j]
					for k, v := range map[string]string{"class": l.class, "full_self_pay": orFen(sign * l.fsp),
						"over_limit": orFen(sign * l.ol), "pre_self_pay": orFen(sign * l.pre), "eligible": orFen(sign * l.eligible)} {
						if w, ok := want[k]; ok && fmt.Sprint(w) != v {
							t.Errorf("%s: oracle lines[%d].%s = %s, the example says %v", label, j, k, v, w)
						}
					}
				}
			}
		})
	}
}
