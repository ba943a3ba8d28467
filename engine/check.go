package engine

import (
	"errors"
	"fmt"

	"medgate/engine/abi"
)

// CheckError names the host rule (ABI.md, "Host checks") an answer breaks.
type CheckError struct {
	Rule   string
	Detail string
}

func (e *CheckError) Error() string { return e.Rule + ": " + e.Detail }

// Check verifies a policy's answer out against its input in before anything
// may be written. It allocates only when it fails.
func Check(in *abi.Input, out *abi.Output) *CheckError {
	fail := func(rule, format string, args ...any) *CheckError {
		return &CheckError{Rule: rule, Detail: fmt.Sprintf(format, args...)}
	}
	if out.Deductible < 0 || out.Basic < 0 || out.Serious < 0 || out.Assistance < 0 || out.Account < 0 {
		return fail("non_negative", "deductible %d, basic %d, serious %d, assistance %d, account %d fen: none may be negative",
			out.Deductible, out.Basic, out.Serious, out.Assistance, out.Account)
	}
	e := in.Sums.Eligible
	if out.Deductible > e {
		return fail("deductible_within_eligible", "deductible %d fen exceeds eligible %d", out.Deductible, e)
	}
	funds, ok := abi.AddChecked(out.Basic, out.Serious)
	if ok {
		funds, ok = abi.AddChecked(funds, out.Assistance)
	}
	if !ok || funds > e {
		// The amounts, so that the policy's author sees which step overpaid.
		return fail("funds_within_eligible", "basic %d + serious %d + assistance %d fen%s exceeds eligible %d",
			out.Basic, out.Serious, out.Assistance, sumOrOverflow(funds, ok), e)
	}
	if out.Account > 0 && !in.UseAccount {
		return fail("account_within_balance", "account %d fen paid but the personal account was not asked for", out.Account)
	}
	if out.Account > in.Person.AccountBalance {
		return fail("account_within_balance", "account %d fen exceeds balance %d", out.Account, in.Person.AccountBalance)
	}
	if paid, ok := abi.AddChecked(funds, out.Account); !ok || paid > in.Sums.Total {
		return fail("sum", "fund_total %d + account %d fen%s exceeds total %d (cash would be negative)",
			funds, out.Account, sumOrOverflow(paid, ok), in.Sums.Total)
	}
	if len(out.Notes) > abi.MaxNotes {
		return fail("notes", "%d notes, limit %d", len(out.Notes), abi.MaxNotes)
	}
	counters := len(in.Counters) // the person's for the year, after this answer
	for i := range out.Changes {
		c := &out.Changes[i]
		if !abi.ValidName(c.Name) {
			return fail("counter_name", "counter name %q is malformed", c.Name)
		}
		for j := 0; j < i; j++ {
			if out.Changes[j].Name == c.Name {
				return fail("counter_name", "counter %q changed twice", c.Name)
			}
		}
		v, ok := abi.AddChecked(in.Counter(c.Name), c.Value)
		if !ok || v < 0 {
			return fail("counter_range", "counter %q is %d: a change of %d would make it negative or overflow", c.Name, in.Counter(c.Name), c.Value)
		}
		if !in.HasCounter(c.Name) {
			// An Input carries at most MaxCounters: a person with more
			// could not be settled again this year.
			if counters++; counters > abi.MaxCounters {
				return fail("counter_range", "counter %q would be the person's %dth this year, limit %d", c.Name, counters, abi.MaxCounters)
			}
		}
	}
	return nil
}

// sumOrOverflow is " = sum", or " (overflowing int64)" when the sum did.
func sumOrOverflow(sum int64, ok bool) string {
	if !ok {
		return " (overflowing int64)"
	}
	return fmt.Sprintf(" = %d", sum)
}

// answerUndecodable is the failure of an answer that does not decode. One
// with more notes or counter changes than the encoding carries breaks the
// host rule ABI.md names for it (notes; counter_range: the person would
// have more than 256 counters), and is refused as such, naming the rule
// and the count; anything else is a malformed answer.
func answerUndecodable(err error) *CallError {
	var le *abi.LimitError
	if errors.As(err, &le) {
		rule, what := "", le.What
		switch le.What {
		case "notes":
			rule = "notes"
		case "changes":
			rule, what = "counter_range", "counter changes"
		}
		if rule != "" {
			return &CallError{Kind: FailCheck, Rule: rule,
				Err: &CheckError{Rule: rule, Detail: fmt.Sprintf("%d %s, limit %d", le.N, what, le.Max)}}
		}
	}
	return &CallError{Kind: FailMalformed, Err: err}
}
