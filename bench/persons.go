package bench

import (
	"fmt"
	"math/rand/v2"
)

// genPerson draws an insured person of region. The mix is meant to reach
// every branch of the reference policies under load: employees active and
// retired with and without account balances, residents (some in 152500's
// waiting period), the special groups, chronic conditions, and every
// registration kind (the cross-region adjustment).
func genPerson(region string, rng *rand.Rand) personRecord {
	birth := randDate(rng, 1940, 2005)
	r := personRecord{
		// An 18-character resident id: region, birth date, sequence.
		ID:              fmt.Sprintf("%s%s%04d", region, birth.compact(), rng.IntN(10000)),
		Groups:          []string{},
		Conditions:      []string{},
		Employment:      "active",
		ContinuousYears: rng.IntN(26),
		ZeroClaimYears:  rng.IntN(6),
	}
	if rng.IntN(100) < 40 {
		r.Scheme = "employee"
		if rng.IntN(100) < 30 {
			r.Employment = "retired"
		}
		r.AccountBalance = formatFen(int64(rng.IntN(5000_00)))
		if rng.IntN(100) < 10 {
			r.AccountBalance = "0.00"
		}
	} else {
		r.Scheme = "resident"
		r.AccountBalance = "0.00"
	}
	switch p := rng.IntN(100); {
	case p < 50:
		r.Registration = "long_term"
	case p < 70:
		r.Registration = "referral"
	case p < 85:
		r.Registration = "temporary"
	default:
		r.Registration = "none"
	}
	groups := []string{"destitute", "subsistence", "low_income_edge", "monitored", "illness_poverty"}
	if rng.IntN(100) < 9 {
		r.Groups = append(r.Groups, groups[rng.IntN(len(groups))])
	}
	if rng.IntN(100) < 15 {
		r.Conditions = append(r.Conditions, "hypertension")
	}
	if rng.IntN(100) < 10 {
		r.Conditions = append(r.Conditions, "diabetes")
	}
	if rng.IntN(100) < 2 {
		r.Conditions = append(r.Conditions, "copd")
	}
	// Most enrolled long ago; a few recently, so that 152500 residents'
	// waiting period (policies.md) is exercised.
	if rng.IntN(100) < 5 {
		r.EnrolledOn = randDate(rng, 2025, 2025).String()
	} else {
		r.EnrolledOn = randDate(rng, 2000, 2024).String()
	}
	r.InConcentratedPeriod = rng.IntN(100) < 80
	if rng.IntN(100) < 10 {
		r.LapsedYears = 1 + rng.IntN(5)
		r.RepaidYears = rng.IntN(r.LapsedYears + 1)
	}
	return r
}
