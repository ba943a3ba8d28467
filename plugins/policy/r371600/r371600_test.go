package r371600_test

import (
	"testing"

	"medgate/engine/abi"
	pt "medgate/plugins/internal/policytest"
	"medgate/plugins/policy/r371600"
)

// y is whole yuan in fen.
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

func run(t *testing.T, p func(*abi.Input, *abi.Output), rows []row) {
	t.Helper()
	for _, r := range rows {
		if r.c.Date == 0 {
			r.c.Date = 20250601
		}
		pt.Expect(t, p, r.c, r.w)
	}
}

func TestEmployeeInpatient(t *testing.T) {
	run(t, r371600.V2024, []row{
		// L1, L2: per admission 200 / 400; 90 % active, 95 % retired.
		{pt.Case{Name: "L1 active", Scheme: emp, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(200), Basic: y(4320), Changes: pt.C{"cap.basic": y(4320)}}},
		{pt.Case{Name: "L1 retired", Scheme: emp, Retired: true, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(200), Basic: y(4560), Changes: pt.C{"cap.basic": y(4560)}}},
		{pt.Case{Name: "L2 active", Scheme: emp, Type: ip, Level: 2, E: y(3000)},
			pt.Want{D: y(400), Basic: y(2340), Changes: pt.C{"cap.basic": y(2340), "adm.l23": 1}}},
		{pt.Case{Name: "L2 retired", Scheme: emp, Retired: true, Type: ip, Level: 2, E: y(3000)},
			pt.Want{D: y(400), Basic: y(2470), Changes: pt.C{"cap.basic": y(2470), "adm.l23": 1}}},
		// L3: per admission 800; E − D in segments.
		{pt.Case{Name: "L3 active crossing", Scheme: emp, Type: ip, Level: 3, E: y(15000)},
			pt.Want{D: y(800), Basic: y(12280), Changes: pt.C{"cap.basic": y(12280), "adm.l23": 1}}},
		{pt.Case{Name: "L3 active one fen over", Scheme: emp, Type: ip, Level: 3, E: 1080001},
			pt.Want{D: y(800), Basic: 850001}},
		{pt.Case{Name: "L3 active exactly 10,000", Scheme: emp, Type: ip, Level: 3, E: y(10800)},
			pt.Want{D: y(800), Basic: y(8500)}},
		{pt.Case{Name: "L3 active inside the first segment", Scheme: emp, Type: ip, Level: 3, E: y(5800)},
			pt.Want{D: y(800), Basic: y(4250)}},
		{pt.Case{Name: "L3 retired crossing", Scheme: emp, Retired: true, Type: ip, Level: 3, E: 1234567},
			pt.Want{D: y(800), Basic: 1071839}},
		{pt.Case{Name: "L3 retired first segment 92.5%", Scheme: emp, Retired: true, Type: ip, Level: 3, E: y(1000) + 1},
			pt.Want{D: y(800), Basic: 18501}}, // 200.01 × 92.5 % = 185.009 → 185.01
		// E below the deductible.
		{pt.Case{Name: "E below D", Scheme: emp, Type: ip, Level: 3, E: y(150)},
			pt.Want{D: y(150), Basic: 0, Changes: pt.C{"adm.l23": 1}}},
		{pt.Case{Name: "E zero", Scheme: emp, Type: ip, Level: 1},
			pt.Want{Changes: pt.C{}}},
		// Per admission: every admission pays it, however many.
		{pt.Case{Name: "5th admission still pays", Scheme: emp, Type: ip, Level: 3, E: y(5800), Counters: pt.C{"adm.l23": 4}},
			pt.Want{D: y(800), Basic: y(4250)}},
		// 200,000 cap shared with chronic.
		{pt.Case{Name: "cap room", Scheme: emp, Type: ip, Level: 1, E: y(5000), Counters: pt.C{"cap.basic": y(199000)}},
			pt.Want{D: y(200), Basic: y(1000), Changes: pt.C{"cap.basic": y(1000)}}},
		{pt.Case{Name: "cap exhausted", Scheme: emp, Type: ip, Level: 1, E: y(5000), Counters: pt.C{"cap.basic": y(200000)}},
			pt.Want{D: y(200), Basic: 0, Changes: pt.C{}}},
		{pt.Case{Name: "shared cap", Scheme: emp, Type: ip, Level: 1, E: y(200000)},
			pt.Want{D: y(200), Basic: y(179820)}},
	})
}

