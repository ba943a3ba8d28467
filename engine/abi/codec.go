package abi

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// Limits of the encoding. A decoder refuses anything larger, so a hostile
// peer cannot make the other side allocate without bound.
const (
	MaxLines    = 10000 // lines in one Input
	MaxCounters = 256   // counters in an Input, changes in an Output
	MaxNotes    = 256   // notes in an Output
	MaxStrings  = 64    // groups, conditions, diagnoses
	MaxString   = 4096  // bytes in one string
)

// ErrTruncated and ErrTooLarge are the decoding errors.
var (
	ErrTruncated = errors.New("abi: message truncated")
	ErrTooLarge  = errors.New("abi: message exceeds a limit")
	ErrVersion   = errors.New("abi: unsupported version")
	ErrTrailing  = errors.New("abi: trailing bytes after message")
	ErrBool      = errors.New("abi: a bool byte is neither 0 nor 1")
)

// LimitError is a count or a length past a limit of the encoding; it is
// ErrTooLarge naming what was too large (What: "lines", "counters",
// "changes", "notes", "strings" or "string"), so that a module's author
// told of it can find what to cut.
type LimitError struct {
	What   string
	N, Max int
}

func (e *LimitError) Error() string {
	if e.What == "string" {
		return "abi: a string of " + itoa(e.N) + " bytes, limit " + itoa(e.Max)
	}
	return "abi: " + itoa(e.N) + " " + e.What + ", limit " + itoa(e.Max)
}

// Is makes a LimitError ErrTooLarge for errors.Is.
func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

// itoa formats a non-negative n (the package keeps to encoding/binary,
// errors and unsafe, for a small guest).
func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

var le = binary.LittleEndian

// AppendBinary appends the encoding of in to b (see ABI.md, "Input").
func (in *Input) AppendBinary(b []byte) []byte {
	b = le.AppendUint32(b, Version)
	b = le.AppendUint32(b, uint32(in.Date))
	b = appendBool(b, in.UseAccount)

	p := &in.Person
	b = append(b, byte(p.Scheme), byte(p.Employment), byte(p.Registration))
	b = appendBool(b, p.InConcentratedPeriod)
	b = le.AppendUint32(b, uint32(p.EnrolledOn))
	b = le.AppendUint32(b, uint32(p.LapsedYears))
	b = le.AppendUint32(b, uint32(p.RepaidYears))
	b = le.AppendUint32(b, uint32(p.ContinuousYears))
	b = le.AppendUint32(b, uint32(p.ZeroClaimYears))
	b = le.AppendUint64(b, uint64(p.AccountBalance))
	b = appendStrings(b, p.Groups)
	b = appendStrings(b, p.Conditions)

	v := &in.Visit
	b = append(b, byte(v.Type))
	b = appendBool(b, v.Emergency)
	b = le.AppendUint32(b, uint32(v.BirthOrder))
	b = le.AppendUint32(b, uint32(v.AdmittedOn))
	b = le.AppendUint32(b, uint32(v.DischargedOn))
	b = le.AppendUint32(b, uint32(v.VisitDate))
	b = appendStrings(b, v.Diagnoses)

	h := &in.Hospital
	b = append(b, h.Level)
	b = appendBool(b, h.AssistanceDesignated)
	b = appendBool(b, h.Offsite)
	b = appendString(b, h.TreatingRegion)
	b = appendString(b, h.InsuredRegion)

	s := &in.Sums
	b = le.AppendUint64(b, uint64(s.Total))
	b = le.AppendUint64(b, uint64(s.FullSelfPay))
	b = le.AppendUint64(b, uint64(s.OverLimit))
	b = le.AppendUint64(b, uint64(s.PreSelfPay))
	b = le.AppendUint64(b, uint64(s.Eligible))

	b = le.AppendUint32(b, uint32(len(in.Lines)))
	for i := range in.Lines {
		l := &in.Lines[i]
		b = appendString(b, l.Code)
		b = append(b, byte(l.Class))
		b = appendBool(b, l.Listed)
		b = le.AppendUint64(b, uint64(l.Amount))
		b = le.AppendUint64(b, uint64(l.FullSelfPay))
		b = le.AppendUint64(b, uint64(l.OverLimit))
		b = le.AppendUint64(b, uint64(l.PreSelfPay))
		b = le.AppendUint64(b, uint64(l.Eligible))
	}
	return appendCounters(b, in.Counters)
}

