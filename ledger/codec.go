package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"medgate/engine/abi"
)

// EntryFormat is the format of the entries Append writes, the first byte of
// their encoding. Entries of format 1 are still read, and re-encode as
// format 1 (their hash covers those bytes).
const EntryFormat = 2

// entryFormat1 stored the policy input as its ABI bytes and the bill's
// lines a second time; format 2 stores both once.
const entryFormat1 = 1

// MaxEntrySize bounds an encoded entry; Append refuses larger entries and
// DecodeEntry refuses larger input.
const MaxEntrySize = 16 << 20

// Entry encoding, format 2 (all integers are minimal varints: "u" unsigned,
// "s" zigzag signed; "str" is a u length and the bytes; "h" 32 raw bytes):
//
//	byte 2 | u Seq | byte Kind | str SettlementID | str Reverses | str RequestID
//	h BodyHash | str Hospital | str TreatingRegion | str InsuredRegion
//	str PersonID | s CommittedAt | s Date | byte VisitType | str PolicyVersion
//	h ModuleSHA256
//	byte InputForm: 0 no Input | 1 compact input (codec_input.go) | 2 str Input
//	h InputHash | 13 × s Amounts (field order)
//	byte LinesForm: 0 listed: u #Lines, each: str Code, byte Class,
//	  byte Listed (0/1), s Amount, s FullSelfPay, s OverLimit, s PreSelfPay,
//	  s Eligible | 1 the lines of the compact input
//	u #Changes, each: str Name, s Value
//	s BalanceChange
//	credits and opening balances (Kind 3, 4) only: s BalanceAfter,
//	  byte Migrated (0/1)
//	u #TraceCodes, str each | u #Notes, str each
//	h PrevHash
//	--- the "body" ends here ---
//	h Hash = sha256(PrevHash || body)
//
// Input is compact exactly when it is a valid ABI input (what the gateway
// always stores for a settlement), and the lines come from it exactly when
// they equal its lines (a settlement's always do): the input is stored
// once, at about a third of its ABI size, and the lines are not repeated.
// Format 1 is format 2 with "str Input" in place of the InputForm and the
// listed lines without the LinesForm byte, and has no credits or opening
// balances (they are always written in format 2).
//
// The decoder is strict (minimal varints, booleans 0/1, no trailing bytes,
// each form only where the encoder would choose it), so an accepted
// encoding re-encodes to the same bytes.

// AppendEntry appends the canonical encoding of e (Hash included, last) to b.
func AppendEntry(b []byte, e *Entry) []byte {
	b = appendEntryBody(b, e)
	return append(b, e.Hash[:]...)
}