func TestEmployeeChronic(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "active", Scheme: emp, Type: ch, Level: 3, E: y(2000)},
			pt.Want{D: y(700), Basic: y(1105), Changes: pt.C{"ded.chronic": y(700), "cap.basic": y(1105)}}},
		{pt.Case{Name: "retired 90%", Scheme: emp, Retired: true, Type: ch, Level: 1, E: y(2000)},
			pt.Want{D: y(700), Basic: y(1170)}},
		{pt.Case{Name: "yearly deductible partly paid", Scheme: emp, Type: ch, Level: 2, E: y(1000), Counters: pt.C{"ded.chronic": y(500)}},
			pt.Want{D: y(200), Basic: y(680), Changes: pt.C{"ded.chronic": y(200), "cap.basic": y(680)}}},
		{pt.Case{Name: "yearly deductible paid", Scheme: emp, Type: ch, Level: 2, E: y(1000), Counters: pt.C{"ded.chronic": y(700)}},
			pt.Want{D: 0, Basic: y(850), Changes: pt.C{"cap.basic": y(850)}}},
		{pt.Case{Name: "E below the deductible", Scheme: emp, Type: ch, Level: 2, E: y(300)},
			pt.Want{D: y(300), Changes: pt.C{"ded.chronic": y(300)}}},
		{pt.Case{Name: "shares the inpatient cap", Scheme: emp, Type: ch, Level: 3, E: y(30000), Counters: pt.C{"cap.basic": y(179820)}},
			pt.Want{D: y(700), Basic: y(20180), Changes: pt.C{"ded.chronic": y(700), "cap.basic": y(20180)}}},
		{pt.Case{Name: "deductible taken before the cap", Scheme: emp, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"cap.basic": y(200000)}},
			pt.Want{D: y(700), Basic: 0, Changes: pt.C{"ded.chronic": y(700)}}},
		{pt.Case{Name: "no admission counted", Scheme: emp, Type: ch, Level: 3, E: y(700)},
			pt.Want{D: y(700), Changes: pt.C{"ded.chronic": y(700)}}},
	})
}

func TestEmployeeOutpatient(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "L1", Scheme: emp, Type: op, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(640), Changes: pt.C{"ded.op.l1": y(200), "cap.op": y(640)}}},
		{pt.Case{Name: "L2 own deductible", Scheme: emp, Type: op, Level: 2, E: y(1000), Counters: pt.C{"ded.op.l1": y(200)}},
			pt.Want{D: y(300), Basic: y(490), Changes: pt.C{"ded.op.l2": y(300), "cap.op": y(490)}}},
		{pt.Case{Name: "L3", Scheme: emp, Type: op, Level: 3, E: y(1000)},
			pt.Want{D: y(400), Basic: y(390), Changes: pt.C{"ded.op.l3": y(400), "cap.op": y(390)}}},
		{pt.Case{Name: "L1 deductible used up", Scheme: emp, Type: op, Level: 1, E: y(500), Counters: pt.C{"ded.op.l1": y(200), "cap.op": y(1130)}},
			pt.Want{D: 0, Basic: y(400)}},
		{pt.Case{Name: "retired L1 85%", Scheme: emp, Retired: true, Type: op, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(680)}},
		{pt.Case{Name: "retired L2 75%", Scheme: emp, Retired: true, Type: op, Level: 2, E: y(1000)},
			pt.Want{D: y(300), Basic: y(525)}},
		{pt.Case{Name: "retired L3 70%", Scheme: emp, Retired: true, Type: op, Level: 3, E: y(1000)},
			pt.Want{D: y(400), Basic: y(420)}},
		{pt.Case{Name: "5,000 cap over all levels", Scheme: emp, Type: op, Level: 3, E: y(10000), Counters: pt.C{"cap.op": y(1530), "ded.op.l1": y(200), "ded.op.l2": y(300)}},
			pt.Want{D: y(400), Basic: y(3470), Changes: pt.C{"ded.op.l3": y(400), "cap.op": y(3470)}}},
		{pt.Case{Name: "cap exhausted, deductible still taken", Scheme: emp, Type: op, Level: 2, E: y(1000), Counters: pt.C{"cap.op": y(5000)}},
			pt.Want{D: y(300), Basic: 0, Changes: pt.C{"ded.op.l2": y(300)}}},
		{pt.Case{Name: "outpatient does not touch the inpatient cap", Scheme: emp, Type: op, Level: 1, E: y(300), Counters: pt.C{"cap.basic": y(200000)}},
			pt.Want{D: y(200), Basic: y(80)}},
		{pt.Case{Name: "inpatient cap is not the outpatient cap", Scheme: emp, Type: ip, Level: 1, E: y(1200), Counters: pt.C{"cap.op": y(5000)}},
			pt.Want{D: y(200), Basic: y(900)}},
	})
}