// Size is the length of in's encoding: len(in.AppendBinary(nil)).
func (in *Input) Size() int {
	n := 4 + 4 + 1 + // version, date, use account
		4 + 5*4 + 8 + stringsSize(in.Person.Groups) + stringsSize(in.Person.Conditions) +
		1 + 1 + 4*4 + stringsSize(in.Visit.Diagnoses) +
		3 + stringSize(in.Hospital.TreatingRegion) + stringSize(in.Hospital.InsuredRegion) +
		5*8 + 4 + 4
	for i := range in.Lines {
		n += stringSize(in.Lines[i].Code) + 1 + 1 + 5*8
	}
	for i := range in.Counters {
		n += stringSize(in.Counters[i].Name) + 8
	}
	return n
}

func stringSize(s string) int { return 2 + min(len(s), MaxString) }

func stringsSize(list []string) int {
	n := 2
	for _, s := range list {
		n += stringSize(s)
	}
	return n
}

// Decode parses data into in, reusing in's slices. On error in is unspecified.
func (in *Input) Decode(data []byte) error { return in.decode(data, false) }

// DecodeShared is Decode without copying strings: in's strings point into
// data, so they are valid only while data is neither changed nor freed. A
// guest decodes its input buffer this way (it keeps the buffer unchanged for
// the call), which spares it an allocation per string.
func (in *Input) DecodeShared(data []byte) error { return in.decode(data, true) }

func (in *Input) decode(data []byte, shared bool) error {
	d := decoder{b: data, shared: shared}
	if d.u32() != Version && d.err == nil {
		return ErrVersion
	}
	in.Date = Date(d.u32())
	in.UseAccount = d.bool()

	p := &in.Person
	p.Scheme = Scheme(d.u8())
	p.Employment = Employment(d.u8())
	p.Registration = Registration(d.u8())
	p.InConcentratedPeriod = d.bool()
	p.EnrolledOn = Date(d.u32())
	p.LapsedYears = int32(d.u32())
	p.RepaidYears = int32(d.u32())
	p.ContinuousYears = int32(d.u32())
	p.ZeroClaimYears = int32(d.u32())
	p.AccountBalance = int64(d.u64())
	p.Groups = d.strings(p.Groups[:0])
	p.Conditions = d.strings(p.Conditions[:0])

	v := &in.Visit
	v.Type = VisitType(d.u8())
	v.Emergency = d.bool()
	v.BirthOrder = int32(d.u32())
	v.AdmittedOn = Date(d.u32())
	v.DischargedOn = Date(d.u32())
	v.VisitDate = Date(d.u32())
	v.Diagnoses = d.strings(v.Diagnoses[:0])

	h := &in.Hospital
	h.Level = d.u8()
	h.AssistanceDesignated = d.bool()
	h.Offsite = d.bool()
	h.TreatingRegion = d.str()
	h.InsuredRegion = d.str()

	s := &in.Sums
	s.Total = int64(d.u64())
	s.FullSelfPay = int64(d.u64())
	s.OverLimit = int64(d.u64())
	s.PreSelfPay = int64(d.u64())
	s.Eligible = int64(d.u64())

	n := d.count("lines", MaxLines, 2+1+1+5*8)
	lines := in.Lines[:0]
	for i := 0; i < n && d.err == nil; i++ {
		if d.line(&lines) {
			continue
		}
		// Not a whole, valid line: read it field by field for the error.
		var l Line
		l.Code = d.str()
		l.Class = Class(d.u8())
		l.Listed = d.bool()
		l.Amount = int64(d.u64())
		l.FullSelfPay = int64(d.u64())
		l.OverLimit = int64(d.u64())
		l.PreSelfPay = int64(d.u64())
		l.Eligible = int64(d.u64())
		lines = append(lines, l)
	}
	in.Lines = lines
	in.Counters = d.counters("counters", in.Counters[:0])
	return d.finish()
}

// AppendBinary appends the encoding of o to b (see ABI.md, "Output").
func (o *Output) AppendBinary(b []byte) []byte {
	b = le.AppendUint32(b, Version)
	b = appendString(b, o.Refusal)
	b = le.AppendUint64(b, uint64(o.Deductible))
	b = le.AppendUint64(b, uint64(o.Basic))
	b = le.AppendUint64(b, uint64(o.Serious))
	b = le.AppendUint64(b, uint64(o.Assistance))
	b = le.AppendUint64(b, uint64(o.Account))
	b = appendCounters(b, o.Changes)
	b = le.AppendUint32(b, uint32(len(o.Notes)))
	for _, s := range o.Notes {
		b = appendString(b, s)
	}
	return b
}