// EntryHash is the hash of an entry whose canonical body (its encoding
// without the trailing Hash) is body.
func EntryHash(prev [32]byte, body []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func appendEntryBody(b []byte, e *Entry) []byte {
	var in abi.Input
	return appendEntryBodyIn(b, e, &in)
}

// appendEntryBodyIn is appendEntryBody with in as scratch space for the
// decoded policy input (the writer reuses one).
func appendEntryBodyIn(b []byte, e *Entry, in *abi.Input) []byte {
	format := e.format
	if format == 0 {
		format = EntryFormat
	}
	if format == entryFormat1 {
		return appendEntryBodyForms(b, e, format, nil, 0, linesListed)
	}
	inputForm, linesForm := byte(inputNone), byte(linesListed)
	switch {
	case len(e.Input) == 0:
	case in.DecodeShared(e.Input) == nil:
		inputForm = inputCompact
		if sameLines(e.Lines, in.Lines) {
			linesForm = linesFromInput
		}
	default:
		inputForm = inputRaw
	}
	return appendEntryBodyForms(b, e, format, in, inputForm, linesForm)
}

// appendEntryBodyForms appends e's body in the given format and, for
// format 2, forms; in is e.Input decoded when inputForm is inputCompact.
// Only appendEntryBodyIn chooses the forms (tests force others, to check
// that the decoder refuses them).
func appendEntryBodyForms(b []byte, e *Entry, format byte, in *abi.Input, inputForm, linesForm byte) []byte {
	b = append(b, format)
	b = binary.AppendUvarint(b, e.Seq)
	b = append(b, byte(e.Kind))
	b = appendStr(b, e.SettlementID)
	b = appendStr(b, e.Reverses)
	b = appendStr(b, e.RequestID)
	b = append(b, e.BodyHash[:]...)
	b = appendStr(b, e.Hospital)
	b = appendStr(b, e.TreatingRegion)
	b = appendStr(b, e.InsuredRegion)
	b = appendStr(b, e.PersonID)
	b = binary.AppendVarint(b, e.CommittedAt)
	b = binary.AppendVarint(b, int64(e.Date))
	b = append(b, byte(e.VisitType))
	b = appendStr(b, e.PolicyVersion)
	b = append(b, e.ModuleSHA256[:]...)
	if format == entryFormat1 {
		b = appendBytes(b, e.Input)
	} else {
		b = append(b, inputForm)
		switch inputForm {
		case inputCompact:
			b = appendCompactInput(b, in)
		case inputRaw:
			b = appendBytes(b, e.Input)
		}
	}
	b = append(b, e.InputHash[:]...)
	a := &e.Amounts
	for _, v := range [...]int64{a.Total, a.FullSelfPay, a.OverLimit, a.PreSelfPay,
		a.Eligible, a.Deductible, a.BasicFund, a.SeriousIllness, a.MedicalAssistance,
		a.FundTotal, a.PersonalAccount, a.Cash, a.PersonalTotal} {
		b = binary.AppendVarint(b, v)
	}
	if format != entryFormat1 {
		b = append(b, linesForm)
	}
	if linesForm == linesListed {
		b = binary.AppendUvarint(b, uint64(len(e.Lines)))
		for i := range e.Lines {
			b = appendLine(b, &e.Lines[i])
		}
	}
	b = binary.AppendUvarint(b, uint64(len(e.Changes)))
	for i := range e.Changes {
		b = appendStr(b, e.Changes[i].Name)
		b = binary.AppendVarint(b, e.Changes[i].Value)
	}
	b = binary.AppendVarint(b, e.BalanceChange)
	if e.Kind.movesBalanceOnly() {
		b = binary.AppendVarint(b, e.BalanceAfter)
		b = appendBool(b, e.Migrated)
	}
	b = appendStrs(b, e.TraceCodes)
	b = appendStrs(b, e.Notes)
	b = append(b, e.PrevHash[:]...)
	return b
}

// DecodeEntry decodes an encoding made by AppendEntry into e, overwriting
// every field. It refuses truncated, oversized, trailing or non-canonical
// input with an error wrapping ErrCorrupt, and never panics. The decoded
// entry shares no memory with data.
func DecodeEntry(data []byte, e *Entry) error {
	if len(data) > MaxEntrySize {
		return fmt.Errorf("%w: entry of %d bytes exceeds the limit", ErrCorrupt, len(data))
	}
	if len(data) == 0 {
		return fmt.Errorf("%w: empty entry", ErrCorrupt)
	}
	format := data[0]
	if format != EntryFormat && format != entryFormat1 {
		return fmt.Errorf("%w: unknown entry format %d", ErrCorrupt, data[0])
	}
	// All strings are substrings of one copy of data: one allocation.
	d := decoder{b: data, s: string(data), off: 1}
	*e = Entry{format: format}
	e.Seq = d.uvarint()
	e.Kind = Kind(d.byte())
	e.SettlementID = d.str()
	e.Reverses = d.str()
	e.RequestID = d.str()
	e.BodyHash = d.hash()
	e.Hospital = d.str()
	e.TreatingRegion = d.str()
	e.InsuredRegion = d.str()
	e.PersonID = d.str()
	e.CommittedAt = d.varint()
	e.Date = abi.Date(d.int32())
	e.VisitType = abi.VisitType(d.byte())
	e.PolicyVersion = d.str()
	e.ModuleSHA256 = d.hash()
	var compact abi.Input
	var in *abi.Input // &compact, when the input is compact
	if format == entryFormat1 {
		if raw := d.raw(); len(raw) > 0 {
			e.Input = append([]byte(nil), raw...)
		}
	} else {
		switch d.byte() {
		case inputNone:
		case inputCompact:
			in = &compact
			d.compactInput(in)
			if d.err == nil {
				e.Input = in.AppendBinary(make([]byte, 0, in.Size()))
			}
		case inputRaw:
			raw := d.raw()
			var check abi.Input
			if len(raw) == 0 || check.DecodeShared(raw) == nil {
				d.fail("input stored raw that is empty or an ABI input")
			}
			e.Input = append([]byte(nil), raw...)
		default:
			d.fail("bad input form")
		}
	}
	e.InputHash = d.hash()
	a := &e.Amounts
	for _, p := range [...]*int64{&a.Total, &a.FullSelfPay, &a.OverLimit, &a.PreSelfPay,
		&a.Eligible, &a.Deductible, &a.BasicFund, &a.SeriousIllness, &a.MedicalAssistance,
		&a.FundTotal, &a.PersonalAccount, &a.Cash, &a.PersonalTotal} {
		*p = d.varint()
	}
	linesForm := byte(linesListed)
	if format != entryFormat1 {
		linesForm = d.byte()
	}
	switch {
	case linesForm == linesFromInput && in != nil:
		if len(in.Lines) > 0 {
			e.Lines = make([]Line, len(in.Lines))
			for i := range in.Lines {
				e.Lines[i] = Line(in.Lines[i])
			}
		}
	case linesForm == linesListed:
		if n := d.count(lineMinSize); n > 0 {
			e.Lines = make([]Line, n)
			for i := range e.Lines {
				d.line(&e.Lines[i])
			}
		}
		if in != nil && d.err == nil && sameLines(e.Lines, in.Lines) {
			d.fail("lines listed that are the input's")
		}
	default:
		d.fail("bad lines form")
	}
	if n := d.count(2); n > 0 {
		e.Changes = make([]abi.Counter, n)
		for i := range e.Changes {
			e.Changes[i].Name = d.str()
			e.Changes[i].Value = d.varint()
		}
	}
	e.BalanceChange = d.varint()
	if e.Kind.movesBalanceOnly() {
		if format == entryFormat1 {
			d.fail("a credit or opening balance in format 1")
		}
		e.BalanceAfter = d.varint()
		e.Migrated = d.bool()
	}
	e.TraceCodes = d.strs()
	e.Notes = d.strs()
	e.PrevHash = d.hash()
	e.Hash = d.hash()
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		*e = Entry{}
		return d.err
	}
	return nil
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrs(b []byte, list []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, s := range list {
		b = appendStr(b, s)
	}
	return b
}

func appendVarint(b []byte, v int64) []byte   { return binary.AppendVarint(b, v) }
func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// lineMinSize is the least a listed line takes: an empty code, class,
// Listed and five one-byte varints.
const lineMinSize = 1 + 1 + 1 + 5

func appendLine(b []byte, l *Line) []byte {
	b = appendStr(b, l.Code)
	b = append(b, byte(l.Class))
	b = appendBool(b, l.Listed)
	b = binary.AppendVarint(b, l.Amount)
	b = binary.AppendVarint(b, l.FullSelfPay)
	b = binary.AppendVarint(b, l.OverLimit)
	b = binary.AppendVarint(b, l.PreSelfPay)
	return binary.AppendVarint(b, l.Eligible)
}

func (d *decoder) line(l *Line) {
	l.Code = d.str()
	l.Class = abi.Class(d.byte())
	l.Listed = d.bool()
	l.Amount = d.varint()
	l.FullSelfPay = d.varint()
	l.OverLimit = d.varint()
	l.PreSelfPay = d.varint()
	l.Eligible = d.varint()
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// decoder reads the encodings of this package. The first error sticks; every
// read after it returns a zero value.
type decoder struct {
	b   []byte
	s   string // when set, a string copy of b that str() slices from
	off int
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrCorrupt, msg, d.off)
	}
	d.off = len(d.b)
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("truncated")
		return nil
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

func (d *decoder) byte() byte {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad boolean")
	return false
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		if n == 0 {
			d.fail("truncated")
		} else {
			d.fail("varint overflow")
		}
		return 0
	}
	if n > 1 && d.b[d.off+n-1] == 0 {
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *decoder) int32() int32 {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("int32 out of range")
		return 0
	}
	return int32(v)
}

