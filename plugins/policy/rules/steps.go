package rules

import (
	"strconv"

	"medgate/engine/abi"
)

// Counter names shared by the reference policies. Each policy's package doc
// lists the ones it uses. All are per person, per insured region, per
// calendar year of the settlement date; the host adds a settlement's changes
// when it commits it and subtracts them when it reverses it.
const (
	// CtrAdmissionsL23 counts settled inpatient admissions at level 2 or 3
	// hospitals (the 3rd-admission rule of 371600 residents).
	CtrAdmissionsL23 = "adm.l23"
	// CtrDedChronic is the chronic (门慢) yearly deductible paid so far.
	CtrDedChronic = "ded.chronic"
	// CtrCapBasic is the basic fund paid in the inpatient + chronic cap pool.
	CtrCapBasic = "cap.basic"
	// CtrCapOutpatient is the basic fund paid on outpatient (普通门诊) visits.
	CtrCapOutpatient = "cap.op"
	// CtrCapTwoDisease is the basic fund paid on two_disease (两病) visits.
	CtrCapTwoDisease = "cap.two_disease"
	// CtrSeriousBase is the running serious-illness base: Σ (E − basic) of
	// the residents' inpatient and chronic visits.
	CtrSeriousBase = "serious.base"
	// CtrSeriousPaid is the serious-illness insurance paid.
	CtrSeriousPaid = "serious.paid"
	// CtrAssistancePaid is the medical assistance paid.
	CtrAssistancePaid = "assist.paid"
)

// CtrDedOutpatient are the outpatient yearly deductibles paid, per hospital
// level (index 1–3; 371600 employees: each level its own).
var CtrDedOutpatient = [4]string{"", "ded.op.l1", "ded.op.l2", "ded.op.l3"}

// Check refuses (sets out.Refusal and returns false) an input that no
// reference policy can settle: unknown scheme, visit type or hospital level,
// no settlement date, negative sums, or a maternity visit without a birth
// order ≥ 1. The host validates all of these before it calls a policy; this
// is a second line.
func Check(in *abi.Input, out *abi.Output) bool {
	switch {
	case in.Date == 0:
		out.Refusal = "settlement date missing"
	case in.Person.Scheme != abi.SchemeEmployee && in.Person.Scheme != abi.SchemeResident:
		out.Refusal = "unknown insurance scheme"
	case in.Visit.Type < abi.VisitInpatient || in.Visit.Type > abi.VisitMaternity:
		out.Refusal = "unknown visit type"
	case in.Hospital.Level < 1 || in.Hospital.Level > 3:
		out.Refusal = "hospital level must be 1, 2 or 3"
	case in.Sums.Eligible < 0 || in.Sums.Total < 0 || in.Sums.FullSelfPay < 0 ||
		in.Sums.OverLimit < 0 || in.Sums.PreSelfPay < 0:
		out.Refusal = "negative bill sums"
	case in.Visit.Type == abi.VisitMaternity && in.Visit.BirthOrder < 1:
		out.Refusal = "maternity visit without a birth order >= 1"
	default:
		return true
	}
	return false
}

// Retired reports whether the person is a retired employee.
func Retired(in *abi.Input) bool {
	return in.Person.Scheme == abi.SchemeEmployee && in.Person.Employment == abi.EmploymentRetired
}

// Calc is the working state of one settlement: the input, the answer being
// built in Out (Deductible, Basic, Serious, Assistance, Account), and a
// scratch buffer for notes. A policy makes one on the stack per call.
type Calc struct {
	In  *abi.Input
	Out *abi.Output
	E   int64 // eligible (符合政策范围金额)
	buf [160]byte
}

// New starts the settlement of in into out.
func New(in *abi.Input, out *abi.Output) Calc {
	return Calc{In: in, Out: out, E: in.Sums.Eligible}
}

// b returns the empty scratch buffer.
func (c *Calc) b() []byte { return c.buf[:0] }

// note appends b as a note.
func (c *Calc) note(b []byte) { c.Out.NoteBytes(b) } // no allocation: see abi.Output.NoteBytes

// Note appends a fixed note.
func (c *Calc) Note(s string) { c.Out.Note(s) }

// Deductible takes D = min(E, max(0, remaining)) as the deductible, notes it
// as "deductible 800.00 (why)", and adds it to counter when counter is not
// empty (a yearly deductible's amount paid). It returns D.
func (c *Calc) Deductible(remaining int64, counter, why string) int64 {
	d := Min(c.E, Max(0, remaining))
	c.Out.Deductible = d
	if counter != "" {
		c.Out.Add(counter, d)
	}
	b := append(c.b(), "deductible "...)
	b = AppendMoney(b, d)
	b = append(b, " ("...)
	b = append(b, why...)
	if d < remaining {
		b = append(b, ", of "...)
		b = AppendMoney(b, remaining)
		b = append(b, " remaining"...)
	}
	c.note(append(b, ')'))
	return d
}