// Decode parses data into o, reusing o's slices. On error o is unspecified.
func (o *Output) Decode(data []byte) error {
	d := decoder{b: data}
	if d.u32() != Version && d.err == nil {
		return ErrVersion
	}
	o.Refusal = d.str()
	o.Deductible = int64(d.u64())
	o.Basic = int64(d.u64())
	o.Serious = int64(d.u64())
	o.Assistance = int64(d.u64())
	o.Account = int64(d.u64())
	o.Changes = d.counters("changes", o.Changes[:0])
	n := d.count("notes", MaxNotes, 2)
	notes := o.Notes[:0]
	for i := 0; i < n && d.err == nil; i++ {
		notes = append(notes, d.str())
	}
	o.Notes = notes
	return d.finish()
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, s string) []byte {
	if len(s) > MaxString {
		s = s[:MaxString]
	}
	b = le.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, list []string) []byte {
	b = le.AppendUint16(b, uint16(len(list)))
	for _, s := range list {
		b = appendString(b, s)
	}
	return b
}

func appendCounters(b []byte, list []Counter) []byte {
	b = le.AppendUint32(b, uint32(len(list)))
	for _, c := range list {
		b = appendString(b, c.Name)
		b = le.AppendUint64(b, uint64(c.Value))
	}
	return b
}

// line decodes a bill line and appends it to lines when the whole line is
// there and valid, with one length check instead of one per field: a bill has
// dozens of lines, and in a wasip1 guest each call of the per-field readers
// costs far more than natively. It reports false, having read nothing, for
// anything else.
func (d *decoder) line(lines *[]Line) bool {
	const fixed = 1 + 1 + 5*8
	b := d.b
	if len(b) < 2 {
		return false
	}
	n := int(le.Uint16(b))
	if n > MaxString || len(b) < 2+n+fixed || b[2+n+1] > 1 {
		return false
	}
	code, f := b[2:2+n], b[2+n:2+n+fixed]
	*lines = append(*lines, Line{
		Class:       Class(f[0]),
		Listed:      f[1] == 1,
		Amount:      int64(le.Uint64(f[2:])),
		FullSelfPay: int64(le.Uint64(f[10:])),
		OverLimit:   int64(le.Uint64(f[18:])),
		PreSelfPay:  int64(le.Uint64(f[26:])),
		Eligible:    int64(le.Uint64(f[34:])),
	})
	(*lines)[len(*lines)-1].Code = d.string(code)
	d.b = b[2+n+fixed:]
	return true
}

// decoder reads little-endian values; the first error sticks and every later
// read returns a zero value, so callers check once at the end.
type decoder struct {
	b      []byte
	err    error
	shared bool // strings alias b instead of being copied
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = ErrTruncated
		d.b = nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

// bool reads a byte that must be 0 or 1.
func (d *decoder) bool() bool {
	v := d.u8()
	if v > 1 && d.err == nil {
		d.err = ErrBool
	}
	return v == 1
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return le.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return le.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return le.Uint64(v)
	}
	return 0
}

func (d *decoder) str() string {
	n := int(d.u16())
	if n > MaxString && d.err == nil {
		d.err = &LimitError{What: "string", N: n, Max: MaxString}
	}
	return d.string(d.take(n))
}

// string is b as a string: aliasing the message when shared, else a copy.
func (d *decoder) string(b []byte) string {
	if d.shared && len(b) > 0 {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}

// count reads a u32 element count of what, refusing more than max elements
// or more than the remaining bytes could hold at minSize bytes each.
func (d *decoder) count(what string, max, minSize int) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if n > uint32(max) || uint64(n)*uint64(minSize) > uint64(len(d.b)) {
		if n > uint32(max) {
			d.err = &LimitError{What: what, N: int(min(n, 1<<31-1)), Max: max}
		} else {
			d.err = ErrTruncated
		}
		return 0
	}
	return int(n)
}

func (d *decoder) strings(dst []string) []string {
	n := int(d.u16())
	if n > MaxStrings && d.err == nil {
		d.err = &LimitError{What: "strings", N: n, Max: MaxStrings}
	}
	for i := 0; i < n && d.err == nil; i++ {
		dst = append(dst, d.str())
	}
	return dst
}

func (d *decoder) counters(what string, dst []Counter) []Counter {
	n := d.count(what, MaxCounters, 2+8)
	for i := 0; i < n && d.err == nil; i++ {
		name := d.str()
		dst = append(dst, Counter{Name: name, Value: int64(d.u64())})
	}
	return dst
}

func (d *decoder) finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return ErrTrailing
	}
	return nil
}

// ValidName reports whether s is a well-formed counter name.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AddChecked returns a+b, or false when the sum overflows int64.
func AddChecked(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}
