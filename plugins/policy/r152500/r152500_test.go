package r152500_test

import (
	"testing"

	"medgate/engine/abi"
	pt "medgate/plugins/internal/policytest"
	"medgate/plugins/policy/r152500"
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
		pt.Expect(t, r152500.V1, r.c, r.w)
	}
}

func TestEmployees(t *testing.T) {
	run(t, []row{
		{pt.Case{Name: "inpatient L1 300 / 90%", Scheme: emp, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(300), Basic: y(4230), Changes: pt.C{"cap.basic": y(4230)}}},
		{pt.Case{Name: "inpatient L2 500 / 85%", Scheme: emp, Type: ip, Level: 2, E: y(5000)},
			pt.Want{D: y(500), Basic: y(3825)}},
		{pt.Case{Name: "inpatient L3 800 / 80%", Scheme: emp, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(800), Basic: y(7360)}},
		{pt.Case{Name: "retired L1 95%", Scheme: emp, Retired: true, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(300), Basic: y(4465)}},
		{pt.Case{Name: "retired L2 90%", Scheme: emp, Retired: true, Type: ip, Level: 2, E: y(5000)},
			pt.Want{D: y(500), Basic: y(4050)}},
		{pt.Case{Name: "retired L3 85%", Scheme: emp, Retired: true, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(800), Basic: y(7820)}},
		{pt.Case{Name: "per admission, every admission", Scheme: emp, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"cap.basic": y(50000)}},
			pt.Want{D: y(800), Basic: y(7360)}},
		{pt.Case{Name: "chronic 300 a year, L2 inpatient ratio", Scheme: emp, Type: ch, Level: 2, E: y(1000)},
			pt.Want{D: y(300), Basic: y(595), Changes: pt.C{"ded.chronic": y(300), "cap.basic": y(595)}}},
		{pt.Case{Name: "chronic retired L2 90%", Scheme: emp, Retired: true, Type: ch, Level: 2, E: y(1000)},
			pt.Want{D: y(300), Basic: y(630)}},
		{pt.Case{Name: "chronic retired L3 85%, deductible paid", Scheme: emp, Retired: true, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"ded.chronic": y(300)}},
			pt.Want{Basic: y(850), Changes: pt.C{"cap.basic": y(850)}}},
		{pt.Case{Name: "chronic L1 90%, partly paid", Scheme: emp, Type: ch, Level: 1, E: y(1000), Counters: pt.C{"ded.chronic": y(100)}},
			pt.Want{D: y(200), Basic: y(720)}},
		{pt.Case{Name: "cap 150,000 shared", Scheme: emp, Type: ch, Level: 1, E: y(1000), Counters: pt.C{"cap.basic": y(149900)}},
			pt.Want{D: y(300), Basic: y(100), Changes: pt.C{"ded.chronic": y(300), "cap.basic": y(100)}}},
		{pt.Case{Name: "cap exhausted", Scheme: emp, Type: ip, Level: 1, E: y(1000), Counters: pt.C{"cap.basic": y(150000)}},
			pt.Want{D: y(300), Changes: pt.C{}}},
		{pt.Case{Name: "outpatient nothing", Scheme: emp, Type: op, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "two_disease nothing", Scheme: emp, Conditions: []string{"diabetes"}, Type: td, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "maternity nothing", Scheme: emp, Type: mat, BirthOrder: 1, Level: 3, E: y(4000)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "no serious illness for employees", Scheme: emp, Type: ip, Level: 3, E: y(300000)},
			pt.Want{D: y(800), Basic: y(150000), Changes: pt.C{"cap.basic": y(150000)}}},
		{pt.Case{Name: "no waiting period for employees", Scheme: emp, Enrolled: 20250501, Lapsed: 5, Type: ip, Level: 1, E: y(5000)},
			pt.Want{D: y(300), Basic: y(4230)}},
		{pt.Case{Name: "account on outpatient", Scheme: emp, Balance: y(1000), UseAccount: true, Type: op, Level: 1, E: y(100), FSP: y(20)},
			pt.Want{Account: y(100)}},
		{pt.Case{Name: "account on inpatient", Scheme: emp, Balance: y(1000), UseAccount: true, Type: ip, Level: 1, E: y(5000), OL: y(30)},
			pt.Want{D: y(300), Basic: y(4230), Account: y(770)}},
	})
}

