// Package abi is version 1 of the contract between the gateway (the host) and
// a region's policy module (the guest): the values a policy sees, the values it
// answers, and their binary encoding. ABI.md in this directory is the
// language-neutral description; this file is its Go form, shared by the host
// (engine) and the guest SDK (plugins/sdk).
//
// The package imports only the standard library's encoding/binary, errors and
// unsafe so that it compiles into a small guest (GOOS=wasip1) as well as natively.
//
// Money is integer fen (0.01 yuan) in int64 everywhere. Dates are YYYYMMDD
// integers (20261123), so that comparing two dates is comparing two integers.
package abi

import "unsafe"

// Version is the ABI version this package encodes. A module declares it by
// returning it from the exported function abi_version.
const Version = 1

// Date is a calendar date as the integer YYYYMMDD; 0 means "none".
type Date int32

// Year is the calendar year of d.
func (d Date) Year() int32 { return int32(d) / 10000 }

// Month is the month (1–12) of d.
func (d Date) Month() int32 { return int32(d) / 100 % 100 }

// Day is the day of month of d.
func (d Date) Day() int32 { return int32(d) % 100 }

// MakeDate builds a Date from its parts; it does not validate them.
func MakeDate(y, m, d int32) Date { return Date(y*10000 + m*100 + d) }

// ParseDate parses a strict YYYY-MM-DD calendar date: ASCII digits only, a
// real day of the years 1900–2999. The one parser of every date the host
// reads (bills, registries, versions, a check's cases), so that nothing
// reaches a policy on a date no bill can carry.
func ParseDate[T string | []byte](s T) (Date, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	var part [3]int32
	for i, r := range [3][2]int{{0, 4}, {5, 7}, {8, 10}} {
		for j := r[0]; j < r[1]; j++ {
			c := s[j]
			if c < '0' || c > '9' {
				return 0, false
			}
			part[i] = part[i]*10 + int32(c-'0')
		}
	}
	y, m, d := part[0], part[1], part[2]
	if y < 1900 || y > 2999 || m < 1 || m > 12 || d < 1 || d > DaysIn(y, m) {
		return 0, false
	}
	return MakeDate(y, m, d), true
}

// DaysIn is the number of days of month m (1–12) of year y (Gregorian).
func DaysIn(y, m int32) int32 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// Scheme is the insurance scheme a person is enrolled in.
type Scheme uint8

const (
	SchemeEmployee Scheme = 1 // 职工
	SchemeResident Scheme = 2 // 居民
)

// Employment distinguishes active from retired employees.
type Employment uint8

const (
	EmploymentNone    Employment = 0
	EmploymentActive  Employment = 1
	EmploymentRetired Employment = 2
)

// Registration is a person's off-site filing (异地就医备案).
type Registration uint8

const (
	RegistrationNone      Registration = 0 // unregistered, or none given
	RegistrationLongTerm  Registration = 1 // 异地长期居住
	RegistrationReferral  Registration = 2 // 异地转诊
	RegistrationTemporary Registration = 3 // 其他临时外出
)

// VisitType is the kind of visit being settled.
type VisitType uint8

const (
	VisitInpatient  VisitType = 1 // 住院
	VisitOutpatient VisitType = 2 // 普通门诊
	VisitChronic    VisitType = 3 // 门诊慢特病
	VisitTwoDisease VisitType = 4 // 两病
	VisitMaternity  VisitType = 5 // 住院分娩
)

// Class is a catalog line's class in the treating region's catalog.
type Class uint8

const (
	ClassA Class = 1 // 甲
	ClassB Class = 2 // 乙
	ClassC Class = 3 // 丙, or not in the catalog
)

// Person is what the registry of the insured region knows of the patient.
type Person struct {
	Scheme               Scheme
	Employment           Employment
	Registration         Registration
	InConcentratedPeriod bool
	EnrolledOn           Date // 0: unknown
	LapsedYears          int32
	RepaidYears          int32
	ContinuousYears      int32
	ZeroClaimYears       int32
	AccountBalance       int64    // fen, the running personal-account balance
	Groups               []string // special groups: destitute, subsistence, ...
	Conditions           []string // registered conditions: hypertension, diabetes
}

// HasGroup reports whether the person is in group g.
func (p *Person) HasGroup(g string) bool { return contains(p.Groups, g) }

