// Package cases is the language-neutral JSON form of a policy's example
// cases: ABI inputs with the answers expected of them. A region ships its
// cases with every upload; the gateway (and the region's CLI, with the same
// code) refuses a version that does not answer every case exactly.
package cases

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/money"
)

// Case is one example: an input and what the policy must answer.
type Case struct {
	Name   string `json:"name"`
	Input  Input  `json:"input"`
	Expect Expect `json:"expect"`
}

// Input is abi.Input in JSON: dates YYYY-MM-DD, money yuan strings, enums
// by name. The catalog sums are derived from the lines.
type Input struct {
	Date       string `json:"date"`
	UseAccount bool   `json:"use_account"`
	Person     struct {
		Scheme               string   `json:"scheme"`
		Employment           string   `json:"employment"`
		Registration         string   `json:"registration"`
		InConcentratedPeriod bool     `json:"in_concentrated_period"`
		EnrolledOn           string   `json:"enrolled_on"`
		LapsedYears          int32    `json:"lapsed_years"`
		RepaidYears          int32    `json:"repaid_years"`
		ContinuousYears      int32    `json:"continuous_years"`
		ZeroClaimYears       int32    `json:"zero_claim_years"`
		AccountBalance       string   `json:"account_balance"`
		Groups               []string `json:"groups"`
		Conditions           []string `json:"conditions"`
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
	Hospital struct {
		Level                uint8  `json:"level"`
		AssistanceDesignated bool   `json:"assistance_designated"`
		Offsite              bool   `json:"offsite"`
		TreatingRegion       string `json:"treating_region"`
		InsuredRegion        string `json:"insured_region"`
	} `json:"hospital"`
	Lines []struct {
		Code        string `json:"code"`
		Class       string `json:"class"`
		Listed      bool   `json:"listed"`
		Amount      string `json:"amount"`
		FullSelfPay string `json:"full_self_pay"`
		OverLimit   string `json:"over_limit"`
		PreSelfPay  string `json:"pre_self_pay"`
		Eligible    string `json:"eligible"`
	} `json:"lines"`
	// Counters are the person's accumulators, in fen (integers as strings
	// or numbers are both accepted by encoding/json's Number).
	Counters map[string]json.Number `json:"counters"`
}

// Expect is the answer a case requires. Changes, when present, must match
// exactly (every counter change, nothing else).
type Expect struct {
	Refusal           bool             `json:"refusal"`
	Deductible        string           `json:"deductible"`
	BasicFund         string           `json:"basic_fund"`
	SeriousIllness    string           `json:"serious_illness"`
	MedicalAssistance string           `json:"medical_assistance"`
	PersonalAccount   string           `json:"personal_account"`
	Changes           map[string]int64 `json:"changes"`
}

var enumScheme = map[string]abi.Scheme{"employee": abi.SchemeEmployee, "resident": abi.SchemeResident}
var enumEmployment = map[string]abi.Employment{"": abi.EmploymentNone, "active": abi.EmploymentActive, "retired": abi.EmploymentRetired}
var enumRegistration = map[string]abi.Registration{"": abi.RegistrationNone, "none": abi.RegistrationNone, "long_term": abi.RegistrationLongTerm, "referral": abi.RegistrationReferral, "temporary": abi.RegistrationTemporary}
var enumVisit = map[string]abi.VisitType{"inpatient": abi.VisitInpatient, "outpatient": abi.VisitOutpatient, "chronic": abi.VisitChronic, "two_disease": abi.VisitTwoDisease, "maternity": abi.VisitMaternity}
var enumClass = map[string]abi.Class{"A": abi.ClassA, "B": abi.ClassB, "C": abi.ClassC}

// ABI converts c's input to abi.Input.
func (c *Case) ABI() (*abi.Input, error) {
	j := &c.Input
	in := &abi.Input{UseAccount: j.UseAccount}
	var err error
	date := func(field, s string, required bool) abi.Date {
		if err != nil || (s == "" && !required) {
			return 0
		}
		d, ok := abi.ParseDate(s)
		if !ok {
			err = fmt.Errorf("%s %q is not a date YYYY-MM-DD", field, s)
		}
		return d
	}
	fen := func(field, s string) int64 {
		if err != nil || s == "" {
			return 0
		}
		v, perr := money.Parse([]byte(s), 2)
		if perr != nil {
			err = fmt.Errorf("%s %q %v", field, s, perr)
		}
		return v
	}
	enum := func(field, s string, ok bool) {
		if err == nil && !ok {
			err = fmt.Errorf("%s %q is not a known value", field, s)
		}
	}
	in.Date = date("input.date", j.Date, true)
	p := &in.Person
	var ok bool
	p.Scheme, ok = enumScheme[j.Person.Scheme]
	enum("input.person.scheme", j.Person.Scheme, ok)
	p.Employment, ok = enumEmployment[j.Person.Employment]
	enum("input.person.employment", j.Person.Employment, ok)
	p.Registration, ok = enumRegistration[j.Person.Registration]
	enum("input.person.registration", j.Person.Registration, ok)
	p.InConcentratedPeriod = j.Person.InConcentratedPeriod
	p.EnrolledOn = date("input.person.enrolled_on", j.Person.EnrolledOn, false)
	p.LapsedYears, p.RepaidYears, p.ContinuousYears, p.ZeroClaimYears = j.Person.LapsedYears, j.Person.RepaidYears, j.Person.ContinuousYears, j.Person.ZeroClaimYears
	p.AccountBalance = fen("input.person.account_balance", j.Person.AccountBalance)
	p.Groups, p.Conditions = j.Person.Groups, j.Person.Conditions
	v := &in.Visit
	v.Type, ok = enumVisit[j.Visit.Type]
	enum("input.visit.type", j.Visit.Type, ok)
	v.Emergency, v.BirthOrder, v.Diagnoses = j.Visit.Emergency, j.Visit.BirthOrder, j.Visit.Diagnoses
	v.AdmittedOn = date("input.visit.admitted_on", j.Visit.AdmittedOn, false)
	v.DischargedOn = date("input.visit.discharged_on", j.Visit.DischargedOn, false)
	v.VisitDate = date("input.visit.visit_date", j.Visit.VisitDate, false)
	h := &in.Hospital
	h.Level, h.AssistanceDesignated, h.Offsite = j.Hospital.Level, j.Hospital.AssistanceDesignated, j.Hospital.Offsite
	h.TreatingRegion, h.InsuredRegion = j.Hospital.TreatingRegion, j.Hospital.InsuredRegion
	for i, l := range j.Lines {
		f := "input.lines[" + strconv.Itoa(i) + "]"
		cl, ok := enumClass[l.Class]
		enum(f+".class", l.Class, ok)
		line := abi.Line{Code: l.Code, Class: cl, Listed: l.Listed, Amount: fen(f+".amount", l.Amount),
			FullSelfPay: fen(f+".full_self_pay", l.FullSelfPay), OverLimit: fen(f+".over_limit", l.OverLimit),
			PreSelfPay: fen(f+".pre_self_pay", l.PreSelfPay), Eligible: fen(f+".eligible", l.Eligible)}
		if err == nil && line.FullSelfPay+line.OverLimit+line.PreSelfPay+line.Eligible != line.Amount {
			err = fmt.Errorf("%s: full_self_pay + over_limit + pre_self_pay + eligible must equal amount", f)
		}
		in.Lines = append(in.Lines, line)
		in.Sums.Total += line.Amount
		in.Sums.FullSelfPay += line.FullSelfPay
		in.Sums.OverLimit += line.OverLimit
		in.Sums.PreSelfPay += line.PreSelfPay
		in.Sums.Eligible += line.Eligible
	}
	for name, n := range j.Counters {
		val, perr := n.Int64()
		if perr != nil && err == nil {
			err = fmt.Errorf("input.counters.%s must be an integer (fen)", name)
		}
		in.Counters = append(in.Counters, abi.Counter{Name: name, Value: val})
	}
	slices.SortFunc(in.Counters, func(a, b abi.Counter) int { return strings.Compare(a.Name, b.Name) })
	return in, err
}

// Caller runs a policy; engine.Runner satisfies it.
type Caller interface {
	Call(ctx context.Context, in *abi.Input, encoded []byte, out *abi.Output) error
}

// Failure is one case that did not answer as expected.
type Failure struct {
	Case        string   `json:"case"`
	Error       string   `json:"error,omitempty"`
	Differences []string `json:"differences,omitempty"`
}

// Run runs every case against p and returns the failures (none: all pass).
//
// Every case that passed is then run again, in the reverse order, and
// must get the same answer (amounts, changes, notes, or refusal): a
// module must not keep state from one call that changes a later answer
// (ABI.md), since its live answers would then depend on what an instance
// served before and no replay could reproduce them. This doubles a
// check's calls, not a settlement's.
func Run(ctx context.Context, p Caller, cs []Case) []Failure {
	var fails []Failure
	var out abi.Output
	names := Names(cs)
	timedOut := ""                     // the case the module ran out of time on
	answers := make([]string, len(cs)) // each passing case's answer; "" otherwise
	for i := range cs {
		c := &cs[i]
		name := names[i]
		if timedOut != "" {
			// Each further case could cost the whole time limit again.
			fails = append(fails, Failure{Case: name, Error: "not run: the module ran out of time on " + timedOut})
			continue
		}
		in, err := c.ABI()
		if err != nil {
			fails = append(fails, Failure{Case: name, Error: err.Error()})
			continue
		}
		err = p.Call(ctx, in, in.AppendBinary(nil), &out)
		if ce := (*engine.CallError)(nil); errors.As(err, &ce) && ce.Kind == engine.FailTimeout {
			timedOut = name
		}
		if c.Expect.Refusal {
			// Only a deliberate refusal: a trap, a timeout or an answer
			// that breaks a host check is the module failing, which would
			// fail settlements instead of refusing them cleanly.
			var ce *engine.CallError
			switch {
			case err == nil:
				fails = append(fails, Failure{Case: name, Differences: []string{"expected a refusal, got an answer"}})
			case !errors.As(err, &ce) || ce.Kind != engine.FailRefused:
				fails = append(fails, Failure{Case: name, Error: "expected a refusal, got a failure: " + err.Error()})
			default:
				answers[i] = answerOf(err, &out)
			}
			continue
		}
		if err != nil {
			fails = append(fails, Failure{Case: name, Error: err.Error()})
			continue
		}
		if d := c.Expect.diff(&out); len(d) > 0 {
			fails = append(fails, Failure{Case: name, Differences: d})
			continue
		}
		answers[i] = answerOf(nil, &out)
	}
	for i := len(cs) - 1; i >= 0 && timedOut == ""; i-- {
		if answers[i] == "" {
			continue
		}
		c := &cs[i]
		in, _ := c.ABI() // it did the first time
		err := p.Call(ctx, in, in.AppendBinary(nil), &out)
		if ce := (*engine.CallError)(nil); errors.As(err, &ce) && ce.Kind == engine.FailTimeout {
			timedOut = names[i]
		}
		if answerOf(err, &out) != answers[i] {
			msg := "answered differently when run again after the other cases: a module must not keep state from one call that changes a later answer (ABI.md)"
			if err != nil {
				msg += "; again: " + err.Error()
			}
			fails = append(fails, Failure{Case: names[i], Error: msg})
		}
	}
	return fails
}

// caseError is err, decoding case i (r), as a ParseError.
func caseError(i int, r []byte, err error) *ParseError {
	pe := &ParseError{Path: "cases[" + strconv.Itoa(i) + "]", Msg: strings.TrimPrefix(err.Error(), "json: ")}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		pe.Path += "." + te.Field
		pe.Msg = "a " + te.Value + " where " + te.Type.String() + " is wanted"
	}
	var named struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(r, &named) == nil && named.Name != "" {
		pe.Msg += " (case " + strconv.Quote(named.Name) + ")"
	}
	return pe
}

