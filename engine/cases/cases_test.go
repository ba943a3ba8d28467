package cases

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"medgate/engine"
	"medgate/engine/abi"
)

type failing struct{ err error }

func (f failing) Call(context.Context, *abi.Input, []byte, *abi.Output) error { return f.err }

// A case that expects a refusal is met only by a deliberate refusal: a
// module that traps, runs out of time or breaks a host check there would
// fail settlements instead of refusing them, and must not pass its check.
func TestRefusalCaseNeedsARefusal(t *testing.T) {
	all := referenceCases(t)
	c := all[0]
	c.Expect = Expect{Refusal: true}
	for _, tc := range []struct {
		err  error
		pass bool
	}{
		{&engine.CallError{Kind: engine.FailRefused, Err: errors.New("waiting period")}, true},
		{&engine.CallError{Kind: engine.FailTrap, Err: errors.New("unreachable")}, false},
		{&engine.CallError{Kind: engine.FailTimeout, Err: errors.New("fuel")}, false},
		{&engine.CallError{Kind: engine.FailCheck, Rule: "R1", Err: errors.New("sum")}, false},
		{errors.New("something else"), false},
		{nil, false},
	} {
		fails := Run(context.Background(), failing{tc.err}, []Case{c})
		if (len(fails) == 0) != tc.pass {
			t.Errorf("%v: failures %+v, want pass %v", tc.err, fails, tc.pass)
		}
	}
}

type counting struct {
	calls int
	err   error
}

func (c *counting) Call(context.Context, *abi.Input, []byte, *abi.Output) error {
	c.calls++
	return c.err
}

// A module that runs out of time on a case is not run on the cases after
// it: each would cost the whole time limit, so an upload shipping
// thousands of cases with a looping module would hold a CPU for as many
// limits. The cases not run are still each reported.
func TestCasesStopAfterATimeout(t *testing.T) {
	all := referenceCases(t)
	cs := make([]Case, 1000)
	for i := range cs {
		cs[i] = all[0]
	}
	p := &counting{err: &engine.CallError{Kind: engine.FailTimeout, Err: errors.New("step budget exhausted")}}
	fails := Run(context.Background(), p, cs)
	if p.calls != 1 {
		t.Errorf("the module was called %d times after running out of time", p.calls)
	}
	if len(fails) != len(cs) {
		t.Errorf("%d failures reported for %d cases", len(fails), len(cs))
	}
}

// referenceCases are region 371600's reference cases for v2024.
func referenceCases(t *testing.T) []Case {
	t.Helper()
	b, err := os.ReadFile("../../testdata/cases/371600-v2024.json")
	if err != nil {
		t.Fatal(err)
	}
	var all []Case
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	return all
}