func TestEmployeeOtherVisits(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "maternity 100% of E", Scheme: emp, Type: mat, BirthOrder: 1, Level: 3, E: y(5900), Pre: y(100)},
			pt.Want{Basic: y(5900), Changes: pt.C{}}},
		{pt.Case{Name: "maternity off-site unregistered: not adjusted", Scheme: emp, Reg: abi.RegistrationNone, Type: mat, BirthOrder: 3, Level: 3, Offsite: true, E: y(3000)},
			pt.Want{Basic: y(3000), Changes: pt.C{}}},
		{pt.Case{Name: "maternity with the cap exhausted: not counted", Scheme: emp, Type: mat, BirthOrder: 2, Level: 3, E: y(3000), Counters: pt.C{"cap.basic": y(200000)}},
			pt.Want{Basic: y(3000), Changes: pt.C{}}},
		{pt.Case{Name: "two_disease: none for employees", Scheme: emp, Conditions: []string{"hypertension"}, Type: td, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "maternity without birth order refused", Scheme: emp, Type: mat, Level: 3, E: y(100)},
			pt.Want{Refused: true}},
	})
}

func TestCrossRegion(t *testing.T) {
	l3 := func(name string, reg abi.Registration, emergency, offsite bool, want int64) row {
		return row{pt.Case{Name: name, Scheme: emp, Reg: reg, Emergency: emergency, Offsite: offsite, Type: ip, Level: 3, E: y(20000)},
			pt.Want{D: y(800), Basic: want}}
	}
	run(t, r371600.V2024, []row{
		l3("long_term", abi.RegistrationLongTerm, false, true, y(16780)),
		l3("referral", abi.RegistrationReferral, false, true, y(16780)),
		l3("temporary -10pp per segment", abi.RegistrationTemporary, false, true, y(14860)),
		l3("none -20pp per segment", abi.RegistrationNone, false, true, y(12940)),
		l3("emergency", abi.RegistrationNone, true, true, y(16780)),
		l3("local none", abi.RegistrationNone, false, false, y(16780)),
		{pt.Case{Name: "resident outpatient temporary", Scheme: res, Reg: abi.RegistrationTemporary, Offsite: true, Type: op, Level: 1, E: y(100)},
			pt.Want{Basic: y(55)}},
		{pt.Case{Name: "resident outpatient none", Scheme: res, Reg: abi.RegistrationNone, Offsite: true, Type: op, Level: 1, E: y(100)},
			pt.Want{Basic: y(45)}},
		{pt.Case{Name: "resident outpatient L3 none: floor 0", Scheme: res, Reg: abi.RegistrationNone, Offsite: true, Type: op, Level: 3, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "resident outpatient emergency", Scheme: res, Reg: abi.RegistrationNone, Offsite: true, Emergency: true, Type: op, Level: 1, E: y(100)},
			pt.Want{Basic: y(65)}},
		{pt.Case{Name: "resident chronic temporary", Scheme: res, Reg: abi.RegistrationTemporary, Offsite: true, Type: ch, Level: 3, E: y(1000)},
			pt.Want{D: y(200), Basic: y(440)}},
		{pt.Case{Name: "resident inpatient temporary", Scheme: res, Reg: abi.RegistrationTemporary, Offsite: true, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(1000), Basic: y(4500)}},
		{pt.Case{Name: "employee outpatient none", Scheme: emp, Reg: abi.RegistrationNone, Offsite: true, Type: op, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(480)}},
		{pt.Case{Name: "two_disease never adjusted", Scheme: res, Reg: abi.RegistrationNone, Offsite: true, Conditions: []string{"diabetes"}, Type: td, Level: 3, E: y(100)},
			pt.Want{Basic: y(70)}},
		{pt.Case{Name: "resident maternity never adjusted", Scheme: res, Reg: abi.RegistrationNone, Offsite: true, Type: mat, BirthOrder: 1, Level: 3, E: y(4000)},
			pt.Want{Basic: y(1500)}},
	})
}

