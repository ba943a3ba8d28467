package gateway

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"medgate/ledger"
)

// TestR5CreditsInvisibleToHospitalsAndClearing: a personal-account credit
// is an entry of the chain, but a month's statement totals, the hospital's
// routes and the clearing proofs by settlement id do not see it; the export
// has it, and the stopped store audits clean.
func TestR5CreditsInvisibleToHospitalsAndClearing(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive, resident}})), clk)
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("C-1", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	before, _ := getStatement(t, h, "2026-10")
	status, body = h.do("POST", "/v1/regions/371600/persons/EMP1/credits", "tok-region-371600", []byte(`{"reference":"CR-1","amount":"10.00"}`))
	if status != 200 {
		t.Fatalf("credit: %d %s", status, body)
	}
	credit := h.head()
	after, _ := getStatement(t, h, "2026-10")
	if !reflect.DeepEqual(after.Pairs, before.Pairs) || !reflect.DeepEqual(after.Provinces, before.Provinces) {
		t.Fatalf("the credit changed the statement: %+v, before %+v", after, before)
	}
	if after.LedgerSeq != credit {
		t.Fatalf("the statement names entry %d, the month's last is the credit %d", after.LedgerSeq, credit)
	}
	id := ledger.SettlementID(credit)
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/v1/settlements/" + id, "tok-H3716020001"},
		{"GET", "/v1/settlements/" + id + "/proof", "tok-H3716020001"},
		{"POST", "/v1/settlements/" + id + "/reversal", "tok-H3716020001"},
		{"GET", "/v1/clearing/proofs/inclusion/" + id, "tok-clearing"},
	} {
		var b []byte
		if c.method == "POST" {
			b = []byte(`{"request_id":"R-CR"}`)
		}
		if status, body := h.do(c.method, c.path, c.token, b); status != 404 {
			t.Errorf("%s %s (the credit's seq): %d %s, want 404", c.method, c.path, status, body)
		}
	}
	status, exp := h.do("GET", "/v1/clearing/export", "tok-clearing", nil)
	if status != 200 || !bytes.Contains(exp, []byte(fmt.Sprintf(`{"seq":%d,"kind":"credit","request_id":"CR-1"`, credit))) {
		t.Fatalf("export: %d %s", status, exp)
	}
	if _, err := ledger.VerifyExport(bytes.NewReader(exp), nil); err != nil {
		t.Fatal(err)
	}
	h.stop()
	rep, err := ledger.AuditStore(h.dir, h.fs, nil)
	if err != nil || !rep.OK() || rep.Credits != 1 || rep.Openings != 1 {
		t.Fatalf("audit: %v %+v", err, rep)
	}
}
