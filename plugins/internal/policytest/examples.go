package policytest

import (
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"medgate/engine/abi"
	"medgate/plugins/policy/rules"
	"medgate/plugins/sdk"
)

// Example is one file of testdata/spec/examples (see its README.md).
type Example struct {
	Name     string    `json:"name"`
	Title    string    `json:"title"`
	World    World     `json:"world"`
	Requests []Request `json:"requests"`
}

// World is the fragment of a world directory an example carries.
type World struct {
	Hospitals []Hospital                   `json:"hospitals"`
	Catalogs  map[string][]CatalogEntry    `json:"catalogs"`
	Persons   map[string][]json.RawMessage `json:"persons"`
}

// Hospital is a hospital registry entry.
type Hospital struct {
	ID                   string `json:"id"`
	Region               string `json:"region"`
	Level                uint8  `json:"level"`
	AssistanceDesignated bool   `json:"assistance_designated"`
}

// CatalogEntry is one catalog line of a treating region.
type CatalogEntry struct {
	Code        string `json:"code"`
	Class       string `json:"class"`
	SelfpayProp string `json:"selfpay_prop"`
	PriceCap    string `json:"price_cap"`
}

// Person is an insured person of the registry.
type Person struct {
	ID                   string   `json:"id"`
	Scheme               string   `json:"scheme"`
	Employment           string   `json:"employment"`
	Groups               []string `json:"groups"`
	Conditions           []string `json:"conditions"`
	Registration         string   `json:"registration"`
	AccountBalance       string   `json:"account_balance"`
	EnrolledOn           string   `json:"enrolled_on"`
	InConcentratedPeriod bool     `json:"in_concentrated_period"`
	LapsedYears          int32    `json:"lapsed_years"`
	RepaidYears          int32    `json:"repaid_years"`
	ContinuousYears      int32    `json:"continuous_years"`
	ZeroClaimYears       int32    `json:"zero_claim_years"`
}

// Request is one request of an example, with its expected answer.
type Request struct {
	Op       string `json:"op"`
	Ref      string `json:"ref"`
	Hospital string `json:"hospital"`
	Body     struct {
		RequestID string `json:"request_id"`
		Person    struct {
			ID            string `json:"id"`
			InsuredRegion string `json:"insured_region"`
		} `json:"person"`
		Visit struct {
			Type         string   `json:"type"`
			Emergency    bool     `json:"emergency"`
			BirthOrder   int32    `json:"birth_order"`
			AdmittedOn   string   `json:"admitted_on"`
			DischargedOn string   `json:"discharged_on"`
			VisitDate    string   `json:"visit_date"`
			Diagnoses    []string `json:"diagnoses"`
		} `json:"visit"`
		UsePersonalAccount bool `json:"use_personal_account"`
		Items              []struct {
			Code      string `json:"code"`
			UnitPrice string `json:"unit_price"`
			Quantity  string `json:"quantity"`
			Amount    string `json:"amount"`
		} `json:"items"`
	} `json:"body"`
	Note   string `json:"note"`
	Expect struct {
		Status        int               `json:"status"`
		PolicyVersion string            `json:"policy_version"`
		ErrorCode     string            `json:"error_code"`
		Amounts       map[string]string `json:"amounts"`
		Lines         []struct {
			Code        string `json:"code"`
			Class       string `json:"class"`
			FullSelfPay string `json:"full_self_pay"`
			OverLimit   string `json:"over_limit"`
			PreSelfPay  string `json:"pre_self_pay"`
			Eligible    string `json:"eligible"`
		} `json:"lines"`
	} `json:"expect"`
}

// LoadExamples reads every *.json example of dir, sorted by name.
func LoadExamples(dir string) ([]*Example, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var list []*Example
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ex := new(Example)
		if err := json.Unmarshal(data, ex); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		list = append(list, ex)
	}
	return list, nil
}

// Picker returns the policy version in force for region on date.
type Picker func(region string, date abi.Date) (version string, p sdk.Policy, ok bool)

// Settled is one policy call of an example run, for replaying elsewhere
// (e.g. through the WebAssembly build).
type Settled struct {
	Name    string // example name and request id
	Region  string
	Version string
	Input   []byte // encoded abi.Input
	Output  []byte // encoded abi.Output of the native run
}

