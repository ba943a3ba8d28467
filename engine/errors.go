package engine

import "fmt"

// LoadError is a module refused at load: Check names the failed check
// (size, compile, imports, memory, exports, instantiate, abi_version).
type LoadError struct {
	Region, Version string
	Check           string // the first failed check
	Err             error
	All             []CheckFailure // every failed check found
}

// CheckFailure is one failed load check.
type CheckFailure struct {
	Check   string `json:"check"`
	Message string `json:"message"`
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("engine: policy %s/%s refused (%s): %v", e.Region, e.Version, e.Check, e.Err)
}

func (e *LoadError) Unwrap() error { return e.Err }

// FailKind classifies a failed call.
type FailKind uint8

const (
	FailTrap        FailKind = iota + 1 // trap, panic, proc_exit
	FailTimeout                         // the call ran past the time limit
	FailMalformed                       // the answer does not decode
	FailCheck                           // the answer breaks a host check
	FailRefused                         // the policy refused on purpose
	FailUnavailable                     // no instance could be had (canceled)
	FailStack                           // the call went past the stack limit
)

func (k FailKind) String() string {
	switch k {
	case FailTrap:
		return "trap"
	case FailTimeout:
		return "timeout"
	case FailMalformed:
		return "malformed_answer"
	case FailCheck:
		return "check"
	case FailRefused:
		return "refused"
	case FailUnavailable:
		return "unavailable"
	case FailStack:
		return "stack_limit"
	}
	return "unknown"
}

// CallError is a failed policy call for one settlement.
type CallError struct {
	Region, Version string
	Kind            FailKind
	Rule            string // FailCheck: the host rule broken (see ABI.md)
	Err             error
}

func (e *CallError) Error() string {
	if e.Kind == FailCheck {
		return fmt.Sprintf("engine: policy %s/%s answer breaks rule %s: %v", e.Region, e.Version, e.Rule, e.Err)
	}
	return fmt.Sprintf("engine: policy %s/%s %s: %v", e.Region, e.Version, e.Kind, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }
