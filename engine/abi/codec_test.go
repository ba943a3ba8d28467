package abi

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleInput() *Input {
	return &Input{
		Date: 20261109, UseAccount: true,
		Person: Person{Scheme: SchemeResident, Employment: EmploymentActive, Registration: RegistrationTemporary,
			InConcentratedPeriod: true, EnrolledOn: 20250310, LapsedYears: 2, RepaidYears: 1, ContinuousYears: 6,
			ZeroClaimYears: 1, AccountBalance: 120000, Groups: []string{"subsistence"}, Conditions: []string{"hypertension", "diabetes"}},
		Visit: Visit{Type: VisitInpatient, Emergency: true, AdmittedOn: 20261101, DischargedOn: 20261109, VisitDate: 20261109,
			Diagnoses: []string{"I10"}},
		Hospital: Hospital{Level: 3, AssistanceDesignated: true, Offsite: true, TreatingRegion: "370102", InsuredRegion: "152500"},
		Sums:     Sums{Total: 302500, PreSelfPay: 30000, Eligible: 272500},
		Lines: []Line{{Code: "XA01", Class: ClassA, Listed: true, Amount: 2500, Eligible: 2500},
			{Code: "XB01", Class: ClassB, Listed: true, Amount: 300000, PreSelfPay: 30000, Eligible: 270000}},
		Counters: []Counter{{Name: "cap.basic", Value: 5}, {Name: "serious.base", Value: -1}},
	}
}

func TestInputRoundTrip(t *testing.T) {
	in := sampleInput()
	b := in.AppendBinary(nil)
	var got Input
	if err := got.Decode(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &got) {
		t.Fatalf("round trip:\n%+v\n%+v", in, &got)
	}
	for n := 0; n < len(b); n++ {
		if err := got.Decode(b[:n]); err == nil {
			t.Fatalf("a message cut to %d of %d bytes decoded", n, len(b))
		}
	}
	if err := got.Decode(append(b, 0)); err != ErrTrailing {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestOutputRoundTrip(t *testing.T) {
	out := &Output{Refusal: "", Deductible: 80000, Basic: 154000, Serious: 1, Assistance: 94800, Account: 53700,
		Changes: []Counter{{Name: "cap.basic", Value: 154000}}, Notes: []string{"deductible 800.00 (L3 admission)", "医疗救助"}}
	b := out.AppendBinary(nil)
	var got Output
	if err := got.Decode(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, &got) {
		t.Fatalf("round trip:\n%+v\n%+v", out, &got)
	}
	// Decoding again into the same value reuses its slices.
	if err := got.Decode(b); err != nil || len(got.Changes) != 1 {
		t.Fatalf("reuse: %v %+v", err, got)
	}
}

// FuzzInput: Decode never panics, and what decodes re-encodes to the same bytes.
func FuzzInput(f *testing.F) {
	f.Add(sampleInput().AppendBinary(nil))
	f.Add((&Input{}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var in Input
		if in.Decode(b) != nil {
			return
		}
		if again := in.AppendBinary(nil); !bytes.Equal(again, b) {
			t.Fatalf("decode/encode is not the identity")
		}
	})
}

// FuzzOutput: the host decodes whatever a guest writes; it must never panic.
func FuzzOutput(f *testing.F) {
	f.Add((&Output{Basic: 1, Changes: []Counter{{Name: "a", Value: 1}}, Notes: []string{"n"}}).AppendBinary(nil))
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var o Output
		if o.Decode(b) != nil {
			return
		}
		if again := o.AppendBinary(nil); !bytes.Equal(again, b) {
			t.Fatalf("decode/encode is not the identity")
		}
	})
}