// Adjustment returns Adjustment(c.In) and notes it when the visit is
// off-site and of an adjusted type.
func (c *Calc) Adjustment() int64 {
	adj := Adjustment(c.In)
	if !c.In.Hospital.Offsite {
		return adj
	}
	switch c.In.Visit.Type {
	case abi.VisitInpatient, abi.VisitChronic, abi.VisitOutpatient:
	default:
		return adj
	}
	b := append(c.b(), "off-site visit"...)
	switch {
	case c.In.Visit.Emergency:
		b = append(b, " (emergency)"...)
	case c.In.Person.Registration == abi.RegistrationLongTerm:
		b = append(b, " (registration long_term)"...)
	case c.In.Person.Registration == abi.RegistrationReferral:
		b = append(b, " (registration referral)"...)
	case c.In.Person.Registration == abi.RegistrationTemporary:
		b = append(b, " (registration temporary)"...)
	default:
		b = append(b, " (no registration)"...)
	}
	if adj == 0 {
		b = append(b, ": ratios unchanged"...)
	} else {
		b = append(b, ": ratios "...)
		b = strconv.AppendInt(b, adj/100, 10)
		b = append(b, " pp, never below 0"...)
	}
	c.note(b)
	return adj
}

// BasicTiered pays the basic fund on E − D by segs (ratios moved by adjBP),
// cut to the room left under cap after the pool's counter capCounter (cap
// NoLimit and capCounter "" for a pool without a cap or without a counter).
// What is paid is added to capCounter. It returns the basic fund.
func (c *Calc) BasicTiered(segs []Segment, adjBP, cap int64, capCounter, capName string) int64 {
	x := c.E - c.Out.Deductible
	raw := Tiered(x, 0, segs, adjBP)
	b := append(c.b(), "basic fund "...)
	b = AppendMoney(b, raw)
	b = append(b, ": "...)
	b = appendTiered(b, x, segs, adjBP)
	c.note(b)
	return c.payBasic(raw, cap, capCounter, capName)
}

// BasicFixed pays amount as the basic fund (a maternity grant cut to E, or
// 100 % of E), cut to cap like BasicTiered, with a note.
func (c *Calc) BasicFixed(amount, cap int64, capCounter, capName, why string) int64 {
	b := append(c.b(), "basic fund "...)
	b = AppendMoney(b, amount)
	b = append(b, " ("...)
	b = append(b, why...)
	c.note(append(b, ')'))
	return c.payBasic(amount, cap, capCounter, capName)
}

func (c *Calc) payBasic(raw, cap int64, capCounter, capName string) int64 {
	basic := Max(0, raw)
	if cap != NoLimit {
		used := int64(0)
		if capCounter != "" {
			used = c.In.Counter(capCounter)
		}
		if room := Room(cap, used); basic > room {
			basic = room
			b := append(c.b(), "cut to the "...)
			b = append(b, capName...)
			b = append(b, " cap "...)
			b = AppendMoney(b, cap)
			b = append(b, " (used "...)
			b = AppendMoney(b, used)
			b = append(b, "): basic fund "...)
			b = AppendMoney(b, basic)
			c.note(b)
		}
	}
	c.Out.Basic = basic
	if capCounter != "" {
		c.Out.Add(capCounter, basic)
	}
	return basic
}

// NoFund notes that the visit gets no fund payment (D = 0, basic 0).
func (c *Calc) NoFund(why string) {
	c.Out.Deductible, c.Out.Basic = 0, 0
	c.note(append(append(c.b(), "no basic fund: "...), why...))
}

// SeriousTerms are a serious-illness (大病保险) scheme: the yearly threshold,
// the segments counted from it, and the annual cap (NoLimit for none).
type SeriousTerms struct {
	Threshold int64
	Segs      []Segment
	Cap       int64
}

// Pay is PAY(base) of policies.md §2.3.
func (t *SeriousTerms) Pay(base int64) int64 { return Tiered(base, t.Threshold, t.Segs, 0) }

