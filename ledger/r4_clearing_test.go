package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// An export line that holds more than its one record verified: VerifyExport
// decoded the line's first JSON value and ignored what followed it, so a
// record forged onto the end of a genuine line passed `medgate verify
// export`, while a consumer reading the file as a stream of JSON values
// (json.Decoder, jq) reads the forged record as one more entry. A key given
// twice in a line verified on its last value, while a reader that keeps
// the first (many do) sees the other.
func TestVerifyExportRefusesMoreThanTheRecord(t *testing.T) {
	clk := newTestClock(utc("2026-10-05T02:00:00Z"))
	db := openClock(t, vfs.NewMem(), clk)
	appendN(t, db, 0, 4)
	exp := exportAll(t, db, 0, 0)
	if _, err := VerifyExport(bytes.NewReader(exp), nil); err != nil {
		t.Fatalf("the genuine export: %v", err)
	}
	lines := strings.SplitAfter(string(exp), "\n")
	// A forged record: entry 2's line with its amounts and request id
	// changed (its encoding and hash are entry 2's own).
	forged := strings.Replace(strings.TrimSuffix(lines[1], "\n"), `"request_id":"`, `"request_id":"FORGED-`, 1)
	forged = strings.Replace(forged, `"total":"`, `"total":"9`, 1)

	for name, tc := range map[string]struct {
		line    int
		altered string
	}{
		"a record after the record": {2, strings.TrimSuffix(lines[1], "\n") + " " + forged + "\n"},
		"a value after the record":  {3, strings.TrimSuffix(lines[2], "\n") + ` 1` + "\n"},
		"a key given twice, the forged value first": {2,
			strings.Replace(lines[1], `{"seq":`, `{"request_id":"FORGED","seq":`, 1)},
		"an amount given twice, the forged value first": {2,
			strings.Replace(lines[1], `"amounts":{`, `"amounts":{"total":"9999.00",`, 1)},
	} {
		altered := append([]string(nil), lines...)
		altered[tc.line-1] = tc.altered
		file := strings.Join(altered, "")
		if name == "a record after the record" {
			// What a stream reader sees in the file: one record more.
			dec := json.NewDecoder(strings.NewReader(file))
			n := 0
			for {
				var rec ExportRecord
				if err := dec.Decode(&rec); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != len(lines)-1+1 { // lines has a trailing "" after the last newline
				t.Fatalf("test: a stream reader reads %d records", n)
			}
		}
		_, err := VerifyExport(strings.NewReader(file), nil)
		var ee *ExportError
		if !errors.As(err, &ee) || ee.Line != tc.line {
			t.Errorf("%s: VerifyExport = %v, want an error at line %d", name, err, tc.line)
		}
	}
}