// RunExample runs every request of ex through the native policies, with the
// catalog step of policies.md §1 and the host's bookkeeping of counters,
// balances and reversals, and compares every amount with the expected one.
// Requests the host refuses on its own (409: idempotency, trace codes,
// double reversal) are skipped. Every mismatch is reported through errorf.
func RunExample(ex *Example, pick Picker, errorf func(format string, args ...any)) []Settled {
	persons := map[string]*Person{} // region/id
	for region, list := range ex.World.Persons {
		for _, raw := range list {
			p := new(Person)
			if err := json.Unmarshal(raw, p); err != nil {
				errorf("%s: person: %v", ex.Name, err)
				return nil
			}
			persons[region+"/"+p.ID] = p
		}
	}
	hospitals := map[string]*Hospital{}
	for i := range ex.World.Hospitals {
		hospitals[ex.World.Hospitals[i].ID] = &ex.World.Hospitals[i]
	}
	books := map[string]*Book{}
	type done struct {
		book    *Book
		entry   int
		amounts map[string]int64
		version string
	}
	settled := map[string]*done{}
	var calls []Settled

	for ri := range ex.Requests {
		r := &ex.Requests[ri]
		where := ex.Name + " " + r.Body.RequestID
		if r.Expect.Status != 200 {
			continue // host behaviour (409s)
		}
		if r.Op == "reversal" {
			d := settled[r.Ref]
			if d == nil {
				errorf("%s: reversal of unknown %s", where, r.Ref)
				continue
			}
			if err := d.book.Reverse(d.entry); err != nil {
				errorf("%s: %v", where, err)
				continue
			}
			neg := map[string]int64{}
			for k, v := range d.amounts {
				neg[k] = -v
			}
			compareAmounts(where, neg, r, errorf)
			if r.Expect.PolicyVersion != d.version {
				errorf("%s: version %s, want %s", where, d.version, r.Expect.PolicyVersion)
			}
			continue
		}

		region := r.Body.Person.InsuredRegion
		p := persons[region+"/"+r.Body.Person.ID]
		h := hospitals[r.Hospital]
		if p == nil || h == nil {
			errorf("%s: unknown person or hospital", where)
			continue
		}
		key := region + "/" + p.ID
		book := books[key]
		if book == nil {
			book = NewBook(MustFen(p.AccountBalance))
			books[key] = book
		}
		in, amounts, err := BuildInput(ex, r, p, h)
		if err != nil {
			errorf("%s: %v", where, err)
			continue
		}
		version, policy, ok := pick(region, in.Date)
		if !ok {
			errorf("%s: no policy for %s on %d", where, region, in.Date)
			continue
		}
		if version != r.Expect.PolicyVersion {
			errorf("%s: version %s, want %s", where, version, r.Expect.PolicyVersion)
		}
		book.Prepare(&in)
		out, inBytes, outBytes, err := Run(policy, &in)
		if err != nil {
			errorf("%s: %v", where, err)
			continue
		}
		if out.Refusal != "" {
			errorf("%s: refused: %s", where, out.Refusal)
			continue
		}
		calls = append(calls, Settled{Name: where, Region: region, Version: version, Input: inBytes, Output: outBytes})
		amounts["deductible"] = out.Deductible
		amounts["basic_fund"] = out.Basic
		amounts["serious_illness"] = out.Serious
		amounts["medical_assistance"] = out.Assistance
		amounts["personal_account"] = out.Account
		amounts["fund_total"] = out.FundTotal()
		amounts["cash"] = in.Sums.Total - out.FundTotal() - out.Account
		amounts["personal_total"] = in.Sums.Total - out.FundTotal()
		compareAmounts(where, amounts, r, errorf)
		if r.Op == "settle" {
			book.Commit(in.Date.Year(), out.Changes, out.Account)
			settled[r.Body.RequestID] = &done{book: book, entry: len(book.entries) - 1, amounts: amounts, version: version}
		}
	}
	return calls
}

var amountNames = []string{"total", "full_self_pay", "over_limit", "pre_self_pay", "eligible",
	"deductible", "basic_fund", "serious_illness", "medical_assistance", "fund_total",
	"personal_account", "cash", "personal_total"}

func compareAmounts(where string, got map[string]int64, r *Request, errorf func(string, ...any)) {
	for _, name := range amountNames {
		s, ok := r.Expect.Amounts[name]
		if !ok {
			errorf("%s: expected amount %s missing", where, name)
			continue
		}
		want, err := Fen(s)
		if err != nil {
			errorf("%s: %s: %v", where, name, err)
			continue
		}
		if g := got[name]; g != want {
			errorf("%s: %s = %s, want %s (%s)", where, name, rules.Money(g), s, r.Note)
		}
	}
}

// BuildInput makes the abi.Input of a settle or quote request: the person's
// registry facts, the visit, the hospital, and the catalog step over the
// items with the treating region's catalog. It also returns the catalog
// step's sums by amount name, and checks its lines against the expected ones.
func BuildInput(ex *Example, r *Request, p *Person, h *Hospital) (abi.Input, map[string]int64, error) {
	var in abi.Input
	b := &r.Body
	v := &b.Visit
	var err error
	date := func(s string) abi.Date {
		if s == "" || err != nil {
			return 0
		}
		var d abi.Date
		d, err = ParseDate(s)
		return d
	}
	in.Visit.AdmittedOn = date(v.AdmittedOn)
	in.Visit.DischargedOn = date(v.DischargedOn)
	in.Visit.VisitDate = date(v.VisitDate)
	in.Person.EnrolledOn = date(p.EnrolledOn)
	if err != nil {
		return in, nil, err
	}
	in.UseAccount = b.UsePersonalAccount
	in.Person.Scheme = map[string]abi.Scheme{"employee": abi.SchemeEmployee, "resident": abi.SchemeResident}[p.Scheme]
	in.Person.Employment = map[string]abi.Employment{"active": abi.EmploymentActive, "retired": abi.EmploymentRetired}[p.Employment]
	in.Person.Registration = map[string]abi.Registration{"long_term": abi.RegistrationLongTerm,
		"referral": abi.RegistrationReferral, "temporary": abi.RegistrationTemporary}[p.Registration]
	in.Person.InConcentratedPeriod = p.InConcentratedPeriod
	in.Person.LapsedYears, in.Person.RepaidYears = p.LapsedYears, p.RepaidYears
	in.Person.ContinuousYears, in.Person.ZeroClaimYears = p.ContinuousYears, p.ZeroClaimYears
	in.Person.Groups, in.Person.Conditions = p.Groups, p.Conditions
	in.Visit.Type = map[string]abi.VisitType{"inpatient": abi.VisitInpatient, "outpatient": abi.VisitOutpatient,
		"chronic": abi.VisitChronic, "two_disease": abi.VisitTwoDisease, "maternity": abi.VisitMaternity}[v.Type]
	if in.Visit.Type == 0 || in.Person.Scheme == 0 {
		return in, nil, fmt.Errorf("unknown visit type %q or scheme %q", v.Type, p.Scheme)
	}
	in.Visit.Emergency = v.Emergency
	in.Visit.BirthOrder = v.BirthOrder
	in.Visit.Diagnoses = v.Diagnoses
	in.Date = in.Visit.VisitDate
	if in.Visit.Type == abi.VisitInpatient || in.Visit.Type == abi.VisitMaternity {
		in.Date = in.Visit.DischargedOn
	}
	in.Hospital = abi.Hospital{Level: h.Level, AssistanceDesignated: h.AssistanceDesignated,
		Offsite: rules.Offsite(h.Region, b.Person.InsuredRegion), TreatingRegion: h.Region,
		InsuredRegion: b.Person.InsuredRegion}

	catalog := catalogOf(ex, h.Region)
	for i, it := range b.Items {
		l, err := CatalogLine(catalog, it.Code, it.UnitPrice, it.Quantity, it.Amount)
		if err != nil {
			return in, nil, fmt.Errorf("item %d: %w", i, err)
		}
		in.Lines = append(in.Lines, l)
		s := &in.Sums
		s.Total += l.Amount
		s.FullSelfPay += l.FullSelfPay
		s.OverLimit += l.OverLimit
		s.PreSelfPay += l.PreSelfPay
		s.Eligible += l.Eligible
	}
	if want := r.Expect.Lines; len(want) > 0 {
		if len(want) != len(in.Lines) {
			return in, nil, fmt.Errorf("catalog step: %d lines, want %d", len(in.Lines), len(want))
		}
		for i, w := range want {
			l := in.Lines[i]
			got := fmt.Sprintf("%s %s %s %s %s %s", l.Code, "?ABC"[l.Class:l.Class+1],
				rules.Money(l.FullSelfPay), rules.Money(l.OverLimit), rules.Money(l.PreSelfPay), rules.Money(l.Eligible))
			exp := fmt.Sprintf("%s %s %s %s %s %s", w.Code, w.Class, w.FullSelfPay, w.OverLimit, w.PreSelfPay, w.Eligible)
			if got != exp {
				return in, nil, fmt.Errorf("catalog step line %d: %s, want %s", i, got, exp)
			}
		}
	}
	s := in.Sums
	return in, map[string]int64{"total": s.Total, "full_self_pay": s.FullSelfPay,
		"over_limit": s.OverLimit, "pre_self_pay": s.PreSelfPay, "eligible": s.Eligible}, nil
}

