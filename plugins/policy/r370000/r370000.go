// Package r370000 is the reference policy of region 370000 (Shandong
// province, policies.md §5), version v1 (effective 2023-01-01).
//
// Counters (per person, insured region 370000, calendar year of the
// settlement date):
//
//	ded.chronic      chronic deductible paid this year; a chronic visit pays
//	                 max(0, admission deductible of its level − ded.chronic)
//	cap.basic        employees' basic fund paid in the inpatient + chronic
//	                 pool (300,000); residents have no basic cap and do not
//	                 move it
//	cap.op           residents' outpatient basic fund paid (400 a year)
//	cap.two_disease  residents' two_disease basic fund paid (300/400/600)
//	serious.base     residents' running serious-illness base Σ(E − basic)
//	serious.paid     serious illness paid (cap 400,000; none for destitute,
//	                 subsistence and monitored persons)
//	assist.paid      medical assistance paid (limit 50,000)
//
// Maternity visits move no counter.
package r370000

import (
	"medgate/engine/abi"
	"medgate/plugins/policy/r371600"
	"medgate/plugins/policy/rules"
)

var y = rules.Yuan

var (
	empAdmissionDed  = [4]int64{0, y(300), y(600), y(1000)}
	empActiveBP      = int64(8500) // every level
	empRetiredBP     = int64(9000)
	empCap           = y(300000) // inpatient + chronic
	resAdmissionDed  = [4]int64{0, y(200), y(500), y(1000)}
	resInpatientBP   = [4]int64{0, 8000, 7000, 6000}
	resOutpatientBP  = [4]int64{0, 6500, 0, 0}
	resOutpatientCap = y(400)
	resTwoDiseaseBP  = int64(7500)
	// Residents' maternity grant by birth order 1, 2, 3 and up.
	resGrant = [4]int64{0, y(1000), y(1500), y(3000)}
)

// Assistance: destitute 100 %, subsistence 70 %, others 60 %; 50,000 a year.
var Assistance = rules.AssistanceTerms{Destitute: 10000, Subsistence: 7000, Other: 6000, Limit: y(50000)}

var levelName = [4]string{"", "L1", "L2", "L3"}

// V1 is the policy version v1.
func V1(in *abi.Input, out *abi.Output) {
	if !rules.Check(in, out) {
		return
	}
	c := rules.New(in, out)
	lvl := in.Hospital.Level
	resident := in.Person.Scheme == abi.SchemeResident

	// The inpatient terms of the person at this level, which chronic
	// visits follow too ("参照住院").
	ded, bp := resAdmissionDed[lvl], resInpatientBP[lvl]
	capAmount, capCounter := rules.NoLimit, ""
	if !resident {
		ded, bp = empAdmissionDed[lvl], empActiveBP
		if rules.Retired(in) {
			bp = empRetiredBP
		}
		capAmount, capCounter = empCap, rules.CtrCapBasic
	}

	switch in.Visit.Type {
	case abi.VisitInpatient:
		adj := c.Adjustment()
		c.Deductible(ded, "", levelName[lvl]+" admission")
		segs := rules.Flat(bp)
		c.BasicTiered(segs[:], adj, capAmount, capCounter, "inpatient + chronic")

	case abi.VisitChronic:
		adj := c.Adjustment()
		paid := in.Counter(rules.CtrDedChronic)
		c.Deductible(ded-paid, rules.CtrDedChronic,
			"chronic like inpatient: "+levelName[lvl]+" "+rules.Money(ded)+" a year less "+rules.Money(paid)+" paid")
		segs := rules.Flat(bp)
		c.BasicTiered(segs[:], adj, capAmount, capCounter, "inpatient + chronic")

	case abi.VisitOutpatient:
		if !resident {
			c.NoFund("employees' outpatient care is not paid in this region")
			break
		}
		adj := c.Adjustment()
		if resOutpatientBP[lvl] == 0 {
			c.NoFund("residents' outpatient care is paid at L1 hospitals only")
			break
		}
		segs := rules.Flat(resOutpatientBP[lvl])
		c.BasicTiered(segs[:], adj, resOutpatientCap, rules.CtrCapOutpatient, "outpatient")

	case abi.VisitTwoDisease:
		if !resident {
			c.NoFund("two_disease drugs are paid for residents only")
			break
		}
		limit := r371600.TwoDiseaseCap(&in.Person)
		if limit == 0 {
			c.NoFund("no hypertension or diabetes registered")
			break
		}
		segs := rules.Flat(resTwoDiseaseBP)
		c.BasicTiered(segs[:], 0, limit, rules.CtrCapTwoDisease, "two_disease")

	case abi.VisitMaternity:
		if resident {
			grant := resGrant[rules.Min(int64(in.Visit.BirthOrder), 3)]
			c.BasicFixed(rules.Min(grant, c.E), rules.NoLimit, "", "",
				"maternity grant "+rules.Money(grant)+", at most eligible")
		} else {
			c.BasicFixed(c.E, rules.NoLimit, "", "", "maternity: 100% of eligible")
		}
	}

	if resident && (in.Visit.Type == abi.VisitInpatient || in.Visit.Type == abi.VisitChronic) {
		// Serious illness exactly as region 371600.
		t := r371600.SeriousTermsFor(&in.Person)
		c.SeriousIllness(t, t.Cap)
	}
	if in.Visit.Type == abi.VisitInpatient || in.Visit.Type == abi.VisitChronic {
		c.MedicalAssistance(&Assistance)
	}
	c.PersonalAccount()
}