func TestResidentInpatient(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "L1", Scheme: res, Type: ip, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(720), Changes: pt.C{"cap.basic": y(720), "serious.base": y(280)}}},
		{pt.Case{Name: "L2 1st", Scheme: res, Type: ip, Level: 2, E: y(3000)},
			pt.Want{D: y(500), Basic: y(1875), Changes: pt.C{"cap.basic": y(1875), "serious.base": y(1125), "adm.l23": 1}}},
		{pt.Case{Name: "L3 2nd", Scheme: res, Type: ip, Level: 3, E: y(5000), Counters: pt.C{"adm.l23": 1}},
			pt.Want{D: y(1000), Basic: y(2400)}},
		{pt.Case{Name: "L2 3rd: no deductible", Scheme: res, Type: ip, Level: 2, E: y(2000), Counters: pt.C{"adm.l23": 2}},
			pt.Want{D: 0, Basic: y(1500), Changes: pt.C{"cap.basic": y(1500), "serious.base": y(500), "adm.l23": 1}}},
		{pt.Case{Name: "L3 4th: no deductible", Scheme: res, Type: ip, Level: 3, E: y(1000), Counters: pt.C{"adm.l23": 3}},
			pt.Want{D: 0, Basic: y(600)}},
		{pt.Case{Name: "L1 after the 3rd still pays and does not count", Scheme: res, Type: ip, Level: 1, E: y(1000), Counters: pt.C{"adm.l23": 3}},
			pt.Want{D: y(200), Basic: y(720), Changes: pt.C{"cap.basic": y(720), "serious.base": y(280)}}},
		{pt.Case{Name: "cap 150,000", Scheme: res, Type: ip, Level: 3, E: y(200000), Counters: pt.C{"adm.l23": 2, "cap.basic": y(46800), "serious.base": y(33200), "serious.paid": y(10920)}},
			pt.Want{D: 0, Basic: y(103200), Serious: y(58830)}},
		{pt.Case{Name: "cap shared with chronic", Scheme: res, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"cap.basic": y(150000)}},
			pt.Want{D: y(200), Basic: 0, Changes: pt.C{"ded.chronic": y(200), "serious.base": y(1000)}}},
		{pt.Case{Name: "3rd admission at L3", Scheme: res, Type: ip, Level: 3, E: y(1000), Counters: pt.C{"adm.l23": 2}},
			pt.Want{D: 0, Basic: y(600)}},
	})
}

