package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"
)

// TestRegionNDJSONWithBOM: a region's NDJSON file as a Windows tool saves
// it (a UTF-8 byte order mark, CRLF line ends, an empty last line) is read
// like any other: the mark is not part of the first line's JSON, so the
// first person or code is not refused.
func TestRegionNDJSONWithBOM(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	body := "\ufeff" + strings.Replace(resident, "RES1", "BOM1", 1) + "\r\n" +
		strings.Replace(resident, "RES1", "BOM2", 1) + "\r\n\r\n"
	status, out := h.do("POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(body))
	var res struct {
		Written, Created, Updated int
		Rejected                  []LineError
	}
	json.Unmarshal(out, &res)
	if status != 200 || res.Written != 2 || res.Created != 2 || len(res.Rejected) != 0 {
		t.Fatalf("persons with a BOM and CRLF: %d %s", status, out)
	}
	status, out = h.do("POST", "/v1/regions/371602/catalog", "tok-region-371600", []byte("\ufeff{\"code\":\"XBOM\",\"class\":\"A\"}\r\n"))
	if status != 200 || !strings.Contains(string(out), `"written":1`) {
		t.Fatalf("catalog with a BOM: %d %s", status, out)
	}
	// A mark anywhere but at the start of the body is not one.
	status, out = h.do("POST", "/v1/regions/371600/persons", "tok-region-371600",
		[]byte(strings.Replace(resident, "RES1", "BOM3", 1)+"\n\ufeff"+strings.Replace(resident, "RES1", "BOM4", 1)))
	if status != 200 || !strings.Contains(string(out), `"line":2`) {
		t.Fatalf("a BOM inside the body: %d %s", status, out)
	}
	// The world's NDJSON files likewise.
	w, err := ReadWorld(fstest.MapFS{
		"catalogs/371600.ndjson": {Data: []byte("\ufeff{\"code\": \"XA01\", \"class\": \"A\"}\r\n")},
		"persons/371600.ndjson":  {Data: []byte("\ufeff" + empActive + "\r\n")},
	})
	if err != nil {
		t.Fatalf("world files with a BOM: %v", err)
	}
	if len(w.Catalogs["371600"]) != 1 || len(w.Persons) != 1 {
		t.Fatalf("world files with a BOM: %d codes, %d persons", len(w.Catalogs["371600"]), len(w.Persons))
	}
}

// TestWithdrawLastVersionRefused: rolling back a region's only version
// has nothing to roll back to; it would leave every bill of the region's
// insured, anywhere in the country, refused as no_policy. It is refused
// (409), and nothing changes; with another version it is a rollback.
func TestWithdrawLastVersionRefused(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"152500": {strings.Replace(resident, "RES1", "X1", 1)}})))
	quote := func() int {
		status, _ := h.do("POST", "/v1/settlements/quote", "tok-H3716210001", settleBody("Q", "X1", "152500",
			`{"type":"outpatient","visit_date":"2025-05-31"}`, `[{"code":"XA01","unit_price":"100.00","quantity":"1","amount":"100.00"}]`))
		return status
	}
	status, out := h.do("POST", "/v1/regions/152500/policies/v1/withdraw", "tok-region-152500", nil)
	if status != 409 || !strings.Contains(string(out), `"code":"last_version"`) {
		t.Fatalf("withdrawing the only version: %d %s", status, out)
	}
	if quote() != 200 {
		t.Fatalf("the refused withdrawal took the version away")
	}
	if list, _ := h.versions.List("152500", 20261123); len(list) != 1 || list[0].Status != "in_force" {
		t.Fatalf("versions after a refused withdrawal: %+v", list)
	}
	// With a later version, the earlier is withdrawn and the later one, the
	// last left, is not.
	status, out = h.do("POST", "/v1/regions/152500/policies", "tok-region-152500",
		upload("152500", "v2", "2023-01-01", referenceWasm(t, "152500", "v1"), readCases(t, "152500-v1.json"), demoKey("152500")))
	if status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	if status, out := h.do("POST", "/v1/regions/152500/policies/v1/withdraw", "tok-region-152500", nil); status != 200 || !strings.Contains(string(out), `"in_force_today":"v2"`) {
		t.Fatalf("withdrawing v1 with v2 there: %d %s", status, out)
	}
	if status, out := h.do("POST", "/v1/regions/152500/policies/v2/withdraw", "tok-region-152500", nil); status != 409 {
		t.Fatalf("withdrawing the last one left: %d %s", status, out)
	}
	if quote() != 200 {
		t.Fatalf("no version in force after the refusal")
	}
}
