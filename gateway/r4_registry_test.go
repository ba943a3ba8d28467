package gateway

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestR4UpsertSaysWhenABalanceWasNotApplied: account_balance opens a new
// person's account only. A region re-sending a known person with another
// balance was answered "updated":1 and nothing else, as if its balance
// had been applied; it could then credit the difference a second time.
// The answer now lists, per line, the balances not applied with the
// opening balance recorded, and the balance itself is left alone.
func TestR4UpsertSaysWhenABalanceWasNotApplied(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	const path, tok = "/v1/regions/371600/persons", "tok-region-371600"
	type answer struct {
		Written, Created, Updated int
		Rejected                  []LineError
		BalanceNotApplied         []struct {
			Line           int
			ID             string
			AccountBalance string `json:"account_balance"`
			OpeningBalance string `json:"opening_balance"`
		} `json:"balance_not_applied"`
	}
	upsert := func(body string) answer {
		t.Helper()
		status, out := h.do("POST", path, tok, []byte(body))
		var a answer
		if status != 200 || json.Unmarshal(out, &a) != nil || a.BalanceNotApplied == nil {
			t.Fatalf("upsert: %d %s", status, out)
		}
		return a
	}
	p2 := strings.Replace(strings.Replace(empActive, "EMP1", "NEW2", 1), "1000.00", "300.00", 1)
	a := upsert(p2 + "\n")
	if a.Created != 1 || len(a.BalanceNotApplied) != 0 {
		t.Fatalf("a new person: %+v", a)
	}
	// Line 1 a known person with another balance, line 2 bad, line 3 a
	// known person without one, lines 4 and 5 new persons.
	noBal := strings.Replace(strings.Replace(empActive, `"account_balance":"1000.00",`, "", 1), "EMP1", "NEW2", 1)
	if !strings.Contains(empActive, `"account_balance":"1000.00",`) {
		t.Fatal("fixture changed")
	}
	body := strings.Replace(empActive, "1000.00", "1500.00", 1) + "\r\n" +
		"{bad\r\n" +
		noBal + "\r\n" +
		strings.Replace(empActive, "EMP1", "NEW3", 1) + "\r\n" +
		strings.Replace(empActive, "EMP1", "NEW4", 1)
	a = upsert(body)
	if a.Written != 4 || a.Created != 2 || a.Updated != 2 || len(a.Rejected) != 1 || a.Rejected[0].Line != 2 {
		t.Fatalf("counts: %+v", a)
	}
	if len(a.BalanceNotApplied) != 1 {
		t.Fatalf("balances not applied: %+v", a.BalanceNotApplied)
	}
	if b := a.BalanceNotApplied[0]; b.Line != 1 || b.ID != "EMP1" || b.AccountBalance != "1500.00" || b.OpeningBalance != "1000.00" {
		t.Fatalf("balance not applied: %+v", b)
	}
	// The same balance re-sent is not applied either (it is the opening
	// one, said so); the balance is unchanged throughout.
	a = upsert(p2)
	if len(a.BalanceNotApplied) != 1 || a.BalanceNotApplied[0].OpeningBalance != "300.00" || a.BalanceNotApplied[0].AccountBalance != "300.00" {
		t.Fatalf("same balance again: %+v", a.BalanceNotApplied)
	}
	if bal, err := h.db.Balance("371600", "EMP1"); err != nil || bal != 100000 {
		t.Fatalf("EMP1's balance %d %v", bal, err)
	}
}

// TestR4RejectedLinesAreBounded: every refused NDJSON line was listed
// with its reason, so one body of 32 MiB ("x\n" 16 million times) made an
// answer of 1.8 GB. The listing now stops at MaxRejectedListed lines
// (the first ones, numbered exactly) and rejected_total counts them all;
// the good lines after them are still written.
func TestR4RejectedLinesAreBounded(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	const bad = 5 * MaxRejectedListed
	body := "\r\n" + strings.Repeat("x\r\n", bad) + strings.Replace(empActive, "EMP1", "LAST", 1)
	type answer struct {
		Written       int
		Rejected      []LineError
		RejectedTotal *int `json:"rejected_total"`
	}
	check := func(what string, status int, out []byte, wantStatus, written int) {
		t.Helper()
		var a answer
		if status != wantStatus || json.Unmarshal(out, &a) != nil {
			t.Fatalf("%s: %d %.300s", what, status, out)
		}
		if a.Written != written || len(a.Rejected) != MaxRejectedListed || a.RejectedTotal == nil || *a.RejectedTotal != bad {
			t.Fatalf("%s: written %d, %d listed, total %v", what, a.Written, len(a.Rejected), a.RejectedTotal)
		}
		if a.Rejected[0].Line != 2 || a.Rejected[MaxRejectedListed-1].Line != MaxRejectedListed+1 {
			t.Fatalf("%s: lines %d..%d", what, a.Rejected[0].Line, a.Rejected[MaxRejectedListed-1].Line)
		}
	}
	status, out := h.do("POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(body))
	check("persons", status, out, 200, 1)
	if _, ok, err := h.db.Person("371600", "LAST"); !ok || err != nil {
		t.Fatalf("the good line after the bad ones was not written: %v", err)
	}
	code := `{"code":"XLAST","class":"A"}`
	body = "\r\n" + strings.Repeat("x\r\n", bad) + code
	status, out = h.do("POST", "/v1/regions/371600/catalog", "tok-region-371600", []byte(body))
	check("catalog upsert", status, out, 200, 1)
	status, out = h.do("PUT", "/v1/regions/371600/catalog", "tok-region-371600", []byte(body))
	check("catalog replacement", status, out, 400, 0)
}

// TestR4PersonIDsCanBeCredited: a person id is a segment of the credits
// path. One with a backslash was accepted and could never be credited
// (the path is normalized, "\" read as "/": 404), and one with a control
// character was accepted too; both are now refused by the upsert, naming
// the line, and nothing is written.
func TestR4PersonIDsCanBeCredited(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	for _, id := range []string{`a\\b`, `x\u0000y`, `x\u007fy`, `tab\u0009`} {
		line := strings.Replace(empActive, `"EMP1"`, `"`+id+`"`, 1)
		status, out := h.do("POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(line))
		if status != 200 || !strings.Contains(string(out), `"written":0`) || !strings.Contains(string(out), `"line":1`) ||
			!strings.Contains(string(out), "id must be") {
			t.Errorf("person id %s: %d %s", id, status, out)
		}
	}
	// Ids that need escaping but survive it are credited.
	for _, id := range []string{"Q?x", "%41", "a#b", "é", "a;b=c"} {
		line := strings.Replace(empActive, `"EMP1"`, `"`+id+`"`, 1)
		mustDo(t, h, 200, "POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(line))
		status, out := h.do("POST", "/v1/regions/371600/persons/"+url.PathEscape(id)+"/credits", "tok-region-371600",
			[]byte(`{"reference":"R-`+url.QueryEscape(id)+`","amount":"1.00"}`))
		if status != 200 || !strings.Contains(string(out), `"balance":"1001.00"`) {
			t.Errorf("credit of %q: %d %s", id, status, out)
		}
	}
}
