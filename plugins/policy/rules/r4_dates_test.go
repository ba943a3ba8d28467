package rules

import (
	"math"
	"testing"

	"medgate/engine/abi"
)

// TestLongWaitDoesNotWrapAround: the waiting period's months and its end
// date were computed in int32, so a registry's lapsed_years of a few
// million (or near 2^31) wrapped around to a date in the distant past, or
// to a 6-month wait: the resident was paid as if no wait applied. A wait
// longer than any date a bill can carry lasts past every such date.
func TestLongWaitDoesNotWrapAround(t *testing.T) {
	for _, lapsed := range []int32{3_000_000, math.MaxInt32 - 2, math.MaxInt32} {
		p := &abi.Person{EnrolledOn: 20250310, LapsedYears: lapsed}
		if got := WaitMonths(p); got < 1000 {
			t.Errorf("lapsed %d: WaitMonths = %d", lapsed, got)
		}
		if !InWait(p, 29991231) {
			t.Errorf("lapsed %d: a bill of 2999-12-31 is out of the wait (benefits start %d)", lapsed, BenefitsStart(p))
		}
		if s := DateString(BenefitsStart(p)); s != "9999-12-31" {
			t.Errorf("lapsed %d: benefits start %s, want 9999-12-31 (past any bill)", lapsed, s)
		}
	}
	// Repaid years beyond what can be subtracted in int32.
	if p := (&abi.Person{EnrolledOn: 20250310, LapsedYears: math.MaxInt32, RepaidYears: -5}); !InWait(p, 20260101) {
		t.Errorf("lapsed 2^31-1, repaid -5: not in the wait (start %d)", BenefitsStart(p))
	}
	if got := AddMonths(20250131, math.MaxInt32); got != 99991231 {
		t.Errorf("AddMonths(2025-01-31, 2^31-1) = %d, want 99991231", got)
	}
}
