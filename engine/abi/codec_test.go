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

// TestInputSize: Size is the encoding's length, a string over the limit
// counted as the encoder cuts it.
func TestInputSize(t *testing.T) {
	long := sampleInput()
	long.Person.Groups = append(long.Person.Groups, string(make([]byte, MaxString+5)))
	for _, in := range []*Input{{}, sampleInput(), long} {
		if got, want := in.Size(), len(in.AppendBinary(nil)); got != want {
			t.Errorf("Size() = %d, encoding has %d bytes", got, want)
		}
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

// TestInputLines checks the bill lines both ways the decoder reads them (a
// whole valid line at once, anything else field by field): copied and
// shared strings, an empty code, a bad bool and a line cut short.
func TestInputLines(t *testing.T) {
	in := sampleInput()
	in.Lines = append(in.Lines, Line{Code: "", Class: ClassC, Amount: 7, FullSelfPay: 7},
		Line{Code: "XD9999", Class: ClassA, Listed: true, Amount: 1 << 40, OverLimit: -3, Eligible: 1<<40 + 3})
	b := in.AppendBinary(nil)
	for _, shared := range []bool{false, true} {
		var got Input
		if err := got.decode(b, shared); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(in, &got) {
			t.Fatalf("shared %v: round trip:\n%+v\n%+v", shared, in.Lines, got.Lines)
		}
	}
	// The listed byte of the last line (5 × 8 amounts after it) set to 2.
	bad := append([]byte(nil), b...)
	tail := len(appendCounters(nil, in.Counters))
	listed := len(bad) - tail - 5*8 - 1
	if bad[listed] != 1 {
		t.Fatalf("test bug: byte %d is %d, not the listed flag", listed, bad[listed])
	}
	bad[listed] = 2
	var got Input
	if err := got.Decode(bad); err != ErrBool {
		t.Fatalf("listed = 2: %v, want ErrBool", err)
	}
	// Cut inside the last line's amounts.
	if err := got.Decode(b[:listed+9]); err != ErrTruncated {
		t.Fatalf("cut line: %v, want ErrTruncated", err)
	}
}

// TestNoteBytes: notes added from a reused buffer keep their text while the
// storage grows, encode like Note's, and the storage is reused after Reset
// without allocating.
func TestNoteBytes(t *testing.T) {
	var o, want Output
	buf := make([]byte, 0, 64)
	for i := 0; i < 40; i++ { // past the first 512 bytes: the storage grows
		buf = append(buf[:0], "note number "...)
		buf = append(buf, byte('A'+i%26), byte('a'+i/26))
		buf = append(buf, bytes.Repeat([]byte{'.'}, i)...)
		o.NoteBytes(buf)
		want.Note(string(buf))
	}
	o.NoteBytes(nil)
	want.Note("")
	if !reflect.DeepEqual(o.Notes, want.Notes) {
		t.Fatalf("notes:\n%q\nwant\n%q", o.Notes, want.Notes)
	}
	if got, exp := o.AppendBinary(nil), want.AppendBinary(nil); !bytes.Equal(got, exp) {
		t.Fatal("NoteBytes notes encode differently from Note's")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		o.Reset()
		for i := 0; i < 10; i++ {
			o.NoteBytes(buf)
		}
	}); allocs != 0 {
		t.Fatalf("%v allocations a call after Reset, want 0", allocs)
	}
}
