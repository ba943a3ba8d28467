package gateway

import (
	"strings"
	"testing"
)

// TestR5NoPolicyBeforeFirstVersionNamesTheDate: a bill dated before the
// first version of its insured region was 422 no_policy naming the field
// person.insured_region, as if the region had no policy at all: the
// hospital could not see that the date was the cause. It names the date
// field, the region's first version and its effective date; a region
// with no version at all still names the region.
func TestR5NoPolicyBeforeFirstVersionNamesTheDate(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}, "152500": {strings.Replace(empActive, "EMP1", "EMP2", 1)}}))
	for _, tc := range []struct {
		name, body, field string
		says              []string
	}{
		{"outpatient", string(settleBody("R5-NP1", "EMP1", "371600", `{"type":"chronic","visit_date":"2022-06-01"}`, oneLine)),
			"visit.visit_date", []string{"2022-06-01", "v2023", "2023-01-01"}},
		{"inpatient", string(settleBody("R5-NP2", "EMP1", "371600", `{"type":"inpatient","admitted_on":"2022-12-20","discharged_on":"2022-12-31"}`, oneLine)),
			"visit.discharged_on", []string{"2022-12-31", "v2023", "2023-01-01"}},
	} {
		for _, path := range []string{"/v1/settlements", "/v1/settlements/quote"} {
			head := h.head()
			status, out := h.do("POST", path, "tok-H3716020001", []byte(tc.body))
			a := decodeAnswer(t, out)
			if status != 422 || a.Error == nil || a.Error.Code != "no_policy" || a.Error.Field != tc.field {
				t.Errorf("%s %s: %d %s; want 422 no_policy naming %s", tc.name, path, status, out, tc.field)
				continue
			}
			for _, s := range tc.says {
				if !strings.Contains(a.Error.Message, s) {
					t.Errorf("%s %s: message %q does not say %s", tc.name, path, a.Error.Message, s)
				}
			}
			if h.head() != head {
				t.Errorf("%s %s: the ledger moved", tc.name, path)
			}
		}
	}
	// A region without any version: the region is the cause.
	h.policies.Remove("152500", "v1")
	status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("R5-NP3", "EMP2", "152500", chronicVisit, oneLine))
	if a := decodeAnswer(t, out); status != 422 || a.Error == nil || a.Error.Code != "no_policy" || a.Error.Field != "person.insured_region" {
		t.Errorf("region without a version: %d %s; want 422 no_policy naming person.insured_region", status, out)
	}
}
