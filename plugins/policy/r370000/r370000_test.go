package r370000_test

import (
	"testing"

	"medgate/engine/abi"
	pt "medgate/plugins/internal/policytest"
	"medgate/plugins/policy/r370000"
)

func y(n int64) int64 { return n * 100 }

const (
	emp = abi.SchemeEmployee
	res = abi.SchemeResident
	ip  = abi.VisitInpatient
	op  = abi.VisitOutpatient
	ch  = abi.VisitChronic
	td  = abi.VisitTwoDisease
	mat = abi.VisitMaternity
)

type row struct {
	c pt.Case
	w pt.Want
}

func run(t *testing.T, rows []row) {
	t.Helper()
	for _, r := range rows {
		if r.c.Date == 0 {
			r.c.Date = 20250601
		}
		pt.Expect(t, r370000.V1, r.c, r.w)
	}
}

func TestEmployees(t *testing.T) {
	run(t, []row{
		{pt.Case{Name: "inpatient L1 300 / 85%", Scheme: emp, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(300), Basic: y(3995), Changes: pt.C{"cap.basic": y(3995)}}},
		{pt.Case{Name: "inpatient L2 600 / 85%", Scheme: emp, Type: ip, Level: 2, E: y(5000)},
			pt.Want{D: y(600), Basic: y(3740)}},
		{pt.Case{Name: "inpatient L3 1,000 / 85%", Scheme: emp, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(1000), Basic: y(7650)}},
		{pt.Case{Name: "retired L2 90%", Scheme: emp, Retired: true, Type: ip, Level: 2, E: y(10000)},
			pt.Want{D: y(600), Basic: y(8460)}},
		{pt.Case{Name: "retired L3 90%", Scheme: emp, Retired: true, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(1000), Basic: y(8100)}},
		{pt.Case{Name: "cap 300,000 shared", Scheme: emp, Type: ch, Level: 3, E: y(10000), Counters: pt.C{"cap.basic": y(299000)}},
			pt.Want{D: y(1000), Basic: y(1000), Changes: pt.C{"ded.chronic": y(1000), "cap.basic": y(1000)}}},
		{pt.Case{Name: "inpatient cap 300,000", Scheme: emp, Type: ip, Level: 3, E: y(400000)},
			pt.Want{D: y(1000), Basic: y(300000)}},
		{pt.Case{Name: "chronic L1: D 200 of 300", Scheme: emp, Type: ch, Level: 1, E: y(200)},
			pt.Want{D: y(200), Changes: pt.C{"ded.chronic": y(200)}}},
		{pt.Case{Name: "chronic L3: 1,000 less 200 paid", Scheme: emp, Type: ch, Level: 3, E: y(2000), Counters: pt.C{"ded.chronic": y(200)}},
			pt.Want{D: y(800), Basic: y(1020), Changes: pt.C{"ded.chronic": y(800), "cap.basic": y(1020)}}},
		{pt.Case{Name: "chronic L1 after 1,000 paid", Scheme: emp, Type: ch, Level: 1, E: y(500), Counters: pt.C{"ded.chronic": y(1000)}},
			pt.Want{Basic: y(425), Changes: pt.C{"cap.basic": y(425)}}},
		{pt.Case{Name: "chronic L2 after 1,000 paid", Scheme: emp, Type: ch, Level: 2, E: y(100), Counters: pt.C{"ded.chronic": y(1000)}},
			pt.Want{Basic: y(85)}},
		{pt.Case{Name: "chronic retired 90%", Scheme: emp, Retired: true, Type: ch, Level: 2, E: y(1000)},
			pt.Want{D: y(600), Basic: y(360)}},
		{pt.Case{Name: "inpatient does not pay the chronic deductible", Scheme: emp, Type: ip, Level: 1, E: y(1000), Counters: pt.C{"ded.chronic": y(300)}},
			pt.Want{D: y(300), Basic: y(595), Changes: pt.C{"cap.basic": y(595)}}},
		{pt.Case{Name: "outpatient none", Scheme: emp, Type: op, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "two_disease none", Scheme: emp, Conditions: []string{"hypertension"}, Type: td, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "maternity 100% of E", Scheme: emp, Retired: true, Type: mat, BirthOrder: 1, Level: 3, E: y(3000)},
			pt.Want{Basic: y(3000), Changes: pt.C{}}},
		{pt.Case{Name: "off-site Beijing unregistered", Scheme: emp, Offsite: true, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(1000), Basic: y(5850)}},
		{pt.Case{Name: "off-site temporary chronic", Scheme: emp, Reg: abi.RegistrationTemporary, Offsite: true, Type: ch, Level: 1, E: y(1300)},
			pt.Want{D: y(300), Basic: y(750)}},
		{pt.Case{Name: "no serious illness for employees", Scheme: emp, Type: ip, Level: 3, E: y(500000)},
			pt.Want{D: y(1000), Basic: y(300000)}},
		{pt.Case{Name: "account", Scheme: emp, Balance: y(5000), UseAccount: true, Type: ip, Level: 3, E: y(10000), FSP: y(500)},
			pt.Want{D: y(1000), Basic: y(7650), Account: y(2350)}},
	})
}

