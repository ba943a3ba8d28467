package gateway

import (
	"strconv"
	"testing"
)

// TestTraceCodeLookalikesRefused: a drug trace code is what the scanner
// read off the box, printable ASCII. A code that only looks like a settled
// one (full-width digits, a zero-width space or a no-break space after it)
// would otherwise be a new code, and the same box could be settled twice.
// Such codes are refused (400, naming the code), for a quote as for a
// settlement, and nothing is written.
func TestTraceCodeLookalikesRefused(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive, resident}}))
	line := func(code string) string {
		return `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00","trace_codes":["` + code + `"]}]`
	}
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("L-1", "EMP1", "371600", chronicVisit, line("83900000000000000001")))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	head := h.head()
	for n, code := range []string{
		"８３900000000000000001",       // full-width digits
		`83900000000000000001\u200b`, // zero-width space, escaped
		"83900000000000000001\u200b", // zero-width space, raw UTF-8
		`83900000000000000001\u00a0`, // no-break space
		"83900000000000000001\u00ad", // soft hyphen
		`\u202e10000000000000000938`, // right-to-left override
	} {
		for i, path := range []string{"/v1/settlements", "/v1/settlements/quote"} {
			status, body := h.do("POST", path, "tok-H3716210001", settleBody("L-2-"+strconv.Itoa(n)+"-"+strconv.Itoa(i), "RES1", "371600", chronicVisit, line(code)))
			a := decodeAnswer(t, body)
			if status != 400 || a.Error == nil || a.Error.Code != "invalid_field" || a.Error.Field != "items[0].trace_codes[0]" {
				t.Errorf("%s with trace code %q: %d %s, want 400 invalid_field at items[0].trace_codes[0]", path, code, status, body)
			}
		}
	}
	if h.head() != head {
		t.Fatal("a refused trace code wrote to the ledger")
	}
	// The same code spelt with JSON escapes is the same code: refused as reused.
	status, body = h.do("POST", "/v1/settlements", "tok-H3716210001", settleBody("L-3", "RES1", "371600", chronicVisit, line(`\u00383900000000000000001`)))
	if a := decodeAnswer(t, body); status != 409 || a.Error.Code != "trace_code_reused" {
		t.Fatalf("an escaped spelling of a settled code: %d %s", status, body)
	}
}

// TestCreditReferenceIsAnIdentifier: a credit's reference is its
// idempotency key, held to the rule of a request_id: no spaces and no
// control characters. A region system that sends " CR-1" once and "CR-1"
// on its retry (or a NUL it did not mean) would otherwise credit twice.
func TestCreditReferenceIsAnIdentifier(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	const path = "/v1/regions/371600/persons/EMP1/credits"
	if status, body := h.do("POST", path, "tok-region-371600", []byte(`{"reference":"CR-1","amount":"10.00"}`)); status != 200 {
		t.Fatalf("credit: %d %s", status, body)
	}
	for _, ref := range []string{` CR-1`, `CR-1 `, `CR-1\u0000`, `CR\t1`, `CR-1\n`, `CR-1\u007f`} {
		status, body := h.do("POST", path, "tok-region-371600", []byte(`{"reference":"`+ref+`","amount":"10.00"}`))
		a := decodeAnswer(t, body)
		if status != 400 || a.Error == nil || a.Error.Code != "invalid_field" || a.Error.Field != "reference" {
			t.Errorf("reference %q: %d %s, want 400 invalid_field at reference", ref, status, body)
		}
	}
	bal, err := h.db.Balance("371600", "EMP1")
	if err != nil {
		t.Fatal(err)
	}
	if bal != 1010_00 {
		t.Fatalf("balance %d fen after one credit of 10.00 on 1000.00", bal)
	}
}
