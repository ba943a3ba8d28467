package ledger

import (
	"medgate/engine/abi"
)

// How an entry of format 2 stores its policy input (Entry.Input).
const (
	inputNone    = 0 // no input (a reversal)
	inputCompact = 1 // an ABI version 1 input, field by field in varints
	inputRaw     = 2 // bytes that are not an ABI input, as they are
)

// How an entry of format 2 stores its lines (Entry.Lines).
const (
	linesListed    = 0 // listed one by one
	linesFromInput = 1 // the lines of the compact input, as they are
)

// The compact input is ABI version 1's input (engine/abi, ABI.md "Input")
// with varints in place of fixed-width integers. If the ABI's version
// changes, inputCompact must keep decoding to version 1's bytes: this line
// stops the build until someone looks.
var _ = [1]struct{}{}[abi.Version-1]

// Compact input (same notation as the entry encoding):
//
//	s Date | byte UseAccount
//	byte Scheme | byte Employment | byte Registration | byte InConcentratedPeriod
//	s EnrolledOn | s LapsedYears | s RepaidYears | s ContinuousYears
//	s ZeroClaimYears | s AccountBalance | u #Groups, str each
//	u #Conditions, str each
//	byte Visit.Type | byte Emergency | s BirthOrder | s AdmittedOn
//	s DischargedOn | s VisitDate | u #Diagnoses, str each
//	byte Level | byte AssistanceDesignated | byte Offsite
//	str TreatingRegion | str InsuredRegion
//	5 × s Sums (field order)
//	u #Lines, each as in the entry's listed lines
//	u #Counters, each: str Name, s Value
//
// It holds exactly what abi.Input.Decode accepts (the same limits on counts
// and string lengths), so every compact input re-encodes with
// abi.Input.AppendBinary to the bytes it was made from, and back.
func appendCompactInput(b []byte, in *abi.Input) []byte {
	b = appendVarint(b, int64(in.Date))
	b = appendBool(b, in.UseAccount)
	p := &in.Person
	b = appendPersonFacts(b, p)
	b = appendVarint(b, p.AccountBalance)
	b = appendStrs(b, p.Groups)
	b = appendStrs(b, p.Conditions)
	v := &in.Visit
	b = append(b, byte(v.Type))
	b = appendBool(b, v.Emergency)
	for _, x := range [...]int64{int64(v.BirthOrder), int64(v.AdmittedOn), int64(v.DischargedOn), int64(v.VisitDate)} {
		b = appendVarint(b, x)
	}
	b = appendStrs(b, v.Diagnoses)
	h := &in.Hospital
	b = append(b, h.Level)
	b = appendBool(b, h.AssistanceDesignated)
	b = appendBool(b, h.Offsite)
	b = appendStr(b, h.TreatingRegion)
	b = appendStr(b, h.InsuredRegion)
	s := &in.Sums
	for _, x := range [...]int64{s.Total, s.FullSelfPay, s.OverLimit, s.PreSelfPay, s.Eligible} {
		b = appendVarint(b, x)
	}
	b = appendUvarint(b, uint64(len(in.Lines)))
	for i := range in.Lines {
		b = appendLine(b, (*Line)(&in.Lines[i]))
	}
	b = appendUvarint(b, uint64(len(in.Counters)))
	for i := range in.Counters {
		b = appendStr(b, in.Counters[i].Name)
		b = appendVarint(b, in.Counters[i].Value)
	}
	return b
}

// compactInput reads a compact input into in, overwriting it; its
// strings are d's (see decoder.str).
func (d *decoder) compactInput(in *abi.Input) {
	*in = abi.Input{}
	in.Date = abi.Date(d.int32())
	in.UseAccount = d.bool()
	p := &in.Person
	d.personFacts(p)
	p.AccountBalance = d.varint()
	p.Groups = d.abiStrs()
	p.Conditions = d.abiStrs()
	v := &in.Visit
	v.Type = abi.VisitType(d.byte())
	v.Emergency = d.bool()
	v.BirthOrder = d.int32()
	v.AdmittedOn = abi.Date(d.int32())
	v.DischargedOn = abi.Date(d.int32())
	v.VisitDate = abi.Date(d.int32())
	v.Diagnoses = d.abiStrs()
	h := &in.Hospital
	h.Level = d.byte()
	h.AssistanceDesignated = d.bool()
	h.Offsite = d.bool()
	h.TreatingRegion = d.abiStr()
	h.InsuredRegion = d.abiStr()
	s := &in.Sums
	for _, p := range [...]*int64{&s.Total, &s.FullSelfPay, &s.OverLimit, &s.PreSelfPay, &s.Eligible} {
		*p = d.varint()
	}
	if n := d.count(lineMinSize); n > abi.MaxLines {
		d.fail("more lines than an ABI input holds")
	} else if n > 0 {
		in.Lines = make([]abi.Line, n)
		for i := range in.Lines {
			d.line((*Line)(&in.Lines[i]))
			if len(in.Lines[i].Code) > abi.MaxString {
				d.fail("line code longer than an ABI string")
			}
		}
	}
	if n := d.count(2); n > abi.MaxCounters {
		d.fail("more counters than an ABI input holds")
	} else if n > 0 {
		in.Counters = make([]abi.Counter, n)
		for i := range in.Counters {
			in.Counters[i].Name = d.abiStr()
			in.Counters[i].Value = d.varint()
		}
	}
}

// abiStr reads a string that an ABI message can hold.
func (d *decoder) abiStr() string {
	s := d.str()
	if len(s) > abi.MaxString {
		d.fail("string longer than an ABI string")
		return ""
	}
	return s
}

// abiStrs reads a list of strings that an ABI message can hold.
func (d *decoder) abiStrs() []string {
	n := d.count(1)
	if n > abi.MaxStrings {
		d.fail("more strings than an ABI list holds")
		return nil
	}
	if n == 0 {
		return nil
	}
	list := make([]string, n)
	for i := range list {
		list[i] = d.abiStr()
	}
	return list
}

// sameLines reports whether an entry's lines are an input's lines.
func sameLines(lines []Line, in []abi.Line) bool {
	if len(lines) != len(in) {
		return false
	}
	for i := range lines {
		if lines[i] != Line(in[i]) {
			return false
		}
	}
	return true
}