// SeriousIllness grows the running base (CtrSeriousBase) by E − basic and
// pays PAY(after) − PAY(before), cut to the room left under capAmount (t.Cap,
// or a cap raised by the region's incentives; NoLimit for none) after
// CtrSeriousPaid. What the cap cuts off is lost. It returns the amount.
func (c *Calc) SeriousIllness(t *SeriousTerms, capAmount int64) int64 {
	inc := Max(0, c.E-c.Out.Basic)
	before := c.In.Counter(CtrSeriousBase)
	after := before + inc
	c.Out.Add(CtrSeriousBase, inc)
	raw := Max(0, t.Pay(after)-t.Pay(before))
	paid := c.In.Counter(CtrSeriousPaid)
	s := raw
	if capAmount != NoLimit {
		s = CutToCap(raw, capAmount, paid)
	}
	c.Out.Serious = s
	c.Out.Add(CtrSeriousPaid, s)
	b := append(c.b(), "serious illness "...)
	b = AppendMoney(b, s)
	b = append(b, ": base "...)
	b = AppendMoney(b, before)
	b = append(b, " -> "...)
	b = AppendMoney(b, after)
	b = append(b, " (threshold "...)
	b = AppendMoney(b, t.Threshold)
	b = append(b, "), PAY "...)
	b = AppendMoney(b, t.Pay(before))
	b = append(b, " -> "...)
	b = AppendMoney(b, t.Pay(after))
	if s < raw {
		b = append(b, ", cut to the annual cap "...)
		b = AppendMoney(b, capAmount)
		b = append(b, " (paid "...)
		b = AppendMoney(b, paid)
		b = append(b, ')')
	} else if capAmount == NoLimit {
		b = append(b, ", no cap"...)
	}
	c.note(b)
	return s
}

// AssistanceTerms are a medical-assistance (医疗救助) scheme: the ratio of
// each special group and the annual limit.
type AssistanceTerms struct {
	Destitute   int64 // 特困, bp
	Subsistence int64 // 低保, bp
	Other       int64 // low_income_edge, monitored, illness_poverty, bp
	Limit       int64 // fen a year
}

// Ratio is the highest ratio of the person's special groups, 0 when the
// person is in none (names other than the five special groups are ignored).
func (t *AssistanceTerms) Ratio(p *abi.Person) int64 {
	var r int64
	for _, g := range p.Groups {
		var x int64
		switch g {
		case "destitute":
			x = t.Destitute
		case "subsistence":
			x = t.Subsistence
		case "low_income_edge", "monitored", "illness_poverty":
			x = t.Other
		}
		r = Max(r, x)
	}
	return r
}

// MedicalAssistance pays round((E − basic − serious) × ratio) of the
// person's highest special group, cut to the room left under t.Limit after
// CtrAssistancePaid. It does nothing for a person in no special group.
func (c *Calc) MedicalAssistance(t *AssistanceTerms) int64 {
	r := t.Ratio(&c.In.Person)
	if r == 0 {
		return 0
	}
	x := Max(0, c.E-c.Out.Basic-c.Out.Serious)
	raw := Pct(x, r)
	paid := c.In.Counter(CtrAssistancePaid)
	a := CutToCap(raw, t.Limit, paid)
	c.Out.Assistance = a
	c.Out.Add(CtrAssistancePaid, a)
	b := append(c.b(), "medical assistance "...)
	b = AppendMoney(b, a)
	b = append(b, ": "...)
	b = AppendMoney(b, x)
	b = append(b, " × "...)
	b = AppendPercent(b, r)
	if a < raw {
		b = append(b, " = "...)
		b = AppendMoney(b, raw)
		b = append(b, ", cut to the annual limit "...)
		b = AppendMoney(b, t.Limit)
		b = append(b, " (paid "...)
		b = AppendMoney(b, paid)
		b = append(b, ')')
	}
	c.note(b)
	return a
}

// PersonalAccount pays from an employee's personal account, when the
// hospital asks for it: min(balance, total − fund_total − full_self_pay −
// over_limit), never below 0. Residents have no account.
func (c *Calc) PersonalAccount() int64 {
	in := c.In
	if !in.UseAccount {
		return 0
	}
	if in.Person.Scheme != abi.SchemeEmployee {
		c.Note("personal account: residents have none")
		return 0
	}
	due := in.Sums.Total - c.Out.FundTotal() - in.Sums.FullSelfPay - in.Sums.OverLimit
	a := Max(0, Min(in.Person.AccountBalance, due))
	c.Out.Account = a
	b := append(c.b(), "personal account "...)
	b = AppendMoney(b, a)
	b = append(b, " (balance "...)
	b = AppendMoney(b, in.Person.AccountBalance)
	b = append(b, ", in-policy self pay "...)
	b = AppendMoney(b, Max(0, due))
	c.note(append(b, ')'))
	return a
}
