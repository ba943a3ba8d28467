package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestR6RegionBodiesInvalidUTF8DoNotCollapse: a region's system that
// writes GBK (张三 is D5 C5 C8 FD, 李四 C0 EE CB C4) sends bytes that are
// not UTF-8. encoding/json replaced each bad byte with U+FFFD, so two
// different ids, references or codes became the same string: the second
// person "updated" the first (its scheme and facts overwritten), and a
// second credit under another reference was answered as a replay of the
// first and never credited. A body that is not UTF-8 is not JSON: each
// such line or body must be refused, never read as another's.
func TestR6RegionBodiesInvalidUTF8DoNotCollapse(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	const persons, tok = "/v1/regions/371600/persons", "tok-region-371600"
	zhang := strings.Replace(empActive, `"EMP1"`, "\"\xd5\xc5\xc8\xfd\"", 1)
	li := strings.Replace(strings.Replace(resident, `"RES1"`, "\"\xc0\xee\xcb\xc4\"", 1), `"conditions":["hypertension"]`, `"conditions":[]`, 1)
	st, b1 := h.do("POST", persons, tok, []byte(zhang))
	st2, b2 := h.do("POST", persons, tok, []byte(li))
	var a1, a2 struct{ Created, Updated, Written int }
	json.Unmarshal(b1, &a1)
	json.Unmarshal(b2, &a2)
	if st2 == 200 && a2.Updated > 0 && a1.Created == 1 {
		t.Errorf("李四's line updated 张三 (another id): first %d %s, second %d %s", st, b1, st2, b2)
	}
	if !strings.Contains(string(b2), "id is not UTF-8") {
		t.Errorf("李四's line is not refused naming its id: %s", b2)
	}

	// Lone UTF-16 surrogates, escaped: encoding/json made each U+FFFD too
	// (the hospital lexer refuses them).
	st, b1 = h.do("POST", persons, tok, []byte(strings.Replace(empActive, `"EMP1"`, `"P\ud800"`, 1)))
	st2, b2 = h.do("POST", persons, tok, []byte(strings.Replace(empActive, `"EMP1"`, `"P\udbff"`, 1)))
	a1, a2 = struct{ Created, Updated, Written int }{}, struct{ Created, Updated, Written int }{}
	json.Unmarshal(b1, &a1)
	json.Unmarshal(b2, &a2)
	if st2 == 200 && a2.Updated > 0 && a1.Created == 1 {
		t.Errorf("P\\udbff's line updated P\\ud800 (another id): first %d %s, second %d %s", st, b1, st2, b2)
	}

	// Credits: two references that differ only in their non-UTF-8 bytes.
	credit := "/v1/regions/371600/persons/EMP1/credits"
	before := balanceOf(t, h, "371600", "EMP1")
	credited := int64(0)
	for _, ref := range []string{"R-\xb3\xc9", "R-\xb9\xa6"} {
		st, b := h.do("POST", credit, tok, []byte(`{"reference":"`+ref+`","amount":"10.00"}`))
		var a struct{ Replayed bool }
		json.Unmarshal(b, &a)
		switch {
		case st == 200 && a.Replayed:
			t.Errorf("credit under reference %q answered as a replay of another reference: %s", ref, b)
		case st == 200:
			credited += 1000
		case st != 400 || !strings.Contains(string(b), `"field":"reference"`):
			t.Errorf("credit under reference %q: %d %s", ref, st, b)
		}
	}
	if after := balanceOf(t, h, "371600", "EMP1"); after != before+credited {
		t.Errorf("balance %d after credits answered as %d fen from %d", after, credited, before)
	}

	// Catalog codes: X\xb1 class A, then X\xb2 class C.
	const cat = "/v1/regions/371600/catalog"
	h.do("POST", cat, tok, []byte("{\"code\":\"X\xb1\",\"class\":\"A\"}"))
	st, b := h.do("POST", cat, tok, []byte("{\"code\":\"X\xb2\",\"class\":\"C\"}"))
	if c, ok := h.db.Catalog("371600"); ok && st == 200 {
		for _, e := range c.Entries() {
			if strings.ContainsRune(e.Code, '\uFFFD') {
				t.Errorf("a code not UTF-8 was stored as %q (%d %s): another code's bytes land on it", e.Code, st, b)
			}
		}
	}
}

// TestR6LoneSurrogateAt: strictJSON refuses what encoding/json would read
// as U+FFFD, and only that.
func TestR6LoneSurrogateAt(t *testing.T) {
	for body, want := range map[string]int{
		`{"id":"\ud83d\ude00"}`:    -1, // a pair: one character
		`{"id":"\\ud800"}`:         -1, // an escaped backslash, then text
		`{"id":"a\"\n\u0041"}`:     -1,
		`{"id":"\udc00"}`:          7,
		`{"id":"\ud800x"}`:         7,
		`{"id":"\ud800\u0041"}`:    7,
		`{"id":"\ud800\ud800"}`:    7,
		`{"id":"x\\\ud800"}`:       10,
		`{"id":"\ud800`:            7,
		`{"id":"ok","b":"\uDFFF"}`: 16,
	} {
		if got := loneSurrogateAt([]byte(body)); got != want {
			t.Errorf("loneSurrogateAt(%s) = %d, want %d", body, got, want)
		}
		var v struct{ ID, B string }
		if err := strictJSON([]byte(body), &v); (err == nil) != (want < 0) {
			t.Errorf("strictJSON(%s): %v", body, err)
		}
	}
}