// Names are the names the cases are reported under, one each: a case's
// name, "case <i>" (its index) for one without, and "<name> (case <i>)"
// for every case after the first of a name given to more than one, so
// that a failure names the case that failed, not the one before it of
// the same name.
func Names(cs []Case) []string {
	names := make([]string, len(cs))
	seen := make(map[string]bool, len(cs))
	for i := range cs {
		name := cs[i].Name
		if name == "" {
			name = "case " + strconv.Itoa(i)
		}
		// Also an unnamed case's "case <i>", which an earlier case may
		// be named.
		for seen[name] {
			name += " (case " + strconv.Itoa(i) + ")"
		}
		seen[cs[i].Name], seen[name] = true, true
		names[i] = name
	}
	return names
}

// answerOf is what a call answered, to compare two calls: a refusal's
// reason, another failure's kind and message, or the whole Output.
func answerOf(err error, out *abi.Output) string {
	var ce *engine.CallError
	switch {
	case err == nil:
		return "answer\x00" + string(out.AppendBinary(nil))
	case errors.As(err, &ce) && ce.Kind == engine.FailRefused:
		return "refusal\x00" + out.Refusal
	default:
		return "failure\x00" + err.Error()
	}
}

func (e *Expect) diff(out *abi.Output) []string {
	var d []string
	cmp := func(field, want string, got int64) {
		if want == "" {
			want = "0.00"
		}
		w, err := money.Parse([]byte(strings.TrimPrefix(want, "-")), 2)
		if strings.HasPrefix(want, "-") {
			w = -w
		}
		if err != nil {
			d = append(d, fmt.Sprintf("%s: expected value %q is not an amount", field, want))
			return
		}
		if w != got {
			d = append(d, fmt.Sprintf("%s: got %s, want %s", field, money.FormatFen(got), money.FormatFen(w)))
		}
	}
	cmp("deductible", e.Deductible, out.Deductible)
	cmp("basic_fund", e.BasicFund, out.Basic)
	cmp("serious_illness", e.SeriousIllness, out.Serious)
	cmp("medical_assistance", e.MedicalAssistance, out.Assistance)
	cmp("personal_account", e.PersonalAccount, out.Account)
	if e.Changes != nil {
		got := map[string]int64{}
		for _, c := range out.Changes {
			got[c.Name] = c.Value
		}
		names := map[string]bool{}
		for n := range got {
			names[n] = true
		}
		for n := range e.Changes {
			names[n] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		slices.Sort(sorted)
		for _, n := range sorted {
			if got[n] != e.Changes[n] {
				d = append(d, fmt.Sprintf("changes.%s: got %d, want %d", n, got[n], e.Changes[n]))
			}
		}
	}
	return d
}

// ParseError is a case that does not decode, named by its path
// (cases[2], cases[2].input.person.continuous_years) and its name.
type ParseError struct {
	Path string
	Msg  string
}

func (e *ParseError) Error() string { return e.Path + ": " + e.Msg }

// Parse decodes a JSON array of cases, refusing unknown fields. A case
// that does not decode is a *ParseError naming it (its index and name)
// and, where JSON says, the field: an author's file holds hundreds.
func Parse(b []byte) ([]Case, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var raw []json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("cases: %w", err)
	}
	cs := make([]Case, len(raw))
	for i, r := range raw {
		cd := json.NewDecoder(bytes.NewReader(r))
		cd.DisallowUnknownFields()
		if err := cd.Decode(&cs[i]); err != nil {
			return nil, caseError(i, r, err)
		}
	}
	if raw == nil {
		cs = nil // "null", as before
	}
	// Else a file with anything after its array would pass a local
	// test and check, and fail only when signed or uploaded.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("cases: data after the array at byte %d", dec.InputOffset())
	}
	return cs, nil
}
