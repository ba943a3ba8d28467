package conformance

import (
	"testing"

	"medgate/engine/abi"
	"medgate/plugins/internal/policytest"
	"medgate/plugins/policy/r371600"
	"medgate/plugins/sdk"
)

// benchInput is a 371600 resident's off-site L3 admission with serious
// illness and medical assistance: the longest path of a reference policy.
func benchInput() []byte {
	c := policytest.Case{
		Scheme: abi.SchemeResident, Reg: abi.RegistrationTemporary, Groups: []string{"subsistence"},
		Type: abi.VisitInpatient, Date: 20250610, Level: 3, Offsite: true,
		E: 5_000_000, FSP: 12_000, Pre: 3_456,
		Counters: map[string]int64{"adm.l23": 1, "cap.basic": 1_234_500, "serious.base": 900_000,
			"serious.paid": 10_000, "assist.paid": 50_000},
	}
	in := c.Input()
	return in.AppendBinary(nil)
}

// BenchmarkNativePolicy is one call of the policy function on a decoded input.
func BenchmarkNativePolicy(b *testing.B) {
	var in abi.Input
	if err := in.Decode(benchInput()); err != nil {
		b.Fatal(err)
	}
	var out abi.Output
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		r371600.V2024(&in, &out)
	}
}

// BenchmarkNativeSettle is what the settle export does per call, natively:
// decode the input, run the policy, encode the output, reusing buffers.
func BenchmarkNativeSettle(b *testing.B) {
	data := benchInput()
	var in abi.Input
	var out abi.Output
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf = sdk.Handle(r371600.V2024, &in, &out, data, buf[:0])
	}
}