func TestResidentOtherVisits(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "chronic 200 a year, 65%", Scheme: res, Type: ch, Level: 3, E: y(1000)},
			pt.Want{D: y(200), Basic: y(520), Changes: pt.C{"ded.chronic": y(200), "cap.basic": y(520), "serious.base": y(480)}}},
		{pt.Case{Name: "chronic deductible paid", Scheme: res, Type: ch, Level: 1, E: y(1000), Counters: pt.C{"ded.chronic": y(200)}},
			pt.Want{D: 0, Basic: y(650)}},
		{pt.Case{Name: "outpatient L1 65%, no deductible", Scheme: res, Type: op, Level: 1, E: y(100)},
			pt.Want{Basic: y(65), Changes: pt.C{"cap.op": y(65)}}},
		{pt.Case{Name: "outpatient L2 0", Scheme: res, Type: op, Level: 2, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "outpatient L3 0", Scheme: res, Type: op, Level: 3, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "outpatient cap 300", Scheme: res, Type: op, Level: 1, E: y(100), Counters: pt.C{"cap.op": y(255)}},
			pt.Want{Basic: y(45), Changes: pt.C{"cap.op": y(45)}}},
		{pt.Case{Name: "outpatient: no serious, no assistance", Scheme: res, Groups: []string{"destitute"}, Type: op, Level: 1, E: y(100000), Counters: pt.C{"serious.base": y(100000)}},
			pt.Want{Basic: y(300), Changes: pt.C{"cap.op": y(300)}}},
		{pt.Case{Name: "maternity order 1", Scheme: res, Type: mat, BirthOrder: 1, Level: 3, E: y(4000)},
			pt.Want{Basic: y(1500), Changes: pt.C{}}},
		{pt.Case{Name: "maternity order 2", Scheme: res, Type: mat, BirthOrder: 2, Level: 2, E: y(4000)},
			pt.Want{Basic: y(1500)}},
		{pt.Case{Name: "maternity order 3", Scheme: res, Type: mat, BirthOrder: 3, Level: 2, E: y(4000)},
			pt.Want{Basic: y(3000)}},
		{pt.Case{Name: "maternity order 5", Scheme: res, Type: mat, BirthOrder: 5, Level: 2, E: y(4000)},
			pt.Want{Basic: y(3000)}},
		{pt.Case{Name: "maternity grant cut to E", Scheme: res, Type: mat, BirthOrder: 3, Level: 2, E: y(2000)},
			pt.Want{Basic: y(2000)}},
		{pt.Case{Name: "maternity: no assistance, no serious", Scheme: res, Groups: []string{"destitute"}, Type: mat, BirthOrder: 1, Level: 2, E: y(40000)},
			pt.Want{Basic: y(1500), Changes: pt.C{}}},
		{pt.Case{Name: "resident asking for the account", Scheme: res, Balance: y(500), UseAccount: true, Type: op, Level: 1, E: y(100)},
			pt.Want{Basic: y(65)}},
	})
}

func TestTwoDisease(t *testing.T) {
	hyp, dia, both := []string{"hypertension"}, []string{"diabetes"}, []string{"hypertension", "diabetes"}
	rows := func(bp int64) []row {
		pct := func(e int64) int64 { return (e*bp + 5000) / 10000 }
		return []row{
			{pt.Case{Name: "hypertension", Scheme: res, Conditions: hyp, Type: td, Level: 1, E: y(200)},
				pt.Want{Basic: pct(y(200)), Changes: pt.C{"cap.two_disease": pct(y(200))}}},
			{pt.Case{Name: "hypertension cap 300", Scheme: res, Conditions: hyp, Type: td, Level: 1, E: y(1000)},
				pt.Want{Basic: y(300)}},
			{pt.Case{Name: "hypertension room", Scheme: res, Conditions: hyp, Type: td, Level: 1, E: y(1000), Counters: pt.C{"cap.two_disease": y(140)}},
				pt.Want{Basic: y(160), Changes: pt.C{"cap.two_disease": y(160)}}},
			{pt.Case{Name: "diabetes cap 400", Scheme: res, Conditions: dia, Type: td, Level: 2, E: y(1000)},
				pt.Want{Basic: y(400)}},
			{pt.Case{Name: "both cap 600", Scheme: res, Conditions: both, Type: td, Level: 3, E: y(2000)},
				pt.Want{Basic: y(600)}},
			{pt.Case{Name: "none registered: 0", Scheme: res, Type: td, Level: 1, E: y(100)},
				pt.Want{Changes: pt.C{}}},
			{pt.Case{Name: "rounding", Scheme: res, Conditions: both, Type: td, Level: 1, E: 15},
				pt.Want{Basic: pct(15)}},
		}
	}
	t.Run("v2023 60%", func(t *testing.T) { run(t, r371600.V2023, rows(6000)) })
	t.Run("v2024 70%", func(t *testing.T) { run(t, r371600.V2024, rows(7000)) })
	run(t, r371600.V2024, []row{{pt.Case{Name: "0.15 × 70% = 0.11", Scheme: res, Conditions: both, Type: td, Level: 1, E: 15}, pt.Want{Basic: 11}}})
	run(t, r371600.V2023, []row{{pt.Case{Name: "500 × 60%, room 300", Scheme: res, Conditions: both, Type: td, Level: 1, E: y(600), Counters: pt.C{"cap.two_disease": y(300)}}, pt.Want{Basic: y(300)}}})
}