func (d *decoder) hash() (h [32]byte) {
	copy(h[:], d.take(32))
	return h
}

// raw reads a length-prefixed byte string, without copying.
func (d *decoder) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.off) {
		d.fail("truncated")
		return nil
	}
	return d.take(int(n))
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.off) {
		d.fail("truncated")
		return ""
	}
	start := d.off
	p := d.take(int(n))
	if len(p) == 0 {
		return ""
	}
	if d.s != "" {
		return d.s[start : start+int(n)]
	}
	return string(p)
}

// count reads an element count, refusing counts that cannot fit in the
// remaining input given each element's minimal size.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if n > uint64((len(d.b)-d.off)/minSize) {
		d.fail("count exceeds input")
		return 0
	}
	return int(n)
}

func (d *decoder) strs() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	list := make([]string, n)
	for i := range list {
		list[i] = d.str()
	}
	return list
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	return d.err
}

// --- small values ---------------------------------------------------------

// Idempotency value: h BodyHash, 8-byte big-endian seq.
func appendIdemValue(b []byte, bodyHash [32]byte, seq uint64) []byte {
	b = append(b, bodyHash[:]...)
	return be.AppendUint64(b, seq)
}

func decodeIdemValue(v []byte) (Idem, error) {
	if len(v) != 40 {
		return Idem{}, fmt.Errorf("%w: idempotency record of %d bytes", ErrCorrupt, len(v))
	}
	var id Idem
	copy(id.BodyHash[:], v[:32])
	id.Seq = be.Uint64(v[32:])
	return id, nil
}

