package rules

import (
	"testing"

	"medgate/engine/abi"
)

func TestPct(t *testing.T) {
	for _, c := range []struct{ x, bp, want int64 }{
		{40099, 8000, 32079}, // 320.792 → 320.79
		{4, 8000, 3},         // 0.032 → 0.03
		{15, 7000, 11},       // 0.105 → 0.11 (half up)
		{5, 1000, 1},         // 0.5 fen → 1
		{4, 1250, 1},         // 0.5 fen → 1
		{3, 1000, 0},         // 0.3 fen → 0
		{154567, 9500, 146839},
		{10001, 7500, 7501},
		{0, 9000, 0},
		{-100, 9000, 0},
		{100, 0, 0},
		{1<<62 + 12345, 10000, 1<<62 + 12345}, // no overflow
		{1<<62 + 1, 5000, 1<<61 + 1},          // 0.5 fen rounds up
	} {
		if got := Pct(c.x, c.bp); got != c.want {
			t.Errorf("Pct(%d, %d) = %d, want %d", c.x, c.bp, got, c.want)
		}
	}
}

func TestMoneyPercent(t *testing.T) {
	for fen, want := range map[int64]string{0: "0.00", 5: "0.05", 12345: "123.45", -12345: "-123.45", 100: "1.00", -1: "-0.01"} {
		if got := Money(fen); got != want {
			t.Errorf("Money(%d) = %q, want %q", fen, got, want)
		}
	}
	for bp, want := range map[int64]string{8500: "85%", 9250: "92.5%", 6525: "65.25%", 0: "0%", -1000: "-10%", 10000: "100%", 5: "0.05%"} {
		if got := Percent(bp); got != want {
			t.Errorf("Percent(%d) = %q, want %q", bp, got, want)
		}
	}
	if got := DateString(20250228); got != "2025-02-28" {
		t.Errorf("DateString = %q", got)
	}
}

func TestTiered(t *testing.T) {
	l3 := []Segment{{Upto: 1000000, BP: 8500}, {Upto: NoLimit, BP: 9000}}
	serious := []Segment{{Upto: 10000000, BP: 6000}, {Upto: 20000000, BP: 6500}, {Upto: NoLimit, BP: 7000}}
	for _, c := range []struct {
		name        string
		x, from     int64
		segs        []Segment
		delta, want int64
	}{
		{"L3 crossing", 1420000, 0, l3, 0, 1228000},
		{"L3 one fen over", 1000001, 0, l3, 0, 850001},
		{"L3 exactly the first", 1000000, 0, l3, 0, 850000},
		{"L3 temporary -10pp", 1920000, 0, l3, -1000, 1486000},
		{"L3 none -20pp", 1920000, 0, l3, -2000, 1294000},
		{"floor 0", 10000, 0, []Segment{{Upto: NoLimit, BP: 0}}, -2000, 0},
		{"capped at 100%", 10000, 0, []Segment{{Upto: NoLimit, BP: 9500}}, 1000, 10000},
		{"below threshold", 1260000, 1500000, serious, 0, 0},
		{"at threshold", 1500000, 1500000, serious, 0, 0},
		{"first segment", 3320000, 1500000, serious, 0, 1092000},
		{"second segment", 13000000, 1500000, serious, 0, 6975000},
		{"third segment", 28000050, 1500000, serious, 0, 17050035},
		{"third segment +5", 28100055, 1500000, serious, 0, 17120039},
		{"special", 75000000, 750000, []Segment{{Upto: 10000000, BP: 6500}, {Upto: 20000000, BP: 7000}, {Upto: NoLimit, BP: 7500}}, 0, 54187500},
	} {
		if got := Tiered(c.x, c.from, c.segs, c.delta); got != c.want {
			t.Errorf("%s: Tiered(%d, %d) = %d, want %d", c.name, c.x, c.from, got, c.want)
		}
	}
	// PAY(after) − PAY(before) never exceeds after − before.
	for before := int64(1499990); before < 1500010; before++ {
		for inc := int64(0); inc < 5; inc++ {
			if d := Tiered(before+inc, 1500000, serious, 0) - Tiered(before, 1500000, serious, 0); d > inc || d < 0 {
				t.Fatalf("increment %d of %d pays %d", inc, before, d)
			}
		}
	}
}

