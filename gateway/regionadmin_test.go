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