// catalogOf is the treating region's catalog: the region's own, else its
// prefecture's (XXXX00), else its province's (XX0000).
func catalogOf(ex *Example, region string) []CatalogEntry {
	for _, code := range []string{region, region[:4] + "00", region[:2] + "0000"} {
		if c, ok := ex.World.Catalogs[code]; ok {
			return c
		}
	}
	return nil
}

// CatalogLine is the catalog step of policies.md §1 for one bill line.
func CatalogLine(catalog []CatalogEntry, code, unitPrice, quantity, amount string) (abi.Line, error) {
	l := abi.Line{Code: code, Class: abi.ClassC}
	var err error
	if l.Amount, err = Fen(amount); err != nil {
		return l, err
	}
	var e *CatalogEntry
	for i := range catalog {
		if catalog[i].Code == code {
			e = &catalog[i]
			break
		}
	}
	if e == nil || e.Class == "C" {
		l.Listed = e != nil
		l.FullSelfPay = l.Amount
		return l, nil
	}
	l.Listed = true
	price, err := decimal(unitPrice, 6) // micro-yuan
	if err != nil {
		return l, err
	}
	qty, err := decimal(quantity, 4) // 1e-4 units
	if err != nil {
		return l, err
	}
	// amount must be round(unit_price × quantity).
	if got := roundDiv(new(big.Int).Mul(price, qty), 1e8); got != l.Amount {
		return l, fmt.Errorf("amount %s is not round(unit_price × quantity) = %s", amount, rules.Money(got))
	}
	if e.PriceCap != "" {
		pc, err := decimal(e.PriceCap, 6)
		if err != nil {
			return l, err
		}
		if over := new(big.Int).Sub(price, pc); over.Sign() > 0 {
			l.OverLimit = roundDiv(over.Mul(over, qty), 1e8) // 1e-10 yuan → fen
		}
	}
	rest := l.Amount - l.OverLimit
	switch e.Class {
	case "A":
		l.Class = abi.ClassA
	case "B":
		l.Class = abi.ClassB
		prop, err := decimal(e.SelfpayProp, 4) // basis points
		if err != nil {
			return l, err
		}
		l.PreSelfPay = rules.Pct(rest, prop.Int64())
	default:
		return l, fmt.Errorf("catalog class %q", e.Class)
	}
	l.Eligible = rest - l.PreSelfPay
	return l, nil
}

// roundDiv is round_half_up(x / d) for x ≥ 0.
func roundDiv(x *big.Int, d int64) int64 {
	q := new(big.Int).Add(x, big.NewInt(d/2))
	return q.Quo(q, big.NewInt(d)).Int64()
}

// decimal parses a non-negative decimal string with at most places decimals
// as an integer scaled by 10^places.
func decimal(s string, places int) (*big.Int, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > places || strings.HasPrefix(s, "-") {
		return nil, fmt.Errorf("bad decimal %q", s)
	}
	frac += strings.Repeat("0", places-len(frac))
	v, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return nil, fmt.Errorf("bad decimal %q", s)
	}
	return v, nil
}

// Fen parses an amount in yuan ("-12.50") as fen.
func Fen(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	v, err := decimal(strings.TrimPrefix(s, "-"), 2)
	if err != nil {
		return 0, err
	}
	if neg {
		return -v.Int64(), nil
	}
	return v.Int64(), nil
}

// MustFen is Fen that panics.
func MustFen(s string) int64 {
	v, err := Fen(s)
	if err != nil {
		panic(err)
	}
	return v
}

// ParseDate parses YYYY-MM-DD.
func ParseDate(s string) (abi.Date, error) {
	var y, m, d int32
	if _, err := fmt.Sscanf(s, "%4d-%2d-%2d", &y, &m, &d); err != nil || len(s) != 10 {
		return 0, fmt.Errorf("bad date %q", s)
	}
	return abi.MakeDate(y, m, d), nil
}
