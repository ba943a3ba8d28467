// Package r371600 is the reference policy of region 371600 (Binzhou county,
// policies.md §3), versions v2023 (effective 2023-01-01) and v2024
// (effective 2024-01-01); they differ only in the residents' two_disease
// ratio (60 % / 70 %).
//
// Counters (per person, insured region 371600, calendar year of the
// settlement date):
//
//	adm.l23          inpatient admissions at level 2/3 hospitals (all schemes;
//	                 residents pay no deductible from the 3rd one on)
//	ded.chronic      chronic yearly deductible paid (employees 700, residents 200)
//	ded.op.l1..l3    employees' outpatient yearly deductible paid, per level
//	cap.basic        basic fund paid in the inpatient + chronic pool
//	                 (employees 200,000, residents 150,000 a year)
//	cap.op           basic fund paid on outpatient visits (employees 5,000,
//	                 residents 300 a year)
//	cap.two_disease  basic fund paid on two_disease visits (300/400/600)
//	serious.base     residents' running serious-illness base Σ(E − basic)
//	serious.paid     serious illness paid (cap 400,000; none for destitute,
//	                 subsistence and monitored persons)
//	assist.paid      medical assistance paid (limit 30,000)
//
// Maternity visits move no counter.
package r371600

import (
	"medgate/engine/abi"
	"medgate/plugins/policy/rules"
)

var y = rules.Yuan

// V2023 is the policy version v2023: residents' two_disease at 60 %.
func V2023(in *abi.Input, out *abi.Output) { settle(in, out, 6000) }

// V2024 is the policy version v2024: residents' two_disease at 70 %.
func V2024(in *abi.Input, out *abi.Output) { settle(in, out, 7000) }

// Employees (职工).
var (
	empAdmissionDed = [4]int64{0, y(200), y(400), y(800)}
	// Inpatient ratios at L1 and L2, active / retired.
	empInpatientActive  = rules.Flat(9000)
	empInpatientRetired = rules.Flat(9500)
	// Inpatient at L3: E − D of the admission in segments.
	empL3Active       = [2]rules.Segment{{Upto: y(10000), BP: 8500}, {Upto: rules.NoLimit, BP: 9000}}
	empL3Retired      = [2]rules.Segment{{Upto: y(10000), BP: 9250}, {Upto: rules.NoLimit, BP: 9500}}
	empChronicDed     = y(700)
	empChronicActive  = rules.Flat(8500)
	empChronicRetired = rules.Flat(9000)
	empCap            = y(200000) // inpatient + chronic
	empOutpatientDed  = [4]int64{0, y(200), y(300), y(400)}
	empOutpatientBP   = [4]int64{0, 8000, 7000, 6500} // retired +5 pp
	empOutpatientCap  = y(5000)
)

// Residents (居民).
var (
	resAdmissionDed  = [4]int64{0, y(200), y(500), y(1000)}
	resInpatientBP   = [4]int64{0, 9000, 7500, 6000}
	resChronicDed    = y(200)
	resChronicBP     = int64(6500)
	resCap           = y(150000) // inpatient + chronic
	resOutpatientBP  = [4]int64{0, 6500, 0, 0}
	resOutpatientCap = y(300)
)

// Serious illness (residents): threshold 15,000, 60/65/70 %, cap 400,000;
// destitute, subsistence and monitored: threshold 7,500, +5 pp, no cap.
var (
	seriousSegs        = [3]rules.Segment{{Upto: y(100000), BP: 6000}, {Upto: y(200000), BP: 6500}, {Upto: rules.NoLimit, BP: 7000}}
	seriousSpecialSegs = [3]rules.Segment{{Upto: y(100000), BP: 6500}, {Upto: y(200000), BP: 7000}, {Upto: rules.NoLimit, BP: 7500}}
	Serious            = rules.SeriousTerms{Threshold: y(15000), Segs: seriousSegs[:], Cap: y(400000)}
	SeriousSpecial     = rules.SeriousTerms{Threshold: y(7500), Segs: seriousSpecialSegs[:], Cap: rules.NoLimit}
)

// Assistance: destitute 100 %, subsistence 70 %, others 60 %; 30,000 a year.
var Assistance = rules.AssistanceTerms{Destitute: 10000, Subsistence: 7000, Other: 6000, Limit: y(30000)}

// SeriousTermsFor picks the serious-illness terms of a person: the special
// terms for destitute, subsistence and monitored persons (shared with
// region 370000, whose serious illness is "exactly as region 371600").
func SeriousTermsFor(p *abi.Person) *rules.SeriousTerms {
	if p.HasGroup("destitute") || p.HasGroup("subsistence") || p.HasGroup("monitored") {
		return &SeriousSpecial
	}
	return &Serious
}

// TwoDiseaseCap is the residents' yearly two_disease cap by the registered
// conditions: hypertension 300, diabetes 400, both 600, neither 0.
func TwoDiseaseCap(p *abi.Person) int64 {
	h, d := p.HasCondition("hypertension"), p.HasCondition("diabetes")
	switch {
	case h && d:
		return y(600)
	case d:
		return y(400)
	case h:
		return y(300)
	}
	return 0
}

