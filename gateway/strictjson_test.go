package gateway

import (
	"runtime"
	"strings"
	"testing"
)

// checkDuplicateKeys names the first repeated key by its path, and lets
// the same key in different objects pass.
func TestCheckDuplicateKeys(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"b":[{"x":1},{"x":2,"y":[1,2],"x":3}]}`: "b[1].x",
		`{"a":1,"a":2}`: "a",
		`{"a":{"b":{"c":1}},"d":[[{"e":1,"e":2}]]}`: "d[0][0].e",
		`{"a":[1,2,{"k":1}],"b":{"k":1},"k":1}`:     "",
		`[{"a":1},{"a":1}]`:                         "",
		// Keys that encoding/json would match to the same field.
		`{"amount":"1","AMOUNT":"5"}`:              "AMOUNT",
		`{"settlements":[],"\u017fettlements":[]}`: "\u017fettlements",
	} {
		err := checkDuplicateKeys([]byte(in))
		got := ""
		if d, ok := err.(*duplicateKeyError); ok {
			got = d.path
		} else if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

// A deeply nested value (encoding/json accepts 10,000 levels, e.g. inside a
// json.RawMessage) is walked in memory linear in its depth: paths are built
// only for a duplicate, not kept for every level.
func TestCheckDuplicateKeysDeep(t *testing.T) {
	const depth = 9990
	body := []byte(`{"cases":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := checkDuplicateKeys(body); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("walking %d levels allocated %d MB", depth, alloc>>20)
	}
	deep := []byte(`{"cases":[[[{"a":1},{"a":1,"A":2}]]]}`)
	if err, ok := checkDuplicateKeys(deep).(*duplicateKeyError); !ok || err.path != "cases[0][0][1].A" {
		t.Fatalf("duplicate deep inside: %v", err)
	}
}

// TestBodyErrorsNameThePath checks that a refused field of a JSON body is
// named by its path with array indexes (api.md: items[3].amount), not as
// encoding/json names it (settlements.total) or by its key alone.
func TestBodyErrorsNameThePath(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	row := `{"settlement_id":"S000000000001","total":"1.00","fund_total":"0.00","personal_account":"0.00"}`
	for _, tt := range []struct{ second, code, field string }{
		{`{"settlement_id":"S000000000002","total":5}`, "invalid_field", "settlements[1].total"},
		{`{"settlement_id":"S000000000002","bogus":1}`, "unknown_field", "settlements[1].bogus"},
	} {
		body := `{"from":"2025-01-01","to":"2025-01-31","settlements":[` + row + `,` + tt.second + `]}`
		status, out := h.do("POST", "/v1/reconciliation/details", "tok-H3716020001", []byte(body))
		if a := decodeAnswer(t, out); status != 400 || a.Error == nil || a.Error.Code != tt.code || a.Error.Field != tt.field {
			t.Errorf("%s: %d %s, want 400 %s naming %s", tt.second, status, out, tt.code, tt.field)
		}
	}
	for _, tt := range []struct {
		body string
		off  int64
		want string
	}{
		{`{"a":[1,{"b":"x"}]}`, 15, "a[1].b"},
		{`[1,2,3]`, 4, "[1]"},
		{`{"a":1}`, 6, "a"},
	} {
		if got := valuePath([]byte(tt.body), tt.off, "?"); got != tt.want {
			t.Errorf("valuePath(%s, %d) = %s, want %s", tt.body, tt.off, got, tt.want)
		}
	}
}

// TestLexerStrings checks the escapes of the hand-written lexer: a
// surrogate pair is one character, and a lone surrogate is refused rather
// than replaced, so that two different strings never decode alike.
func TestLexerStrings(t *testing.T) {
	for in, want := range map[string]string{
		`"plain"`:                    "plain",
		`"a\"b\\c\/d\n"`:             "a\"b\\c/d\n",
		`"\u00e9t\u00e9"`:            "été",
		`"x\ud83d\ude00y"`:           "x😀y",
		`"\ufffd"`:                   "\ufffd",
		`"\ud800"`:                   "",
		`"\udfff"`:                   "",
		`"\ud800x"`:                  "",
		`"\ud800\u0041"`:             "",
		`"\ud800\ud800"`:             "",
		`"\ud83d\ude00\ud83d"`:       "",
		`"\ud83d\`:                   "",
		"\"\xff\"":                   "",
		`"\u12"`:                     "",
		`"tab` + "\t" + `inside"`:    "",
		`"ends with an escape\u0041`: "",
	} {
		l := &lexer{b: []byte(in)}
		got, err := l.str()
		if want == "" {
			if err == nil {
				t.Errorf("%s: read %q, want an error", in, got)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestLexerIntegers checks that integers are JSON's: no leading zero, no
// fraction or exponent, no plus sign.
func TestLexerIntegers(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "7": 7, "-3": -3, "120": 120, "-0": 0} {
		l := &lexer{b: []byte(in)}
		if got, ok := l.integer(); !ok || got != want {
			t.Errorf("%s: %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"01", "-01", "00", "1.0", "1e2", "+1", "-", "", "x"} {
		l := &lexer{b: []byte(in)}
		if got, ok := l.integer(); ok {
			t.Errorf("%s: read %d, want refused", in, got)
		} else if l.i != 0 {
			t.Errorf("%s: refused but consumed %d bytes", in, l.i)
		}
	}
}