func TestResidents(t *testing.T) {
	run(t, []row{
		{pt.Case{Name: "inpatient L1 200 / 80%", Scheme: res, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(200), Basic: y(3840), Changes: pt.C{"serious.base": y(1160)}}},
		{pt.Case{Name: "inpatient L2 500 / 70%", Scheme: res, Type: ip, Level: 2, E: y(5000)},
			pt.Want{D: y(500), Basic: y(3150)}},
		{pt.Case{Name: "inpatient L3 1,000 / 60%", Scheme: res, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(1000), Basic: y(5400)}},
		{pt.Case{Name: "no 3rd-admission rule", Scheme: res, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"adm.l23": 4}},
			pt.Want{D: y(1000), Basic: y(5400)}},
		{pt.Case{Name: "no basic cap", Scheme: res, Type: ip, Level: 3, E: y(600000), Counters: pt.C{"cap.basic": y(10000000)}},
			pt.Want{D: y(1000), Basic: y(359400), Serious: y(142920), Changes: pt.C{"serious.base": y(240600), "serious.paid": y(142920)}}},
		{pt.Case{Name: "chronic L2: 500", Scheme: res, Type: ch, Level: 2, E: y(1000)},
			pt.Want{D: y(500), Basic: y(350), Changes: pt.C{"ded.chronic": y(500), "serious.base": y(650)}}},
		{pt.Case{Name: "chronic L3: 1,000 less 500", Scheme: res, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"ded.chronic": y(500)}},
			pt.Want{D: y(500), Basic: y(300)}},
		{pt.Case{Name: "chronic L1 after 1,000", Scheme: res, Type: ch, Level: 1, E: y(1000), Counters: pt.C{"ded.chronic": y(1000)}},
			pt.Want{Basic: y(800)}},
		{pt.Case{Name: "outpatient L1 65%", Scheme: res, Type: op, Level: 1, E: y(400)},
			pt.Want{Basic: y(260), Changes: pt.C{"cap.op": y(260)}}},
		{pt.Case{Name: "outpatient cap 400", Scheme: res, Type: op, Level: 1, E: y(300), Counters: pt.C{"cap.op": y(260)}},
			pt.Want{Basic: y(140)}},
		{pt.Case{Name: "outpatient L2 0", Scheme: res, Type: op, Level: 2, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "outpatient L3 0", Scheme: res, Type: op, Level: 3, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "outpatient off-site temporary", Scheme: res, Reg: abi.RegistrationTemporary, Offsite: true, Type: op, Level: 1, E: y(100)},
			pt.Want{Basic: y(55)}},
		{pt.Case{Name: "two_disease diabetes 400", Scheme: res, Conditions: []string{"diabetes"}, Type: td, Level: 1, E: y(600)},
			pt.Want{Basic: y(400), Changes: pt.C{"cap.two_disease": y(400)}}},
		{pt.Case{Name: "two_disease 75% rounding", Scheme: res, Conditions: []string{"diabetes"}, Type: td, Level: 1, E: 10001},
			pt.Want{Basic: 7501}},
		{pt.Case{Name: "two_disease hypertension 300", Scheme: res, Conditions: []string{"hypertension"}, Type: td, Level: 1, E: y(500)},
			pt.Want{Basic: y(300)}},
		{pt.Case{Name: "two_disease both 600", Scheme: res, Conditions: []string{"hypertension", "diabetes"}, Type: td, Level: 2, E: y(1000)},
			pt.Want{Basic: y(600)}},
		{pt.Case{Name: "two_disease room", Scheme: res, Conditions: []string{"hypertension", "diabetes"}, Type: td, Level: 2, E: y(1000), Counters: pt.C{"cap.two_disease": y(550)}},
			pt.Want{Basic: y(50)}},
		{pt.Case{Name: "two_disease none registered", Scheme: res, Type: td, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "two_disease off-site unregistered: not adjusted", Scheme: res, Offsite: true, Conditions: []string{"diabetes"}, Type: td, Level: 1, E: y(100)},
			pt.Want{Basic: y(75)}},
		{pt.Case{Name: "maternity order 1: 1,000", Scheme: res, Type: mat, BirthOrder: 1, Level: 3, E: y(4000)},
			pt.Want{Basic: y(1000), Changes: pt.C{}}},
		{pt.Case{Name: "maternity order 2: 1,500", Scheme: res, Type: mat, BirthOrder: 2, Level: 3, E: y(4000)},
			pt.Want{Basic: y(1500)}},
		{pt.Case{Name: "maternity order 3: 3,000", Scheme: res, Type: mat, BirthOrder: 3, Level: 3, E: y(4000)},
			pt.Want{Basic: y(3000)}},
		{pt.Case{Name: "maternity order 4: 3,000", Scheme: res, Type: mat, BirthOrder: 4, Level: 3, E: y(4000)},
			pt.Want{Basic: y(3000)}},
		{pt.Case{Name: "maternity grant cut to E", Scheme: res, Type: mat, BirthOrder: 2, Level: 3, E: y(800)},
			pt.Want{Basic: y(800)}},
	})
}

func TestSeriousAndAssistance(t *testing.T) {
	run(t, []row{
		{pt.Case{Name: "threshold 15,000", Scheme: res, Type: ip, Level: 3, E: y(50000), Counters: pt.C{"serious.base": y(12600)}},
			pt.Want{D: y(1000), Basic: y(29400), Serious: y(10920)}},
		{pt.Case{Name: "not capped below 400,000", Scheme: res, Type: ip, Level: 3, E: y(1000000)},
			pt.Want{D: y(1000), Basic: y(599400), Serious: y(254920)}},
		{pt.Case{Name: "cap 400,000", Scheme: res, Type: ip, Level: 3, E: y(2000000)},
			pt.Want{D: y(1000), Basic: y(1199400), Serious: y(400000)}},
		{pt.Case{Name: "subsistence: 7,500, +5pp, no cap; assistance 70%", Scheme: res, Groups: []string{"subsistence"}, Type: ip, Level: 3, E: y(1000000)},
			pt.Want{D: y(1000), Basic: y(599400), Serious: y(279825), Assist: y(50000)}},
		{pt.Case{Name: "destitute 100%", Scheme: res, Groups: []string{"destitute"}, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(200), Basic: y(3840), Assist: y(1160), Changes: pt.C{"serious.base": y(1160), "assist.paid": y(1160)}}},
		{pt.Case{Name: "illness_poverty 60%", Scheme: res, Groups: []string{"illness_poverty"}, Type: ch, Level: 1, E: y(1200)},
			pt.Want{D: y(200), Basic: y(800), Assist: y(240)}},
		{pt.Case{Name: "employee monitored 60%", Scheme: emp, Groups: []string{"monitored"}, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(300), Basic: y(3995), Assist: y(603)}},
		{pt.Case{Name: "limit 50,000", Scheme: res, Groups: []string{"destitute"}, Type: ip, Level: 1, E: y(5000), Counters: pt.C{"assist.paid": y(49000)}},
			pt.Want{D: y(200), Basic: y(3840), Assist: y(1000)}},
		{pt.Case{Name: "any hospital (no designation needed)", Scheme: res, Groups: []string{"destitute"}, Designated: false, Type: ch, Level: 3, E: y(2000)},
			pt.Want{D: y(1000), Basic: y(600), Assist: y(1400)}},
	})
}
