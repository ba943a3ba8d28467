// Package r152500 is the reference policy of region 152500 (Xilingol League,
// policies.md §4), version v1 (effective 2023-01-01).
//
// Counters (per person, insured region 152500, calendar year of the
// settlement date):
//
//	ded.chronic   chronic yearly deductible paid (300 a year)
//	cap.basic     basic fund paid in the inpatient + chronic pool (150,000)
//	serious.base  residents' running serious-illness base Σ(E − basic)
//	serious.paid  serious illness paid (cap 300,000 plus the raises)
//	assist.paid   medical assistance paid (limit 30,000)
//
// A resident's settlement in the waiting period moves none of them except
// assist.paid. Outpatient, two_disease and maternity visits get no fund
// payment and move nothing.
package r152500

import (
	"medgate/engine/abi"
	"medgate/plugins/policy/rules"
)

var y = rules.Yuan

var (
	empAdmissionDed = [4]int64{0, y(300), y(500), y(800)}
	empInpatientBP  = [4]int64{0, 9000, 8500, 8000} // retired +5 pp
	resAdmissionDed = [4]int64{0, y(200), y(400), y(800)}
	resInpatientBP  = [4]int64{0, 8500, 7500, 6000}
	chronicDed      = y(300) // employees and residents
	basicCap        = y(150000)
)

// Serious illness (residents): threshold 12,000; 60 % up to 50,000 above it,
// 70 % beyond; cap 300,000 raised by the incentives (CapFor).
var (
	seriousSegs = [2]rules.Segment{{Upto: y(50000), BP: 6000}, {Upto: rules.NoLimit, BP: 7000}}
	Serious     = rules.SeriousTerms{Threshold: y(12000), Segs: seriousSegs[:], Cap: y(300000)}
)

// Assistance, at assistance-designated hospitals only: destitute 100 %,
// subsistence 80 %, others 60 %; 30,000 a year.
var Assistance = rules.AssistanceTerms{Destitute: 10000, Subsistence: 8000, Other: 6000, Limit: y(30000)}

// SeriousCap is the person's serious-illness cap: 300,000 + 3,000 ×
// max(0, continuous_years − 4) + min(20,000, 3,000 × zero_claim_years).
func SeriousCap(p *abi.Person) int64 {
	c := Serious.Cap
	if n := int64(p.ContinuousYears) - 4; n > 0 {
		c += y(3000) * n
	}
	if n := int64(p.ZeroClaimYears); n > 0 {
		c += rules.Min(y(20000), y(3000)*n)
	}
	return c
}

var levelName = [4]string{"", "L1", "L2", "L3"}

// V1 is the policy version v1.
func V1(in *abi.Input, out *abi.Output) {
	if !rules.Check(in, out) {
		return
	}
	c := rules.New(in, out)
	lvl := in.Hospital.Level
	resident := in.Person.Scheme == abi.SchemeResident
	paid := in.Visit.Type == abi.VisitInpatient || in.Visit.Type == abi.VisitChronic

	wait := resident && paid && rules.InWait(&in.Person, in.Date)
	switch {
	case !paid:
		c.NoFund(noFundWhy(in.Visit.Type))
	case wait:
		b := append([]byte("waiting period until "), rules.DateString(rules.BenefitsStart(&in.Person))...)
		b = append(b, ": no deductible, basic fund or serious illness"...)
		c.Out.NoteBytes(b)
	default:
		adj := c.Adjustment()
		bp := resInpatientBP[lvl]
		if !resident {
			bp = empInpatientBP[lvl]
			if rules.Retired(in) {
				bp += 500
			}
		}
		if in.Visit.Type == abi.VisitInpatient {
			ded := resAdmissionDed[lvl]
			if !resident {
				ded = empAdmissionDed[lvl]
			}
			c.Deductible(ded, "", levelName[lvl]+" admission")
		} else {
			c.Deductible(chronicDed-in.Counter(rules.CtrDedChronic), rules.CtrDedChronic,
				"chronic, 300.00 a year; "+levelName[lvl]+" inpatient ratio")
		}
		segs := rules.Flat(bp)
		c.BasicTiered(segs[:], adj, basicCap, rules.CtrCapBasic, "inpatient + chronic")
		if resident {
			c.SeriousIllness(&Serious, SeriousCap(&in.Person))
		}
	}

	if paid {
		if in.Hospital.AssistanceDesignated {
			c.MedicalAssistance(&Assistance)
		} else if Assistance.Ratio(&in.Person) > 0 {
			c.Note("no medical assistance: hospital not assistance-designated")
		}
	}
	c.PersonalAccount()
}

func noFundWhy(t abi.VisitType) string {
	switch t {
	case abi.VisitOutpatient:
		return "outpatient visits are not paid in this region"
	case abi.VisitTwoDisease:
		return "two_disease visits are not paid in this region"
	}
	return "maternity is not paid in this region"
}