func TestCaps(t *testing.T) {
	if got := CutToCap(12000, 15000, 10000); got != 5000 {
		t.Errorf("CutToCap = %d", got)
	}
	if got := CutToCap(12000, 15000, 20000); got != 0 {
		t.Errorf("CutToCap over = %d", got)
	}
	if got := CutToCap(-1, 15000, 0); got != 0 {
		t.Errorf("CutToCap negative = %d", got)
	}
	if got := Room(300, 45); got != 255 {
		t.Errorf("Room = %d", got)
	}
}

func TestAddMonths(t *testing.T) {
	for _, c := range []struct {
		d    abi.Date
		n    int32
		want abi.Date
	}{
		{20250131, 3, 20250430},
		{20250515, 4, 20250915},
		{20250228, 6, 20250828},
		{20240531, 9, 20250228},
		{20230531, 9, 20240229}, // leap year
		{20250601, 3, 20250901},
		{20251130, 3, 20260228},
		{20251015, 14, 20261215},
		{20250310, 0, 20250310},
		{20231231, 2, 20240229},
		{21000131, 1, 21000228}, // 2100 is not a leap year
		{20000131, 1, 20000229}, // 2000 is
	} {
		if got := AddMonths(c.d, c.n); got != c.want {
			t.Errorf("AddMonths(%d, %d) = %d, want %d", c.d, c.n, got, c.want)
		}
	}
}

func TestWaitingPeriod(t *testing.T) {
	p := func(enrolled abi.Date, conc bool, lapsed, repaid int32) *abi.Person {
		return &abi.Person{EnrolledOn: enrolled, InConcentratedPeriod: conc, LapsedYears: lapsed, RepaidYears: repaid}
	}
	for _, c := range []struct {
		name   string
		p      *abi.Person
		months int32
		start  abi.Date
	}{
		{"concentrated, no lapse", p(20250310, true, 0, 0), 0, 20250310},
		{"late", p(20250131, false, 0, 0), 3, 20250430},
		{"concentrated but lapsed", p(20250515, true, 2, 1), 4, 20250915},
		{"lapsed 5 repaid 4: at least 6", p(20250228, false, 5, 4), 6, 20250828},
		{"lapsed 6 repaid 0", p(20240531, true, 6, 0), 9, 20250228},
		{"lapsed 4 repaid 4: 6", p(20250101, false, 4, 4), 6, 20250701},
		{"lapsed 3 repaid 3: 3", p(20250101, false, 3, 3), 3, 20250401},
		{"repaid more than lapsed", p(20250101, false, 1, 3), 3, 20250401},
		{"unknown enrolment", p(0, false, 9, 0), 12, 0},
	} {
		if got := WaitMonths(c.p); got != c.months {
			t.Errorf("%s: WaitMonths = %d, want %d", c.name, got, c.months)
		}
		if got := BenefitsStart(c.p); got != c.start {
			t.Errorf("%s: BenefitsStart = %d, want %d", c.name, got, c.start)
		}
		if c.start != 0 {
			if !InWait(c.p, c.start-1) || InWait(c.p, c.start) || InWait(c.p, c.start+1) {
				t.Errorf("%s: InWait around %d wrong", c.name, c.start)
			}
		} else if InWait(c.p, 19000101) {
			t.Errorf("%s: no enrolment date means no wait", c.name)
		}
	}
	// Dated before enrolment with no wait: in the wait.
	if !InWait(p(20251001, true, 0, 0), 20250920) {
		t.Error("a settlement dated before enrolled_on must be in the wait")
	}
}