// TestR6PersonLineReasonsNameTheirField: a refused persons line's reason
// named no field for a negative year count ("year counts must not be
// negative": which of four?) nor for too many groups or conditions, so a
// region fixing a roster of 300,000 lines had to guess.
func TestR6PersonLineReasonsNameTheirField(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	many := `"c0"` + strings.Repeat(`,"c"`, 70)
	lines := map[string]string{
		"repaid_years":     strings.Replace(empActive, `"in_concentrated_period":true`, `"in_concentrated_period":true,"lapsed_years":2,"repaid_years":-1`, 1),
		"zero_claim_years": strings.Replace(empActive, `"in_concentrated_period":true`, `"in_concentrated_period":true,"zero_claim_years":-3`, 1),
		"conditions":       strings.Replace(empActive, `"conditions":[]`, `"conditions":[`+many+`]`, 1),
		"groups":           strings.Replace(empActive, `"groups":[]`, `"groups":[`+strings.TrimSuffix(strings.Repeat(`"subsistence",`, 65), ",")+`]`, 1),
	}
	for field, line := range lines {
		st, out := h.do("POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(line))
		var a struct {
			Written  int
			Rejected []LineError
		}
		if st != 200 || json.Unmarshal(out, &a) != nil || a.Written != 0 || len(a.Rejected) != 1 {
			t.Fatalf("%s: %d %s", field, st, out)
		}
		if !strings.Contains(a.Rejected[0].Reason, field) {
			t.Errorf("%s: the reason does not name the field: %q", field, a.Rejected[0].Reason)
		}
		for other := range lines {
			if other != field && strings.Contains(a.Rejected[0].Reason, other) {
				t.Errorf("%s: the reason names %s too: %q", field, other, a.Rejected[0].Reason)
			}
		}
	}
}

// TestR6CreditErrorsSayWhatIsWrong: a credit of an amount too large for
// the gateway's money was refused as "a positive amount with at most two
// decimals", which it was; and a credit without an amount or a reference
// was invalid_field, not missing_field as every other body names an
// absent field.
func TestR6CreditErrorsSayWhatIsWrong(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	const credit, tok = "/v1/regions/371600/persons/EMP1/credits", "tok-region-371600"
	before := balanceOf(t, h, "371600", "EMP1")
	for _, c := range []struct{ body, code, field, says string }{
		{`{"reference":"C-1","amount":"99999999999999.99"}`, "invalid_field", "amount", "too large"},
		{`{"reference":"C-1","amount":"1.001"}`, "invalid_field", "amount", "decimals"},
		{`{"reference":"C-1","amount":"0.00"}`, "invalid_field", "amount", "positive"},
		{`{"reference":"C-1"}`, "missing_field", "amount", "required"},
		{`{"amount":"1.00"}`, "missing_field", "reference", "required"},
	} {
		st, b := h.do("POST", credit, tok, []byte(c.body))
		var e struct {
			Error struct{ Code, Field, Message string }
		}
		json.Unmarshal(b, &e)
		if st != 400 || e.Error.Code != c.code || e.Error.Field != c.field || !strings.Contains(e.Error.Message, c.says) {
			t.Errorf("%s: %d %s; want 400 %s naming %s, saying %q", c.body, st, b, c.code, c.field, c.says)
		}
	}
	if after := balanceOf(t, h, "371600", "EMP1"); after != before {
		t.Errorf("balance %d after refused credits, was %d", after, before)
	}
}

// TestR6LineJSONErrorsSpeakJSON: a persons or catalog line with a value
// of the wrong JSON type was refused with encoding/json's own words,
// naming the gateway's Go types ("Go struct field PersonRecord.lapsed_years
// of type int32"), not the field as the region sent it and what it must be.
func TestR6LineJSONErrorsSpeakJSON(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	for _, c := range []struct{ path, line, field string }{
		{"/v1/regions/371600/persons", `{"id":"Q1","scheme":"employee","lapsed_years":1.5}`, "lapsed_years"},
		{"/v1/regions/371600/persons", `{"id":"Q2","scheme":"employee","groups":"subsistence"}`, "groups"},
		{"/v1/regions/371602/catalog", `{"code":"Z5","class":"A","price_cap":12}`, "price_cap"},
	} {
		st, out := h.do("POST", c.path, "tok-region-371600", []byte(c.line))
		var a struct{ Rejected []LineError }
		if st != 200 || json.Unmarshal(out, &a) != nil || len(a.Rejected) != 1 {
			t.Fatalf("%s: %d %s", c.line, st, out)
		}
		r := a.Rejected[0].Reason
		if !strings.Contains(r, c.field) || strings.Contains(r, "Go ") || strings.Contains(r, "Record") {
			t.Errorf("%s: reason %q", c.line, r)
		}
	}
}