var levelName = [4]string{"", "L1", "L2", "L3"}

func settle(in *abi.Input, out *abi.Output, twoDiseaseBP int64) {
	if !rules.Check(in, out) {
		return
	}
	c := rules.New(in, out)
	lvl := in.Hospital.Level
	retired := rules.Retired(in)
	resident := in.Person.Scheme == abi.SchemeResident

	switch in.Visit.Type {
	case abi.VisitInpatient:
		adj := c.Adjustment()
		if lvl >= 2 {
			out.Add(rules.CtrAdmissionsL23, 1)
		}
		if resident {
			prior := in.Counter(rules.CtrAdmissionsL23)
			if lvl >= 2 && prior >= 2 {
				c.Deductible(0, "", admissionWhy(lvl, "admission, 3rd or later L2/L3 admission of the year: waived"))
			} else {
				c.Deductible(resAdmissionDed[lvl], "", admissionWhy(lvl, "admission"))
			}
			segs := rules.Flat(resInpatientBP[lvl])
			c.BasicTiered(segs[:], adj, resCap, rules.CtrCapBasic, "inpatient + chronic")
		} else {
			c.Deductible(empAdmissionDed[lvl], "", admissionWhy(lvl, "admission"))
			var segs []rules.Segment
			switch {
			case lvl == 3 && retired:
				segs = empL3Retired[:]
			case lvl == 3:
				segs = empL3Active[:]
			case retired:
				segs = empInpatientRetired[:]
			default:
				segs = empInpatientActive[:]
			}
			c.BasicTiered(segs, adj, empCap, rules.CtrCapBasic, "inpatient + chronic")
		}

	case abi.VisitChronic:
		adj := c.Adjustment()
		if resident {
			c.Deductible(resChronicDed-in.Counter(rules.CtrDedChronic), rules.CtrDedChronic, "chronic, 200.00 a year")
			segs := rules.Flat(resChronicBP)
			c.BasicTiered(segs[:], adj, resCap, rules.CtrCapBasic, "inpatient + chronic")
		} else {
			c.Deductible(empChronicDed-in.Counter(rules.CtrDedChronic), rules.CtrDedChronic, "chronic, 700.00 a year")
			segs := empChronicActive
			if retired {
				segs = empChronicRetired
			}
			c.BasicTiered(segs[:], adj, empCap, rules.CtrCapBasic, "inpatient + chronic")
		}

	case abi.VisitOutpatient:
		adj := c.Adjustment()
		if resident {
			if resOutpatientBP[lvl] == 0 {
				c.NoFund("residents' outpatient care is paid at L1 hospitals only")
				break
			}
			segs := rules.Flat(resOutpatientBP[lvl])
			c.BasicTiered(segs[:], adj, resOutpatientCap, rules.CtrCapOutpatient, "outpatient")
		} else {
			ctr := rules.CtrDedOutpatient[lvl]
			c.Deductible(empOutpatientDed[lvl]-in.Counter(ctr), ctr, outpatientWhy(lvl))
			bp := empOutpatientBP[lvl]
			if retired {
				bp += 500
			}
			segs := rules.Flat(bp)
			c.BasicTiered(segs[:], adj, empOutpatientCap, rules.CtrCapOutpatient, "outpatient")
		}

	case abi.VisitTwoDisease:
		if !resident {
			c.NoFund("two_disease drugs are paid for residents only")
			break
		}
		limit := TwoDiseaseCap(&in.Person)
		if limit == 0 {
			c.NoFund("no hypertension or diabetes registered")
			break
		}
		segs := rules.Flat(twoDiseaseBP)
		c.BasicTiered(segs[:], 0, limit, rules.CtrCapTwoDisease, "two_disease")

	case abi.VisitMaternity:
		if resident {
			grant := y(1500)
			if in.Visit.BirthOrder >= 3 {
				grant = y(3000)
			}
			c.BasicFixed(rules.Min(grant, c.E), rules.NoLimit, "", "", grantWhy(grant))
		} else {
			c.BasicFixed(c.E, rules.NoLimit, "", "", "maternity: 100% of eligible")
		}
	}

	if resident && (in.Visit.Type == abi.VisitInpatient || in.Visit.Type == abi.VisitChronic) {
		t := SeriousTermsFor(&in.Person)
		c.SeriousIllness(t, t.Cap)
	}
	if in.Visit.Type == abi.VisitInpatient || in.Visit.Type == abi.VisitChronic {
		c.MedicalAssistance(&Assistance)
	}
	c.PersonalAccount()
}

func admissionWhy(lvl uint8, s string) string { return levelName[lvl] + " " + s }

func outpatientWhy(lvl uint8) string {
	return "outpatient " + levelName[lvl] + ", " + rules.Money(empOutpatientDed[lvl]) + " a year"
}

func grantWhy(grant int64) string {
	return "maternity grant " + rules.Money(grant) + ", at most eligible"
}
