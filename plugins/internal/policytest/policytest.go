// Package policytest helps test policies natively: a Case that builds an
// abi.Input from a few fields, the host's checks of an Output (ABI.md, "Host
// checks"), and a Book that keeps one person's counters and account balance
// across a sequence of settlements, quotes and reversals the way the host
// does (new counters = old + changes in the settlement year; a reversal
// subtracts the recorded changes in the original year and gives the account
// money back).
package policytest

import (
	"errors"
	"fmt"
	"sort"

	"medgate/engine/abi"
	"medgate/plugins/sdk"
)

// Case is one settlement described by the fields a table test varies.
// Money is fen; Total defaults to E + FSP + OL + Pre.
type Case struct {
	Name       string
	Scheme     abi.Scheme
	Retired    bool
	Reg        abi.Registration
	Groups     []string
	Conditions []string
	Balance    int64
	Enrolled   abi.Date
	InConc     bool
	Lapsed     int32
	Repaid     int32
	Continuous int32
	ZeroClaim  int32

	Type       abi.VisitType
	Emergency  bool
	BirthOrder int32
	Date       abi.Date
	Level      uint8
	Designated bool
	Offsite    bool
	UseAccount bool

	E, FSP, OL, Pre, Total int64

	Counters map[string]int64 // the counters before the settlement
}

// Input builds the abi.Input of c.
func (c *Case) Input() abi.Input {
	emp := abi.EmploymentActive
	if c.Retired {
		emp = abi.EmploymentRetired
	}
	total := c.Total
	if total == 0 {
		total = c.E + c.FSP + c.OL + c.Pre
	}
	in := abi.Input{
		Date:       c.Date,
		UseAccount: c.UseAccount,
		Person: abi.Person{
			Scheme: c.Scheme, Employment: emp, Registration: c.Reg,
			InConcentratedPeriod: c.InConc, EnrolledOn: c.Enrolled,
			LapsedYears: c.Lapsed, RepaidYears: c.Repaid,
			ContinuousYears: c.Continuous, ZeroClaimYears: c.ZeroClaim,
			AccountBalance: c.Balance, Groups: c.Groups, Conditions: c.Conditions,
		},
		Visit: abi.Visit{Type: c.Type, Emergency: c.Emergency, BirthOrder: c.BirthOrder, VisitDate: c.Date},
		Hospital: abi.Hospital{
			Level: c.Level, AssistanceDesignated: c.Designated, Offsite: c.Offsite,
			TreatingRegion: "000000", InsuredRegion: "000000",
		},
		Sums: abi.Sums{Total: total, FullSelfPay: c.FSP, OverLimit: c.OL, PreSelfPay: c.Pre, Eligible: c.E},
		Lines: []abi.Line{{Code: "X", Class: abi.ClassA, Listed: true, Amount: total,
			FullSelfPay: c.FSP, OverLimit: c.OL, PreSelfPay: c.Pre, Eligible: c.E}},
		Counters: SortedCounters(c.Counters),
	}
	if c.Type == abi.VisitInpatient || c.Type == abi.VisitMaternity {
		in.Visit.AdmittedOn, in.Visit.DischargedOn = c.Date, c.Date
	}
	return in
}

