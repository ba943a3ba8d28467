// Package sdk is the Go guest SDK of the policy module ABI (engine/abi/ABI.md,
// version 1). A region writes its policy as a plain Go function of type
// Policy, registers it from its module's init, and builds the module with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o policy.wasm ./its/main
//
// The exports abi_version, input_buffer and settle (sdk_wasip1.go) decode the
// host's Input, run the registered policy and encode its Output, reusing the
// same buffers and the same abi.Input / abi.Output values from one call to the
// next. A panic in the policy is not recovered: the call traps (Go's wasip1
// runtime exits), and the host discards the instance, so no half-written
// answer can be read.
//
// The package compiles natively too (without the exports), so that the same
// policy source is unit-tested and benchmarked with the ordinary toolchain;
// Handle is the exact code path the settle export runs.
package sdk

import "medgate/engine/abi"

// Policy computes one settlement: it reads in and fills out, which the SDK
// has reset. It must depend on nothing but in (no state kept across calls).
// To refuse a settlement on purpose it sets out.Refusal.
type Policy func(in *abi.Input, out *abi.Output)

var registered Policy

// Register makes p the module's policy. Call it from the module's init.
func Register(p Policy) { registered = p }

// Registered is the policy given to Register, nil before.
func Registered() Policy { return registered }

// Handle decodes data into in, runs p on it with out reset, and appends the
// encoding of out to dst. An input that does not decode, or a nil policy, is
// answered with a refusal naming the problem.
func Handle(p Policy, in *abi.Input, out *abi.Output, data, dst []byte) []byte {
	out.Reset()
	// data is not changed during the call: in's strings may alias it.
	if err := in.DecodeShared(data); err != nil {
		out.Refusal = "policy module: bad input: " + err.Error()
	} else if p == nil {
		out.Refusal = "policy module: no policy registered"
	} else {
		p(in, out)
	}
	return out.AppendBinary(dst)
}

// Run is Handle with fresh values: it settles the encoded input data with p
// and returns the encoded Output. For tests and tools.
func Run(p Policy, data []byte) []byte {
	var in abi.Input
	var out abi.Output
	return Handle(p, &in, &out, data, nil)
}
