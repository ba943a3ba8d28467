package cases

import (
	"strings"
	"testing"
)

// TestCaseDatesAreCalendarDays: a case's dates were read with Atoi and a
// day up to 31, so an example case dated 2025-02-30, +025-01-05 (year 25)
// or 2025-04-31 ran the module on a date no bill can carry (the gateway
// refuses it, 400) and could pass the version's check. They are malformed
// cases, named as such.
func TestCaseDatesAreCalendarDays(t *testing.T) {
	for _, bad := range []string{"2025-02-29", "2024-02-30", "2025-04-31", "+025-01-05", "2025-+1-05", "2025-01-+5", "-025-01-05", "0000-01-01", "2025-01-0x"} {
		for _, field := range []string{"date", "enrolled_on", "visit_date"} {
			c := referenceCases(t)[0]
			switch field {
			case "date":
				c.Input.Date = bad
			case "enrolled_on":
				c.Input.Person.EnrolledOn = bad
			case "visit_date":
				c.Input.Visit.VisitDate = bad
			}
			if _, err := c.ABI(); err == nil || !strings.Contains(err.Error(), bad) {
				t.Errorf("%s %q: %v, want refused naming it", field, bad, err)
			}
		}
	}
	c := referenceCases(t)[0]
	c.Input.Date, c.Input.Person.EnrolledOn = "2024-02-29", "2000-02-29"
	if _, err := c.ABI(); err != nil {
		t.Errorf("leap days: %v", err)
	}
}