func TestVersionsDifferOnlyInTwoDisease(t *testing.T) {
	for _, typ := range []abi.VisitType{ip, op, ch, mat} {
		for _, s := range []abi.Scheme{emp, res} {
			c := pt.Case{Scheme: s, Type: typ, Level: 3, E: y(30000), BirthOrder: 1, Date: 20250601,
				Groups: []string{"subsistence"}, Conditions: []string{"diabetes"}}
			in := c.Input()
			_, _, a, _ := pt.Run(r371600.V2023, &in)
			_, _, b, _ := pt.Run(r371600.V2024, &in)
			if string(a) != string(b) {
				t.Errorf("type %d scheme %d: versions differ", typ, s)
			}
		}
	}
}

func TestSeriousIllness(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "below the threshold", Scheme: res, Type: ip, Level: 3, E: y(30000)},
			pt.Want{D: y(1000), Basic: y(17400), Changes: pt.C{"cap.basic": y(17400), "serious.base": y(12600), "adm.l23": 1}}},
		{pt.Case{Name: "crossing the threshold", Scheme: res, Type: ip, Level: 3, E: y(50000), Counters: pt.C{"adm.l23": 1, "cap.basic": y(17400), "serious.base": y(12600)}},
			pt.Want{D: y(1000), Basic: y(29400), Serious: y(10920),
				Changes: pt.C{"cap.basic": y(29400), "serious.base": y(20600), "serious.paid": y(10920), "adm.l23": 1}}},
		{pt.Case{Name: "basic capped, all of E in the base", Scheme: res, Type: ip, Level: 3, E: 15000050, Counters: pt.C{"adm.l23": 3, "cap.basic": y(150000), "serious.base": y(130000), "serious.paid": y(69750)}},
			pt.Want{Basic: 0, Serious: 10075035}},
		{pt.Case{Name: "chronic grows the base", Scheme: res, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"cap.basic": y(150000), "serious.base": 28000050, "serious.paid": 17050035}},
			pt.Want{D: y(200), Serious: y(700)}},
		{pt.Case{Name: "per-segment rounding of PAY difference", Scheme: res, Type: ch, Level: 3, E: 5, Counters: pt.C{"ded.chronic": y(200), "cap.basic": y(150000), "serious.base": 28100050, "serious.paid": 17120035}},
			pt.Want{Serious: 4}},
		{pt.Case{Name: "cap 400,000", Scheme: res, Type: ip, Level: 3, E: y(900000)},
			pt.Want{D: y(1000), Basic: y(150000), Serious: y(400000)}},
		{pt.Case{Name: "cap exhausted", Scheme: res, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"cap.basic": y(150000), "serious.base": y(750000), "serious.paid": y(400000)}},
			pt.Want{D: y(1000), Changes: pt.C{"serious.base": y(10000), "adm.l23": 1}}},
		{pt.Case{Name: "destitute: no cap, threshold 7,500, +5pp", Scheme: res, Groups: []string{"destitute"}, Type: ip, Level: 3, E: y(900000)},
			pt.Want{D: y(1000), Basic: y(150000), Serious: y(541875), Assist: y(30000)}},
		{pt.Case{Name: "destitute: after 400,000 paid", Scheme: res, Groups: []string{"destitute"}, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"cap.basic": y(150000), "serious.base": y(750000), "serious.paid": y(541875), "assist.paid": y(30000)}},
			pt.Want{D: y(1000), Serious: y(7500)}},
		{pt.Case{Name: "subsistence threshold 7,500", Scheme: res, Groups: []string{"subsistence"}, Type: ip, Level: 2, E: 800033, Counters: pt.C{"adm.l23": 1, "cap.basic": y(14625), "serious.base": y(5375), "assist.paid": 376250}},
			pt.Want{D: y(500), Basic: 562525, Serious: 16255, Assist: 154877}},
		{pt.Case{Name: "monitored: special serious, assistance 60%", Scheme: res, Groups: []string{"monitored"}, Type: ip, Level: 2, E: 800033, Counters: pt.C{"adm.l23": 1, "cap.basic": y(14625), "serious.base": y(5375)}},
			pt.Want{D: y(500), Basic: 562525, Serious: 16255, Assist: 132752}},
		{pt.Case{Name: "low_income_edge: normal terms", Scheme: res, Groups: []string{"low_income_edge"}, Type: ip, Level: 2, E: 800033, Counters: pt.C{"adm.l23": 1, "cap.basic": y(14625), "serious.base": y(5375)}},
			pt.Want{D: y(500), Basic: 562525, Serious: 0, Assist: 142505}},
		{pt.Case{Name: "employees: no serious illness", Scheme: emp, Type: ip, Level: 3, E: y(900000)},
			pt.Want{D: y(800), Basic: y(200000), Changes: pt.C{"cap.basic": y(200000), "adm.l23": 1}}},
	})
}