func TestResidents(t *testing.T) {
	run(t, []row{
		{pt.Case{Name: "inpatient L1 200 / 85%", Scheme: res, Type: ip, Level: 1, E: y(10000)},
			pt.Want{D: y(200), Basic: y(8330), Changes: pt.C{"cap.basic": y(8330), "serious.base": y(1670)}}},
		{pt.Case{Name: "inpatient L2 400 / 75%", Scheme: res, Type: ip, Level: 2, E: y(10000)},
			pt.Want{D: y(400), Basic: y(7200)}},
		{pt.Case{Name: "inpatient L3 800 / 60%", Scheme: res, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(800), Basic: y(5520)}},
		{pt.Case{Name: "no 3rd-admission rule", Scheme: res, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"adm.l23": 5}},
			pt.Want{D: y(800), Basic: y(5520)}},
		{pt.Case{Name: "chronic L2 75%", Scheme: res, Type: ch, Level: 2, E: y(1000)},
			pt.Want{D: y(300), Basic: y(525), Changes: pt.C{"ded.chronic": y(300), "cap.basic": y(525), "serious.base": y(475)}}},
		{pt.Case{Name: "chronic L3 60%, paid", Scheme: res, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"ded.chronic": y(300)}},
			pt.Want{Basic: y(600)}},
		{pt.Case{Name: "chronic L1 85%", Scheme: res, Type: ch, Level: 1, E: y(1000)},
			pt.Want{D: y(300), Basic: y(595)}},
		{pt.Case{Name: "cap 150,000", Scheme: res, Type: ip, Level: 3, E: y(700000)},
			pt.Want{D: y(800), Basic: y(150000), Serious: y(300000)}},
		{pt.Case{Name: "outpatient nothing", Scheme: res, Type: op, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "two_disease nothing", Scheme: res, Conditions: []string{"diabetes", "hypertension"}, Type: td, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "maternity nothing", Scheme: res, Type: mat, BirthOrder: 1, Level: 3, E: y(4000)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "resident account never", Scheme: res, Balance: y(100), UseAccount: true, Type: ip, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(680)}},
		{pt.Case{Name: "off-site Hohhot unregistered", Scheme: emp, Reg: abi.RegistrationNone, Offsite: true, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(800), Basic: y(5520)}},
		{pt.Case{Name: "off-site temporary chronic", Scheme: res, Reg: abi.RegistrationTemporary, Offsite: true, Type: ch, Level: 2, E: y(1000)},
			pt.Want{D: y(300), Basic: y(455)}},
		{pt.Case{Name: "off-site referral", Scheme: res, Reg: abi.RegistrationReferral, Offsite: true, Type: ip, Level: 2, E: y(10000)},
			pt.Want{D: y(400), Basic: y(7200)}},
	})
}

func TestSeriousIllness(t *testing.T) {
	big := func(name string, cont, zero int32, want int64) row {
		return row{pt.Case{Name: name, Scheme: res, Continuous: cont, ZeroClaim: zero, Type: ip, Level: 3, E: y(700000)},
			pt.Want{D: y(800), Basic: y(150000), Serious: want}}
	}
	run(t, []row{
		{pt.Case{Name: "below 12,000", Scheme: res, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"serious.base": y(7000)}},
			pt.Want{D: y(800), Basic: y(5520), Changes: pt.C{"cap.basic": y(5520), "serious.base": y(4480)}}},
		{pt.Case{Name: "crossing 12,000 at 60%", Scheme: res, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"serious.base": y(10000)}},
			pt.Want{D: y(800), Basic: y(5520), Serious: y(1488), Changes: pt.C{"cap.basic": y(5520), "serious.base": y(4480), "serious.paid": y(1488)}}},
		{pt.Case{Name: "second segment 70% above 62,000", Scheme: res, Type: ch, Level: 3, E: y(1000), Counters: pt.C{"ded.chronic": y(300), "cap.basic": y(150000), "serious.base": y(61500), "serious.paid": y(29700)}},
			pt.Want{Serious: y(300) + y(350)}},
		big("cap 300,000 (continuous 4)", 4, 0, y(300000)),
		big("continuous 6, zero-claim 2: 312,000", 6, 2, y(312000)),
		big("continuous 3, zero-claim 10: 320,000", 3, 10, y(320000)),
		big("continuous 12, zero-claim 9: 344,000", 12, 9, y(344000)),
		big("zero-claim raise at most 20,000", 0, 7, y(320000)),
		{pt.Case{Name: "cap partly used", Scheme: res, Continuous: 6, Type: ip, Level: 3, E: y(10000), Counters: pt.C{"cap.basic": y(150000), "serious.base": y(550000), "serious.paid": y(305000)}},
			pt.Want{D: y(800), Serious: y(1000)}},
		{pt.Case{Name: "no special-group terms", Scheme: res, Groups: []string{"destitute"}, Designated: true, Type: ip, Level: 3, E: y(20000)},
			pt.Want{D: y(800), Basic: y(11520), Assist: y(8480)}},
	})
	for _, c := range []struct {
		cont, zero int32
		want       int64
	}{{0, 0, y(300000)}, {4, 0, y(300000)}, {5, 0, y(303000)}, {6, 2, y(312000)}, {3, 10, y(320000)}, {12, 9, y(344000)}, {-3, -2, y(300000)}, {5, 6, y(321000)}, {5, 7, y(323000)}} {
		if got := r152500.SeriousCap(&abi.Person{ContinuousYears: c.cont, ZeroClaimYears: c.zero}); got != c.want {
			t.Errorf("SeriousCap(%d, %d) = %d, want %d", c.cont, c.zero, got, c.want)
		}
	}
}