// Trace-code value: 8-byte owner seq, 8-byte seq of the reversal that freed
// it (0 while in use).
// A trace code's record is its owner's seq (8 bytes) while the code is in
// use, and the owner's and then the freeing reversal's seq (16 bytes) once
// freed. In-use records are nearly all of them, and most of the ledger's
// table bytes (bench/RESULTS.md): the 8 zero bytes they used to carry were
// an eighth of what compactions rewrite. Records written as 16 bytes with
// a zero second half (by earlier versions) still mean "in use".
func appendTraceValue(b []byte, owner, freedBy uint64) []byte {
	b = be.AppendUint64(b, owner)
	if freedBy == 0 {
		return b
	}
	return be.AppendUint64(b, freedBy)
}

func decodeTraceValue(v []byte) (owner, freedBy uint64, err error) {
	switch len(v) {
	case 8:
		return be.Uint64(v), 0, nil
	case 16:
		return be.Uint64(v), be.Uint64(v[8:]), nil
	}
	return 0, 0, fmt.Errorf("%w: trace code record of %d bytes", ErrCorrupt, len(v))
}

func decodeSeqValue(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: seq record of %d bytes", ErrCorrupt, len(v))
	}
	return be.Uint64(v), nil
}

// Head value: 8-byte seq, 32-byte hash.
func decodeHead(v []byte) (uint64, [32]byte, error) {
	var h [32]byte
	if len(v) != 40 {
		return 0, h, fmt.Errorf("%w: head record of %d bytes", ErrCorrupt, len(v))
	}
	copy(h[:], v[8:])
	return be.Uint64(v), h, nil
}

// Balance value: 8-byte big-endian two's complement.
func decodeBalance(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: balance record of %d bytes", ErrCorrupt, len(v))
	}
	return int64(be.Uint64(v)), nil
}

// Counters blob: u count, then per counter (sorted by name, no zero values):
// str name, u value.
func appendCounters(b []byte, cs []abi.Counter) []byte {
	b = binary.AppendUvarint(b, uint64(len(cs)))
	for i := range cs {
		b = appendStr(b, cs[i].Name)
		b = binary.AppendUvarint(b, uint64(cs[i].Value))
	}
	return b
}

var errCounterBlob = errors.New("ledger: corrupt counters record")

// walkCounters calls fn for each counter of a blob, with the name's bytes
// (valid only during the call).
func walkCounters(v []byte, fn func(name []byte, value int64)) error {
	d := decoder{b: v}
	n := d.count(2)
	for i := 0; i < n && d.err == nil; i++ {
		nl := d.uvarint()
		name := d.take(int(min(nl, uint64(len(d.b)))))
		val := d.uvarint()
		if d.err == nil {
			if val > math.MaxInt64 {
				d.fail("counter overflow")
				break
			}
			fn(name, int64(val))
		}
	}
	if err := d.finish(); err != nil {
		return fmt.Errorf("%w: %v", errCounterBlob, err)
	}
	return nil
}