func TestMedicalAssistance(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "destitute 100%", Scheme: res, Groups: []string{"destitute"}, Type: ip, Level: 1, E: y(50000)},
			pt.Want{D: y(200), Basic: y(44820), Assist: y(5180),
				Changes: pt.C{"cap.basic": y(44820), "serious.base": y(5180), "assist.paid": y(5180)}}},
		{pt.Case{Name: "subsistence 70%", Scheme: res, Groups: []string{"subsistence"}, Type: ip, Level: 2, E: y(20000)},
			pt.Want{D: y(500), Basic: y(14625), Assist: 376250}},
		{pt.Case{Name: "illness_poverty 60%", Scheme: res, Groups: []string{"illness_poverty"}, Type: ip, Level: 2, E: y(20000)},
			pt.Want{D: y(500), Basic: y(14625), Assist: y(3225)}},
		{pt.Case{Name: "highest of several groups", Scheme: res, Groups: []string{"low_income_edge", "subsistence"}, Type: ip, Level: 2, E: y(20000)},
			pt.Want{D: y(500), Basic: y(14625), Serious: 0, Assist: 376250}},
		{pt.Case{Name: "limit 30,000", Scheme: res, Groups: []string{"destitute"}, Type: ip, Level: 1, E: y(100000), Counters: pt.C{"cap.basic": y(134640), "serious.base": y(15360), "serious.paid": y(5109), "assist.paid": y(10251)}},
			pt.Want{D: y(200), Basic: y(15360), Serious: y(55016), Assist: y(19749)}},
		{pt.Case{Name: "limit reached", Scheme: res, Groups: []string{"destitute"}, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"cap.basic": y(150000), "serious.base": y(100000), "serious.paid": y(60125), "assist.paid": y(30000)}},
			pt.Want{D: y(200), Serious: y(650), Changes: pt.C{"ded.chronic": y(200), "serious.base": y(1000), "serious.paid": y(650)}}},
		{pt.Case{Name: "employees too", Scheme: emp, Groups: []string{"subsistence"}, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(200), Basic: y(4320), Assist: y(476)}},
		{pt.Case{Name: "not on outpatient", Scheme: emp, Groups: []string{"destitute"}, Type: op, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(640)}},
		{pt.Case{Name: "not on two_disease", Scheme: res, Groups: []string{"destitute"}, Conditions: []string{"diabetes"}, Type: td, Level: 1, E: y(100)},
			pt.Want{Basic: y(70)}},
		{pt.Case{Name: "unknown group", Scheme: res, Groups: []string{"veteran"}, Type: ip, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(720)}},
	})
}