func TestMedicalAssistance(t *testing.T) {
	run(t, []row{
		{pt.Case{Name: "destitute at a designated L3", Scheme: res, Groups: []string{"destitute"}, Designated: true, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(800), Basic: y(5520), Assist: y(4480), Changes: pt.C{"cap.basic": y(5520), "serious.base": y(4480), "assist.paid": y(4480)}}},
		{pt.Case{Name: "destitute at a non-designated L2", Scheme: res, Groups: []string{"destitute"}, Type: ip, Level: 2, E: y(10000)},
			pt.Want{D: y(400), Basic: y(7200), Changes: pt.C{"cap.basic": y(7200), "serious.base": y(2800)}}},
		{pt.Case{Name: "employee subsistence 80%", Scheme: emp, Groups: []string{"subsistence"}, Designated: true, Type: ip, Level: 3, E: y(10000)},
			pt.Want{D: y(800), Basic: y(7360), Assist: y(2112)}},
		{pt.Case{Name: "subsistence and destitute: 100%", Scheme: res, Groups: []string{"subsistence", "destitute"}, Designated: true, Type: ip, Level: 1, E: y(1000)},
			pt.Want{D: y(200), Basic: y(680), Assist: y(320)}},
		{pt.Case{Name: "monitored 60%", Scheme: res, Groups: []string{"monitored"}, Designated: true, Type: ch, Level: 1, E: y(1000)},
			pt.Want{D: y(300), Basic: y(595), Assist: y(243)}},
		{pt.Case{Name: "limit 30,000", Scheme: res, Groups: []string{"destitute"}, Designated: true, Type: ip, Level: 1, E: y(10000), Counters: pt.C{"assist.paid": y(29000)}},
			pt.Want{D: y(200), Basic: y(8330), Assist: y(1000)}},
		{pt.Case{Name: "not on outpatient", Scheme: res, Groups: []string{"destitute"}, Designated: true, Type: op, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "not on maternity", Scheme: res, Groups: []string{"destitute"}, Designated: true, Type: mat, BirthOrder: 1, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
	})
}

func TestWaitingPeriod(t *testing.T) {
	late := func(name string, date abi.Date, typ abi.VisitType, w pt.Want) row {
		return row{pt.Case{Name: name, Scheme: res, Enrolled: 20250131, Date: date, Type: typ, Level: 1, E: y(1000)}, w}
	}
	run(t, []row{
		{pt.Case{Name: "concentrated, no lapse: no wait", Scheme: res, Enrolled: 20250310, InConc: true, Date: 20250315, Type: ip, Level: 1, E: y(10000)},
			pt.Want{D: y(200), Basic: y(8330)}},
		late("late enrolment: 3 months to the month's last day", 20250429, ch, pt.Want{Changes: pt.C{}}),
		late("benefits on 04-30", 20250430, ch, pt.Want{D: y(300), Basic: y(595)}),
		late("inpatient in the wait", 20250401, ip, pt.Want{Changes: pt.C{}}),
		{pt.Case{Name: "in the wait, counters untouched even when full", Scheme: res, Enrolled: 20250131, Date: 20250401, Type: ip, Level: 3, E: y(50000), Counters: pt.C{"serious.base": y(20000)}},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "lapsed 2 repaid 1: 4 months", Scheme: res, Enrolled: 20250515, InConc: true, Lapsed: 2, Repaid: 1, Date: 20250914, Type: ip, Level: 1, E: y(5000)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "discharged on the first day of benefits", Scheme: res, Enrolled: 20250515, InConc: true, Lapsed: 2, Repaid: 1, Date: 20250915, Type: ip, Level: 1, E: y(10000)},
			pt.Want{D: y(200), Basic: y(8330)}},
		{pt.Case{Name: "lapsed 5 repaid 4: at least 6 months", Scheme: res, Enrolled: 20250228, Lapsed: 5, Repaid: 4, Date: 20250827, Type: ch, Level: 1, E: y(1000)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "lapsed 5 repaid 4: benefits 08-28", Scheme: res, Enrolled: 20250228, Lapsed: 5, Repaid: 4, Date: 20250828, Type: ch, Level: 1, E: y(1000)},
			pt.Want{D: y(300), Basic: y(595)}},
		{pt.Case{Name: "9 months from 05-31 ends 02-28", Scheme: res, Enrolled: 20240531, InConc: true, Lapsed: 6, Date: 20250227, Type: ch, Level: 1, E: y(1000)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "9 months from 05-31: 02-28 covered", Scheme: res, Enrolled: 20240531, InConc: true, Lapsed: 6, Date: 20250228, Type: ch, Level: 1, E: y(1000)},
			pt.Want{D: y(300), Basic: y(595)}},
		{pt.Case{Name: "assistance in the wait on all of E", Scheme: res, Groups: []string{"subsistence"}, Designated: true, Enrolled: 20250601, Date: 20250710, Type: ip, Level: 1, E: y(10000)},
			pt.Want{Assist: y(8000), Changes: pt.C{"assist.paid": y(8000)}}},
		{pt.Case{Name: "assistance in the wait, not designated", Scheme: res, Groups: []string{"subsistence"}, Enrolled: 20250601, Date: 20250710, Type: ip, Level: 1, E: y(10000)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "after the wait", Scheme: res, Groups: []string{"subsistence"}, Designated: true, Enrolled: 20250601, Date: 20250905, Type: ip, Level: 1, E: y(10000)},
			pt.Want{D: y(200), Basic: y(8330), Assist: y(1336)}},
		{pt.Case{Name: "dated before enrolment with no wait", Scheme: res, Enrolled: 20251001, InConc: true, Date: 20250920, Type: ch, Level: 1, E: y(1000)},
			pt.Want{Changes: pt.C{}}},
		{pt.Case{Name: "enrolment day with no wait", Scheme: res, Enrolled: 20251001, InConc: true, Date: 20251001, Type: ch, Level: 1, E: y(1000)},
			pt.Want{D: y(300), Basic: y(595)}},
		{pt.Case{Name: "no enrolment date: no wait", Scheme: res, Lapsed: 9, Type: ch, Level: 1, E: y(1000)},
			pt.Want{D: y(300), Basic: y(595)}},
		{pt.Case{Name: "outpatient in the wait: nothing anyway", Scheme: res, Enrolled: 20250531, Date: 20250601, Type: op, Level: 1, E: y(100)},
			pt.Want{Changes: pt.C{}}},
	})
}

// TestWaitingSequence: the waiting visit leaves the yearly chronic deductible
// untouched (example 10-b).
func TestWaitingSequence(t *testing.T) {
	b := pt.NewBook(0)
	for _, s := range []struct {
		date     abi.Date
		d, basic int64
	}{{20250429, 0, 0}, {20250430, y(300), y(595)}, {20250501, 0, y(850)}} {
		c := pt.Case{Scheme: res, Enrolled: 20250131, Date: s.date, Type: ch, Level: 1, E: y(1000)}
		in := c.Input()
		out, _, err := b.Settle(r152500.V1, &in, false)
		if err != nil || out.Deductible != s.d || out.Basic != s.basic {
			t.Errorf("%d: D %d basic %d (%v), want %d %d", s.date, out.Deductible, out.Basic, err, s.d, s.basic)
		}
	}
}