// SortedCounters turns a map into the sorted counter list of an Input,
// leaving out zeros.
func SortedCounters(m map[string]int64) []abi.Counter {
	var list []abi.Counter
	for k, v := range m {
		if v != 0 {
			list = append(list, abi.Counter{Name: k, Value: v})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list
}

// Changes turns an Output's changes into a map.
func Changes(out *abi.Output) map[string]int64 {
	m := map[string]int64{}
	for _, c := range out.Changes {
		m[c.Name] += c.Value
	}
	return m
}

// CheckOutput applies the host's checks of ABI.md to out for in, and
// returns the first rule broken.
func CheckOutput(in *abi.Input, out *abi.Output) error {
	if out.Refusal != "" {
		return nil
	}
	switch {
	case out.Deductible < 0 || out.Basic < 0 || out.Serious < 0 || out.Assistance < 0 || out.Account < 0:
		return errors.New("non_negative")
	case out.Deductible > in.Sums.Eligible:
		return errors.New("deductible_within_eligible")
	case out.FundTotal() > in.Sums.Eligible:
		return errors.New("funds_within_eligible")
	case out.Account > in.Person.AccountBalance || out.Account > 0 && !in.UseAccount:
		return errors.New("account_within_balance")
	case out.FundTotal()+out.Account > in.Sums.Total:
		return errors.New("sum")
	case len(out.Notes) > abi.MaxNotes:
		return errors.New("notes")
	}
	seen := map[string]bool{}
	for _, c := range out.Changes {
		if !abi.ValidName(c.Name) || seen[c.Name] {
			return fmt.Errorf("counter_name %q", c.Name)
		}
		seen[c.Name] = true
		v, ok := abi.AddChecked(in.Counter(c.Name), c.Value)
		if !ok || v < 0 {
			return fmt.Errorf("counter_range %q", c.Name)
		}
	}
	return nil
}

// Run settles in with p through the SDK's code path (encode, decode, run,
// encode, decode), checks the answer like the host, and returns it with the
// encoded input and output.
func Run(p sdk.Policy, in *abi.Input) (out abi.Output, inBytes, outBytes []byte, err error) {
	inBytes = in.AppendBinary(nil)
	outBytes = sdk.Run(p, inBytes)
	if err = out.Decode(outBytes); err != nil {
		return out, inBytes, outBytes, fmt.Errorf("output does not decode: %w", err)
	}
	return out, inBytes, outBytes, CheckOutput(in, &out)
}

// Book is one person's state as the host keeps it: counters per year and the
// running personal-account balance.
type Book struct {
	Balance  int64
	Counters map[int32]map[string]int64 // year → name → value
	entries  []entry
}

type entry struct {
	year     int32
	changes  []abi.Counter
	account  int64
	reversed bool
}

// NewBook starts a book with an opening balance.
func NewBook(balance int64) *Book {
	return &Book{Balance: balance, Counters: map[int32]map[string]int64{}}
}

// Prepare fills in's counters (of in.Date's year) and balance from the book.
func (b *Book) Prepare(in *abi.Input) {
	in.Counters = SortedCounters(b.Counters[in.Date.Year()])
	in.Person.AccountBalance = b.Balance
}

// Settle runs p on in with the book's counters and balance, checks the
// answer, and commits it (unless quote). It returns the answer and the index
// of the entry, for Reverse.
func (b *Book) Settle(p sdk.Policy, in *abi.Input, quote bool) (abi.Output, int, error) {
	b.Prepare(in)
	out, _, _, err := Run(p, in)
	if err != nil || out.Refusal != "" || quote {
		return out, -1, err
	}
	b.Commit(in.Date.Year(), out.Changes, out.Account)
	return out, len(b.entries) - 1, nil
}

// Commit books a settlement's changes in year and takes account from the
// balance.
func (b *Book) Commit(year int32, changes []abi.Counter, account int64) {
	m := b.Counters[year]
	if m == nil {
		m = map[string]int64{}
		b.Counters[year] = m
	}
	for _, c := range changes {
		m[c.Name] += c.Value
	}
	b.Balance -= account
	b.entries = append(b.entries, entry{year: year, changes: append([]abi.Counter(nil), changes...), account: account})
}

// Reverse books the reversal of entry i: its changes subtracted in its year,
// its account money given back.
func (b *Book) Reverse(i int) error {
	if i < 0 || i >= len(b.entries) {
		return errors.New("no such settlement")
	}
	e := &b.entries[i]
	if e.reversed {
		return errors.New("already reversed")
	}
	e.reversed = true
	m := b.Counters[e.year]
	for _, c := range e.changes {
		m[c.Name] -= c.Value
		if m[c.Name] < 0 {
			return fmt.Errorf("counter %s would become negative", c.Name)
		}
	}
	b.Balance += e.account
	return nil
}

// RunBytes settles an encoded input with p natively and returns the encoded
// Output (the SDK's code path).
func RunBytes(p sdk.Policy, input []byte) []byte { return sdk.Run(p, input) }
