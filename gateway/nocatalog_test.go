package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestNoCatalogRefused: a hospital whose treating region has no catalog,
// nor its prefecture or province (policies.md §1 gives no rule for it), is
// refused 422 no_catalog naming the regions looked up, for a quote and a
// settlement alike, and nothing is written. Before, every line was settled
// as unlisted: the patient paid the whole bill and the fund nothing, under
// a direct settlement that looked like any other.
func TestNoCatalogRefused(t *testing.T) {
	cat := []json.RawMessage{json.RawMessage(`{"code":"XA01","class":"A"}`)}
	wj := worldJSON{
		Hospitals: []HospitalRecord{
			{ID: "H3716020001", Region: "371602", Level: 3, AssistanceDesignated: true},
			{ID: "H1101010001", Region: "110101", Level: 3, AssistanceDesignated: true},
		},
		Catalogs: map[string][]json.RawMessage{"371602": cat},
		Persons:  map[string][]json.RawMessage{"371600": {json.RawMessage(empActive)}},
	}
	h := newHarness(t, wj.toWorld(t))
	items := `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00","trace_codes":["83900000000000000091"]}]`
	head := h.head()
	for _, path := range []string{"/v1/settlements/quote", "/v1/settlements"} {
		status, body := h.do("POST", path, "tok-H1101010001", settleBody("NOCAT-1", "EMP1", "371600", chronicVisit, items))
		var a answer
		json.Unmarshal(body, &a)
		if status != 422 || a.Error == nil || a.Error.Code != "no_catalog" ||
			!strings.Contains(a.Error.Message, "110101, 110100, 110000") {
			t.Fatalf("%s: %d %s, want 422 no_catalog naming 110101, 110100, 110000", path, status, body)
		}
	}
	if h.head() != head {
		t.Fatalf("ledger head moved from %d to %d", head, h.head())
	}
	// The same bill, trace code included, settles where there is a catalog.
	if status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("NOCAT-2", "EMP1", "371600", chronicVisit, items)); status != 200 {
		t.Fatalf("at a hospital with a catalog: %d %s", status, body)
	}
}