func TestAdjustment(t *testing.T) {
	in := func(offsite, emergency bool, reg abi.Registration, typ abi.VisitType) *abi.Input {
		return &abi.Input{Person: abi.Person{Registration: reg},
			Visit: abi.Visit{Type: typ, Emergency: emergency}, Hospital: abi.Hospital{Offsite: offsite}}
	}
	for _, c := range []struct {
		name string
		in   *abi.Input
		want int64
	}{
		{"local none", in(false, false, abi.RegistrationNone, abi.VisitInpatient), 0},
		{"long_term", in(true, false, abi.RegistrationLongTerm, abi.VisitInpatient), 0},
		{"referral", in(true, false, abi.RegistrationReferral, abi.VisitChronic), 0},
		{"temporary", in(true, false, abi.RegistrationTemporary, abi.VisitOutpatient), -1000},
		{"none", in(true, false, abi.RegistrationNone, abi.VisitInpatient), -2000},
		{"unknown registration", in(true, false, abi.Registration(9), abi.VisitInpatient), -2000},
		{"emergency none", in(true, true, abi.RegistrationNone, abi.VisitOutpatient), 0},
		{"emergency temporary", in(true, true, abi.RegistrationTemporary, abi.VisitChronic), 0},
		{"maternity never", in(true, false, abi.RegistrationNone, abi.VisitMaternity), 0},
		{"two_disease never", in(true, false, abi.RegistrationNone, abi.VisitTwoDisease), 0},
	} {
		if got := Adjustment(c.in); got != c.want {
			t.Errorf("%s: Adjustment = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestOffsite(t *testing.T) {
	for _, c := range []struct {
		treating, insured string
		want              bool
	}{
		{"371602", "370000", false},
		{"110105", "370000", true},
		{"150102", "152500", true},
		{"152502", "152500", false},
		{"371621", "371600", false},
		{"370102", "371600", true},
		{"371002", "371000", false},
		{"371602", "371000", true},
		{"371602", "371602", false},
		{"371603", "371602", true},
	} {
		if got := Offsite(c.treating, c.insured); got != c.want {
			t.Errorf("Offsite(%s, %s) = %v, want %v", c.treating, c.insured, got, c.want)
		}
	}
	if OffsitePrefix("370000") != "37" || OffsitePrefix("371600") != "3716" || OffsitePrefix("152500") != "1525" {
		t.Error("OffsitePrefix")
	}
}

func TestAssistanceRatio(t *testing.T) {
	terms := AssistanceTerms{Destitute: 10000, Subsistence: 7000, Other: 6000}
	for _, c := range []struct {
		groups []string
		want   int64
	}{
		{nil, 0},
		{[]string{"destitute"}, 10000},
		{[]string{"subsistence"}, 7000},
		{[]string{"low_income_edge"}, 6000},
		{[]string{"monitored"}, 6000},
		{[]string{"illness_poverty"}, 6000},
		{[]string{"subsistence", "destitute"}, 10000},
		{[]string{"monitored", "subsistence"}, 7000},
		{[]string{"veteran"}, 0},
	} {
		if got := terms.Ratio(&abi.Person{Groups: c.groups}); got != c.want {
			t.Errorf("Ratio(%v) = %d, want %d", c.groups, got, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	ok := abi.Input{Date: 20250101, Person: abi.Person{Scheme: abi.SchemeResident},
		Visit: abi.Visit{Type: abi.VisitInpatient}, Hospital: abi.Hospital{Level: 2}}
	var out abi.Output
	if !Check(&ok, &out) || out.Refusal != "" {
		t.Fatalf("valid input refused: %q", out.Refusal)
	}
	for name, mutate := range map[string]func(*abi.Input){
		"no date":       func(in *abi.Input) { in.Date = 0 },
		"scheme":        func(in *abi.Input) { in.Person.Scheme = 3 },
		"type":          func(in *abi.Input) { in.Visit.Type = 6 },
		"level 0":       func(in *abi.Input) { in.Hospital.Level = 0 },
		"level 4":       func(in *abi.Input) { in.Hospital.Level = 4 },
		"negative E":    func(in *abi.Input) { in.Sums.Eligible = -1 },
		"birth order 0": func(in *abi.Input) { in.Visit.Type = abi.VisitMaternity },
	} {
		in := ok
		mutate(&in)
		out.Reset()
		if Check(&in, &out) || out.Refusal == "" {
			t.Errorf("%s: not refused", name)
		}
	}
}
