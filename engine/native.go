package engine

import (
	"context"
	"crypto/sha256"
	"sync"

	"medgate/engine/abi"
)

// Runner is what settles with a policy version: a wasm Module, or a Native
// policy compiled into the gateway (used only to measure the price of the
// sandbox against the same policy source; never for real regions).
type Runner interface {
	// Call runs the policy on in (whose ABI encoding is encoded) and
	// checks the answer; see Module.Call.
	Call(ctx context.Context, in *abi.Input, encoded []byte, out *abi.Output) error
	// Sum is the sha256 the ledger records for the version.
	Sum() [32]byte
	Close(ctx context.Context) error
}

var (
	_ Runner = (*Module)(nil)
	_ Runner = (*Native)(nil)
)

// Sum implements Runner.
func (m *Module) Sum() [32]byte { return m.SHA256 }

// Native runs a Go policy function in process, with the same answer checks
// as a module.
type Native struct {
	Region, Version string
	Fn              func(in *abi.Input, out *abi.Output)
	sum             [32]byte
	scratch         sync.Pool // *nativeScratch
}

// nativeScratch is what a guest instance would hold: its own decoded input,
// its answer and the answer's encoding.
type nativeScratch struct {
	in  abi.Input
	out abi.Output
	buf []byte
}

// NewNative wraps fn; its Sum is sha256("native:<region>/<version>").
func NewNative(region, version string, fn func(in *abi.Input, out *abi.Output)) *Native {
	return &Native{Region: region, Version: version, Fn: fn, sum: sha256.Sum256([]byte("native:" + region + "/" + version))}
}

// Call implements Runner. It takes the path a module call takes minus the
// sandbox: the policy decodes the encoded input, answers, encodes its answer,
// and the host decodes and checks that; so a benchmark against a Module
// measures exactly the price of the sandbox.
func (n *Native) Call(ctx context.Context, in *abi.Input, encoded []byte, out *abi.Output) error {
	s, _ := n.scratch.Get().(*nativeScratch)
	if s == nil {
		s = new(nativeScratch)
	}
	defer n.scratch.Put(s)
	if err := s.in.Decode(encoded); err != nil {
		return &CallError{Region: n.Region, Version: n.Version, Kind: FailMalformed, Err: err}
	}
	s.out.Reset()
	n.Fn(&s.in, &s.out)
	s.buf = s.out.AppendBinary(s.buf[:0])
	out.Reset()
	if err := out.Decode(s.buf); err != nil {
		ce := answerUndecodable(err)
		ce.Region, ce.Version = n.Region, n.Version
		return ce
	}
	if out.Refusal != "" {
		return &CallError{Region: n.Region, Version: n.Version, Kind: FailRefused, Err: errString(out.Refusal)}
	}
	if err := Check(in, out); err != nil {
		return &CallError{Region: n.Region, Version: n.Version, Kind: FailCheck, Rule: err.Rule, Err: err}
	}
	return nil
}

// Sum implements Runner.
func (n *Native) Sum() [32]byte { return n.sum }

// Close implements Runner.
func (n *Native) Close(context.Context) error { return nil }

type errString string

func (e errString) Error() string { return string(e) }

// Unavailable stands for a version that is in force but cannot run: its
// stored module is missing or no longer loads. Every call fails with
// FailUnavailable, so the bills of its dates are refused (and can be
// retried once the module is back) rather than settled under the version
// before it.
type Unavailable struct {
	Region, Version string
	SHA256          [32]byte
	Cause           error
}

func (u *Unavailable) Call(context.Context, *abi.Input, []byte, *abi.Output) error {
	return &CallError{Region: u.Region, Version: u.Version, Kind: FailUnavailable, Err: u.Cause}
}

func (u *Unavailable) Sum() [32]byte { return u.SHA256 }

func (u *Unavailable) Close(context.Context) error { return nil }