// HasCondition reports whether the person has condition c registered.
func (p *Person) HasCondition(c string) bool { return contains(p.Conditions, c) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Visit describes the visit being settled.
type Visit struct {
	Type         VisitType
	Emergency    bool
	BirthOrder   int32 // maternity only; 0 otherwise
	AdmittedOn   Date  // inpatient and maternity
	DischargedOn Date  // inpatient and maternity
	VisitDate    Date
	Diagnoses    []string
}

// Hospital is the treating side: the hospital's registry facts.
type Hospital struct {
	Level                uint8 // 1, 2 or 3
	AssistanceDesignated bool
	// Offsite is true when the treating region's code does not start with
	// the insured region's code stripped of its trailing "00" pairs.
	Offsite        bool
	TreatingRegion string // 6 digits
	InsuredRegion  string // 6 digits
}

// Sums are the catalog step's totals over all lines (policies.md §1), in fen.
type Sums struct {
	Total       int64
	FullSelfPay int64
	OverLimit   int64
	PreSelfPay  int64
	Eligible    int64 // E
}

// Line is one bill line after the catalog step, in fen.
type Line struct {
	Code        string
	Class       Class
	Listed      bool
	Amount      int64
	FullSelfPay int64
	OverLimit   int64
	PreSelfPay  int64
	Eligible    int64
}

// Counter is a named accumulator value (in Input) or change (in Output).
// Names are chosen by the policy: 1 to 32 bytes of [a-z0-9._-].
type Counter struct {
	Name  string
	Value int64
}

// Input is everything a policy sees for one settlement.
type Input struct {
	// Date is the settlement date: the discharge date for inpatient and
	// maternity visits, the visit date otherwise. Accumulators are those of
	// Date's calendar year.
	Date       Date
	UseAccount bool // the hospital asks to pay from the personal account
	Person     Person
	Visit      Visit
	Hospital   Hospital
	Sums       Sums
	Lines      []Line
	// Counters are the person's accumulators in the insured region for
	// Date's year, sorted by name; a counter never written is absent (0).
	Counters []Counter
}

// HasCounter reports whether the person has counter name this year.
func (in *Input) HasCounter(name string) bool {
	for i := range in.Counters {
		if in.Counters[i].Name == name {
			return true
		}
	}
	return false
}

// Counter returns the value of the named accumulator, 0 when absent.
func (in *Input) Counter(name string) int64 {
	for i := range in.Counters {
		if in.Counters[i].Name == name {
			return in.Counters[i].Value
		}
	}
	return 0
}

// Output is a policy's answer for one settlement.
type Output struct {
	// Refusal, when not empty, refuses the settlement with this reason
	// (the gateway answers 422 policy_refused); the amounts are ignored.
	Refusal    string
	Deductible int64 // act_pay_dedc
	Basic      int64 // hifp_pay
	Serious    int64 // hifmi_pay
	Assistance int64 // maf_pay
	Account    int64 // acct_pay
	// Changes are the accumulator changes, added to Input.Counters by the
	// host when the settlement is committed (and subtracted on reversal).
	Changes []Counter
	Notes   []string
	// noteBuf holds the bytes of the notes added by NoteBytes.
	noteBuf []byte
}

// Add appends a change of the named counter (merging with an earlier change of
// the same name); a zero delta is dropped.
func (o *Output) Add(name string, delta int64) {
	if delta == 0 {
		return
	}
	for i := range o.Changes {
		if o.Changes[i].Name == name {
			o.Changes[i].Value += delta
			return
		}
	}
	o.Changes = append(o.Changes, Counter{Name: name, Value: delta})
}

// Note appends a human-readable step to the answer.
func (o *Output) Note(s string) { o.Notes = append(o.Notes, s) }

// NoteBytes appends b as a note, copying it into storage that o keeps
// across Reset, so that a policy building its notes in a buffer allocates
// nothing once that storage has grown. In Go's wasip1 guest an allocation
// costs about a microsecond (a test module making ten small allocations a
// call took 20–41 µs against 14–16 µs for the same module making none).
// Such a note is valid until o is Reset (its bytes are then reused): encode
// o or copy the notes before.
func (o *Output) NoteBytes(b []byte) {
	if len(b) == 0 {
		o.Notes = append(o.Notes, "")
		return
	}
	if cap(o.noteBuf)-len(o.noteBuf) < len(b) {
		// A new array; the notes so far keep the old one.
		o.noteBuf = make([]byte, 0, max(2*cap(o.noteBuf), len(b), 512))
	}
	start := len(o.noteBuf)
	o.noteBuf = append(o.noteBuf, b...)
	o.Notes = append(o.Notes, unsafe.String(&o.noteBuf[start], len(b)))
}

// Reset clears o for reuse, keeping its slices' storage.
func (o *Output) Reset() {
	changes, notes, buf := o.Changes[:0], o.Notes[:0], o.noteBuf[:0]
	*o = Output{Changes: changes, Notes: notes, noteBuf: buf}
}

// FundTotal is basic + serious + assistance.
func (o *Output) FundTotal() int64 { return o.Basic + o.Serious + o.Assistance }
