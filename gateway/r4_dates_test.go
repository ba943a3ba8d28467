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

// TestUploadEffectiveTodaySaysSettledBillsKeepTheirVersion: bills are
// settled up to a day ahead of their date (the grace for clocks around
// midnight), so a version effective today or tomorrow (UTC+8) may find
// bills of its dates already settled with the version before it, which
// keep it. The upload's answer said so only for a date already past; one
// effective today was answered as if every bill of today would use it.
func TestUploadEffectiveTodaySaysSettledBillsKeepTheirVersion(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {resident}})))
	now := time.Now().In(ledger.ChinaTime)
	wasm := referenceWasm(t, "371600", "v2023")
	for i, day := range []time.Time{now, now.AddDate(0, 0, 1)} {
		date := day.Format("2006-01-02")
		id := "EFF-" + date
		status, out := h.do("POST", "/v1/settlements", "tok-H3716210001", settleBody(id, "RES1", "371600",
			`{"type":"two_disease","visit_date":"`+date+`"}`, `[{"code":"XA01","unit_price":"50.00","quantity":"1","amount":"50.00"}]`))
		if status != 200 {
			t.Fatalf("settle %s: %d %s", date, status, out)
		}
		before := decodeAnswer(t, out)
		version := []string{"eff-today", "eff-tomorrow"}[i]
		status, out = h.do("POST", "/v1/regions/371600/policies", "tok-region-371600",
			upload("371600", version, date, wasm, readCases(t, "371600-v2023.json"), demoKey("371600")))
		if status != 201 {
			t.Fatalf("upload effective %s: %d %s", date, status, out)
		}
		if !strings.Contains(string(out), `"note":"effective_from `+date) {
			t.Errorf("upload effective %s, with a bill of that date already settled: no note in %s", date, out)
		}
		_, out = h.do("GET", "/v1/settlements/"+before.SettlementID, "tok-H3716210001", nil)
		if a := decodeAnswer(t, out); a.Policy["version"] == version {
			t.Fatalf("the settlement made before the upload changed version: %s", out)
		}
	}
}

// TestFutureCheckCountsDaysInUTC8: the "not in the future" check counts
// days in UTC+8, not UTC: at 23:59 on 10 October (15:59Z) a bill of the
// 11th (the grace day) is settled and one of the 12th is not; two minutes
// later (00:01 on the 11th, still the 10th in UTC) the 12th is settled.
func TestFutureCheckCountsDaysInUTC8(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T15:59:00Z")
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}), clk)
	try := func(id, date string) int {
		status, _ := h.do("POST", "/v1/settlements/quote", "tok-H3716020001", settleBody(id, "EMP1", "371600",
			`{"type":"outpatient","visit_date":"`+date+`"}`, oneLine))
		return status
	}
	if s := try("T-1", "2026-10-11"); s != 200 {
		t.Errorf("23:59 UTC+8 on the 10th, a bill of the 11th: %d, want 200", s)
	}
	if s := try("T-2", "2026-10-12"); s != 400 {
		t.Errorf("23:59 UTC+8 on the 10th, a bill of the 12th: %d, want 400", s)
	}
	clk.set("2026-10-10T16:01:00Z")
	if s := try("T-3", "2026-10-12"); s != 200 {
		t.Errorf("00:01 UTC+8 on the 11th, a bill of the 12th: %d, want 200", s)
	}
	if s := try("T-4", "2026-10-13"); s != 400 {
		t.Errorf("00:01 UTC+8 on the 11th, a bill of the 13th: %d, want 400", s)
	}
}
