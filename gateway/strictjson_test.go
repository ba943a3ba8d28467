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