func TestPersonalAccount(t *testing.T) {
	run(t, r371600.V2024, []row{
		{pt.Case{Name: "in-policy self pay", Scheme: emp, Balance: y(1200), UseAccount: true, Type: op, Level: 1, E: y(690), FSP: y(100), OL: y(50), Pre: y(10)},
			pt.Want{D: y(200), Basic: y(392), Account: y(308)}},
		{pt.Case{Name: "balance limits", Scheme: emp, Balance: y(892), UseAccount: true, Type: ch, Level: 3, E: y(2000)},
			pt.Want{D: y(700), Basic: y(1105), Account: y(892)}},
		{pt.Case{Name: "not asked", Scheme: emp, Balance: y(892), Type: ch, Level: 3, E: y(2000)},
			pt.Want{D: y(700), Basic: y(1105)}},
		{pt.Case{Name: "zero balance", Scheme: emp, UseAccount: true, Type: op, Level: 1, E: y(100), Counters: pt.C{"ded.op.l1": y(200)}},
			pt.Want{Basic: y(80)}},
		{pt.Case{Name: "maternity pre_self_pay", Scheme: emp, Balance: y(300), UseAccount: true, Type: mat, BirthOrder: 1, Level: 3, E: y(5900), Pre: y(100)},
			pt.Want{Basic: y(5900), Account: y(100)}},
		{pt.Case{Name: "with assistance", Scheme: emp, Groups: []string{"destitute"}, Balance: y(10000), UseAccount: true, Type: ip, Level: 1, E: y(5000), FSP: y(10)},
			pt.Want{D: y(200), Basic: y(4320), Assist: y(680), Account: 0}},
	})
}

// TestSequence runs examples 03 and 18 as one person's sequence with
// reversals: the 3rd-admission count follows reversals.
func TestSequence(t *testing.T) {
	b := pt.NewBook(0)
	settle := func(level uint8, date abi.Date, e, wantD, wantB int64) int {
		t.Helper()
		c := pt.Case{Scheme: res, Reg: abi.RegistrationLongTerm, Type: ip, Level: level, Date: date, E: e}
		in := c.Input()
		out, i, err := b.Settle(r371600.V2024, &in, false)
		if err != nil || out.Deductible != wantD || out.Basic != wantB {
			t.Fatalf("%d: D %d basic %d (%v), want %d %d", date, out.Deductible, out.Basic, err, wantD, wantB)
		}
		return i
	}
	settle(3, 20250205, y(5000), y(1000), y(2400))
	second := settle(3, 20250305, y(5000), y(1000), y(2400))
	if err := b.Reverse(second); err != nil {
		t.Fatal(err)
	}
	settle(3, 20250305, y(4000), y(1000), y(1800))
	settle(3, 20250405, y(5000), 0, y(3000))
	settle(1, 20250501, y(1000), y(200), y(720))
	// Quote writes nothing.
	c := pt.Case{Scheme: res, Reg: abi.RegistrationLongTerm, Type: ip, Level: 2, Date: 20250601, E: y(1000)}
	in := c.Input()
	if out, _, _ := b.Settle(r371600.V2024, &in, true); out.Deductible != 0 {
		t.Fatal("4th L2/L3 admission pays a deductible")
	}
	if got := b.Counters[2025]["adm.l23"]; got != 3 {
		t.Fatalf("adm.l23 = %d, want 3", got)
	}
	// New year: counters restart.
	settle(3, 20260103, y(5000), y(1000), y(2400))
}
