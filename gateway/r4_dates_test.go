package gateway

import (
	"strings"
	"testing"
	"time"

	"medgate/ledger"
)

// TestWithdrawLeavingNoVersionInForceRefused: a region whose only version
// in force today has just a scheduled successor (effective later) could
// withdraw it: every bill of its insured dated before the successor's date
// — today's included — was then 422 no_policy, the very outcome
// last_version refuses for a region's only version. Withdrawing the
// version in force today is a rollback only when an earlier version is
// there to apply again.
func TestWithdrawLeavingNoVersionInForceRefused(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"152500": {strings.Replace(resident, "RES1", "X1", 1)}})))
	today := time.Now().In(ledger.ChinaTime).Format("2006-01-02")
	quote := func() (int, string) {
		status, out := h.do("POST", "/v1/settlements/quote", "tok-H3716210001", settleBody("Q", "X1", "152500",
			`{"type":"outpatient","visit_date":"`+today+`"}`, `[{"code":"XA01","unit_price":"100.00","quantity":"1","amount":"100.00"}]`))
		return status, string(out)
	}
	// v2 is scheduled: in force from a date still to come.
	status, out := h.do("POST", "/v1/regions/152500/policies", "tok-region-152500",
		upload("152500", "v2", "2999-01-01", referenceWasm(t, "152500", "v1"), readCases(t, "152500-v1.json"), demoKey("152500")))
	if status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	status, out = h.do("POST", "/v1/regions/152500/policies/v1/withdraw", "tok-region-152500", nil)
	if status != 409 || !strings.Contains(string(out), `"code":"last_version"`) {
		t.Errorf("withdrawing the version in force with only a scheduled one after it: %d %s, want 409 last_version", status, out)
	}
	if status, out := quote(); status != 200 {
		t.Fatalf("a bill of today after the withdrawal: %d %s", status, out)
	}
	// The scheduled one can be withdrawn: today's version stays.
	if status, out := h.do("POST", "/v1/regions/152500/policies/v2/withdraw", "tok-region-152500", nil); status != 200 {
		t.Fatalf("withdrawing the scheduled version: %d %s", status, out)
	}
	if status, out := quote(); status != 200 {
		t.Fatalf("a bill of today: %d %s", status, out)
	}
}
