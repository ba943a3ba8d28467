package cases

import (
	"context"
	"errors"
	"slices"
	"testing"

	"medgate/engine"
	"medgate/engine/abi"
)

// remembering answers each case as expected the first time it is called
// and, from its nth call on, one fen more basic fund: a module keeping
// state between calls (a call count, a cache), which ABI.md forbids.
type remembering struct {
	expect map[int64]int64 // eligible sum -> the basic fund expected
	calls  int
	from   int
}

func (r *remembering) Call(_ context.Context, in *abi.Input, _ []byte, out *abi.Output) error {
	r.calls++
	out.Reset()
	out.Basic = r.expect[in.Sums.Eligible]
	if r.calls >= r.from {
		out.Basic++
	}
	return nil
}

// TestR4CasesCatchAModuleKeepingState: a version's check must notice a
// module whose answer to the same case changes once it has answered
// others: its live answers then depend on which settlements an instance
// served before, and a replay of its ledger entries cannot reproduce
// them. Each case that passed is run again, in the reverse order, and
// must get the same answer.
func TestR4CasesCatchAModuleKeepingState(t *testing.T) {
	cs := []Case{
		{Name: "a", Expect: Expect{BasicFund: "1.00"}},
		{Name: "b", Expect: Expect{BasicFund: "2.00"}},
	}
	cs[0].Input.Date, cs[1].Input.Date = "2025-01-01", "2025-01-01"
	cs[0].Input.Visit.Type, cs[1].Input.Visit.Type = "outpatient", "outpatient"
	cs[0].Input.Person.Scheme, cs[1].Input.Person.Scheme = "employee", "employee"
	cs[0].Input.Lines = slices.Grow(cs[0].Input.Lines, 1)[:1]
	l := &cs[0].Input.Lines[0]
	l.Code, l.Class, l.Listed, l.Amount, l.Eligible = "X", "A", true, "10.00", "10.00"
	for i := range cs {
		if _, err := cs[i].ABI(); err != nil {
			t.Fatalf("case %s: %v", cs[i].Name, err)
		}
	}
	expect := map[int64]int64{1000: 100, 0: 200}
	// A stateless module passes.
	if fails := Run(context.Background(), &remembering{expect: expect, from: 1 << 30}, cs); len(fails) != 0 {
		t.Fatalf("a stateless module fails: %+v", fails)
	}
	// One whose answers change after it has answered every case once.
	p := &remembering{expect: expect, from: len(cs) + 1}
	fails := Run(context.Background(), p, cs)
	if len(fails) == 0 {
		t.Fatal("a module whose answer to a case changes on a later call passes its check")
	}
	if len(fails) > len(cs) {
		t.Errorf("%d failures for %d cases: a case is reported once", len(fails), len(cs))
	}
	// A refusal is an answer too: refused once, answered later is a change.
	cs[0].Expect = Expect{Refusal: true}
	q := &refusingOnce{}
	if fails := Run(context.Background(), q, cs[:1]); len(fails) == 0 {
		t.Error("a module that refuses a case once and answers it later passes its check")
	}
}

type refusingOnce struct{ calls int }

func (r *refusingOnce) Call(_ context.Context, _ *abi.Input, _ []byte, out *abi.Output) error {
	r.calls++
	out.Reset()
	if r.calls == 1 {
		out.Refusal = "no"
		return &engine.CallError{Kind: engine.FailRefused, Err: errors.New("no")}
	}
	return nil
}
