package rules

import (
	"math"

	"medgate/engine/abi"
)

// AddMonths returns d plus n months (n ≥ 0): the same day of the month, or
// that month's last day when it has no such day (2024-05-31 + 9 months =
// 2025-02-28). A date past the year 9999 is 9999-12-31, after every date a
// bill can carry: computed in int32 it would wrap around into the past.
func AddMonths(d abi.Date, n int32) abi.Date {
	y, m, day := d.Year(), d.Month(), d.Day()
	m0 := int64(m) - 1 + int64(n)
	if int64(y)+m0/12 > 9999 {
		return abi.MakeDate(9999, 12, 31)
	}
	y += int32(m0 / 12)
	m = int32(m0%12) + 1
	if last := abi.DaysIn(y, m); day > last {
		day = last
	}
	return abi.MakeDate(y, m, day)
}

// WaitMonths is the length in months of a resident's waiting period
// (待遇等待期, policies.md §4): none when enrolled in the concentrated period
// with no lapsed year; otherwise 3 months plus one month per lapsed year not
// repaid, and at least 6 months when 4 or more years lapsed.
func WaitMonths(p *abi.Person) int32 {
	if p.InConcentratedPeriod && p.LapsedYears == 0 {
		return 0
	}
	// In int64: lapsed_years near 2^31 must not wrap around to a short wait.
	n := 3 + max(0, int64(p.LapsedYears)-int64(p.RepaidYears))
	if p.LapsedYears >= 4 && n < 6 {
		n = 6
	}
	return int32(min(n, math.MaxInt32))
}

// BenefitsStart is the first day on which a person's benefits apply:
// enrolled_on plus the waiting months. It is 0 when enrolled_on is unknown
// (no wait).
func BenefitsStart(p *abi.Person) abi.Date {
	if p.EnrolledOn == 0 {
		return 0
	}
	return AddMonths(p.EnrolledOn, WaitMonths(p))
}

// InWait reports whether a settlement dated date falls in the person's
// waiting period: before the benefits start (which is never before
// enrolled_on, so a settlement dated before enrolment is in the wait too).
func InWait(p *abi.Person, date abi.Date) bool {
	start := BenefitsStart(p)
	return start != 0 && date < start
}

// AppendDate appends d as YYYY-MM-DD.
func AppendDate(b []byte, d abi.Date) []byte {
	y, m, day := d.Year(), d.Month(), d.Day()
	b = append(b, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = append(b, byte('0'+m/10), byte('0'+m%10), '-')
	return append(b, byte('0'+day/10), byte('0'+day%10))
}

// DateString formats d as YYYY-MM-DD.
func DateString(d abi.Date) string { return string(AppendDate(make([]byte, 0, 10), d)) }
