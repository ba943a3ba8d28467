package policytest

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"medgate/plugins/policy/rules"
	"medgate/plugins/sdk"
)

// Want is the expected answer of a Case.
type Want struct {
	D, Basic, Serious, Assist, Account int64
	// Changes are the expected counter changes; nil means not checked, an
	// empty map means none.
	Changes map[string]int64
	Refused bool
}

// Expect runs c through p (the SDK's code path) and compares the answer
// with w.
func Expect(t *testing.T, p sdk.Policy, c Case, w Want) {
	t.Helper()
	in := c.Input()
	out, _, _, err := Run(p, &in)
	if err != nil {
		t.Errorf("%s: host check: %v", c.Name, err)
		return
	}
	if w.Refused != (out.Refusal != "") {
		t.Errorf("%s: refusal %q, want refused=%v", c.Name, out.Refusal, w.Refused)
		return
	}
	if w.Refused {
		return
	}
	got := [5]int64{out.Deductible, out.Basic, out.Serious, out.Assistance, out.Account}
	exp := [5]int64{w.D, w.Basic, w.Serious, w.Assist, w.Account}
	if got != exp {
		t.Errorf("%s: D/basic/serious/assist/account = %s, want %s\nnotes: %s",
			c.Name, money(got[:]), money(exp[:]), strings.Join(out.Notes, "; "))
	}
	if w.Changes != nil {
		if g, e := mapString(Changes(&out)), mapString(w.Changes); g != e {
			t.Errorf("%s: changes %s, want %s", c.Name, g, e)
		}
	}
}

func money(list []int64) string {
	s := make([]string, len(list))
	for i, v := range list {
		s[i] = rules.Money(v)
	}
	return strings.Join(s, " / ")
}

func mapString(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return b.String()
}

// C is shorthand for a changes map.
type C = map[string]int64