// Hospital value: byte 1, str Region, byte Level, byte AssistanceDesignated.
func appendHospital(b []byte, h *Hospital) []byte {
	b = append(b, 1)
	b = appendStr(b, h.Region)
	b = append(b, h.Level)
	return appendBool(b, h.AssistanceDesignated)
}

func decodeHospital(id string, v []byte) (Hospital, error) {
	d := decoder{b: v}
	if d.byte() != 1 {
		return Hospital{}, fmt.Errorf("%w: hospital record version", ErrCorrupt)
	}
	h := Hospital{ID: id}
	h.Region = d.str()
	h.Level = d.byte()
	h.AssistanceDesignated = d.bool()
	return h, d.finish()
}

// Catalog value: byte 1, byte Class, s SelfpayProp, s PriceCap, byte
// HasPriceCap. The code is the key's suffix.
func appendCatalogEntry(b []byte, c *CatalogEntry) []byte {
	b = append(b, 1, byte(c.Class))
	b = binary.AppendVarint(b, c.SelfpayProp)
	b = binary.AppendVarint(b, c.PriceCap)
	return appendBool(b, c.HasPriceCap)
}

func decodeCatalogEntry(code string, v []byte) (CatalogEntry, error) {
	d := decoder{b: v}
	if d.byte() != 1 {
		return CatalogEntry{}, fmt.Errorf("%w: catalog record version", ErrCorrupt)
	}
	c := CatalogEntry{Code: code}
	c.Class = abi.Class(d.byte())
	c.SelfpayProp = d.varint()
	c.PriceCap = d.varint()
	c.HasPriceCap = d.bool()
	return c, d.finish()
}

// Person value: byte 1, str ID, str Region, byte Scheme, byte Employment,
// byte Registration, byte InConcentratedPeriod, s EnrolledOn, s LapsedYears,
// s RepaidYears, s ContinuousYears, s ZeroClaimYears, u #Groups, str each,
// u #Conditions, str each, s OpeningBalance. Facts.AccountBalance is not
// stored (see Balance).
func appendPerson(b []byte, p *Person) []byte {
	b = append(b, 1)
	b = appendStr(b, p.ID)
	b = appendStr(b, p.Region)
	f := &p.Facts
	b = appendPersonFacts(b, f)
	b = appendStrs(b, f.Groups)
	b = appendStrs(b, f.Conditions)
	return binary.AppendVarint(b, p.OpeningBalance)
}

// appendPersonFacts appends the fixed fields of a person's facts, Scheme
// to ZeroClaimYears (a person record and a compact input share them):
// byte Scheme | byte Employment | byte Registration |
// byte InConcentratedPeriod | s EnrolledOn | s LapsedYears | s RepaidYears |
// s ContinuousYears | s ZeroClaimYears.
func appendPersonFacts(b []byte, f *abi.Person) []byte {
	b = append(b, byte(f.Scheme), byte(f.Employment), byte(f.Registration))
	b = appendBool(b, f.InConcentratedPeriod)
	for _, v := range [...]int32{int32(f.EnrolledOn), f.LapsedYears, f.RepaidYears, f.ContinuousYears, f.ZeroClaimYears} {
		b = binary.AppendVarint(b, int64(v))
	}
	return b
}

// personFacts reads what appendPersonFacts wrote into f.
func (d *decoder) personFacts(f *abi.Person) {
	f.Scheme = abi.Scheme(d.byte())
	f.Employment = abi.Employment(d.byte())
	f.Registration = abi.Registration(d.byte())
	f.InConcentratedPeriod = d.bool()
	f.EnrolledOn = abi.Date(d.int32())
	f.LapsedYears = d.int32()
	f.RepaidYears = d.int32()
	f.ContinuousYears = d.int32()
	f.ZeroClaimYears = d.int32()
}

func decodePerson(v []byte) (Person, error) {
	d := decoder{b: v}
	if d.byte() != 1 {
		return Person{}, fmt.Errorf("%w: person record version", ErrCorrupt)
	}
	var p Person
	p.ID = d.str()
	p.Region = d.str()
	f := &p.Facts
	d.personFacts(f)
	f.Groups = d.strs()
	f.Conditions = d.strs()
	p.OpeningBalance = d.varint()
	if err := d.finish(); err != nil {
		return Person{}, err
	}
	return p, nil
}
