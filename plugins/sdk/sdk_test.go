package sdk_test

import (
	"bytes"
	"testing"

	"medgate/engine/abi"
	"medgate/plugins/sdk"
)

func policy(in *abi.Input, out *abi.Output) {
	out.Deductible = in.Sums.Eligible / 10
	out.Basic = in.Sums.Eligible / 2
	for _, c := range in.Counters {
		out.Add(c.Name, 1)
	}
	if in.Visit.Type == abi.VisitMaternity {
		out.Note("maternity")
	}
}

func input(e int64, typ abi.VisitType, counters ...string) []byte {
	in := abi.Input{Date: 20250101, Visit: abi.Visit{Type: typ}, Sums: abi.Sums{Total: e, Eligible: e}}
	for _, n := range counters {
		in.Counters = append(in.Counters, abi.Counter{Name: n, Value: 5})
	}
	return in.AppendBinary(nil)
}

func TestHandleReusesWithoutLeaking(t *testing.T) {
	inputs := [][]byte{
		input(1000, abi.VisitMaternity, "a", "b", "c"),
		input(20, abi.VisitInpatient),
		input(7, abi.VisitMaternity, "z"),
	}
	var in abi.Input
	var out abi.Output
	var buf []byte
	for round := 0; round < 2; round++ {
		for _, data := range inputs {
			buf = sdk.Handle(policy, &in, &out, data, buf[:0])
			if want := sdk.Run(policy, data); !bytes.Equal(buf, want) {
				t.Fatalf("reused state changed the answer")
			}
		}
	}
}

func TestHandleRefusals(t *testing.T) {
	var o abi.Output
	if err := o.Decode(sdk.Run(policy, []byte{1, 0, 0, 0, 1})); err != nil || o.Refusal == "" {
		t.Errorf("truncated input: %q %v", o.Refusal, err)
	}
	if err := o.Decode(sdk.Run(policy, []byte{2, 0, 0, 0})); err != nil || o.Refusal == "" {
		t.Errorf("wrong version: %q %v", o.Refusal, err)
	}
	if err := o.Decode(sdk.Run(nil, input(1, abi.VisitInpatient))); err != nil || o.Refusal == "" {
		t.Errorf("no policy: %q %v", o.Refusal, err)
	}
	if err := o.Decode(sdk.Run(policy, input(1000, abi.VisitInpatient, "x"))); err != nil || o.Refusal != "" ||
		o.Deductible != 100 || o.Basic != 500 || len(o.Changes) != 1 {
		t.Errorf("answer: %+v %v", o, err)
	}
}

func TestRegister(t *testing.T) {
	sdk.Register(policy)
	if sdk.Registered() == nil {
		t.Fatal("not registered")
	}
}
