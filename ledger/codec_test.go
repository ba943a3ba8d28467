package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"medgate/engine/abi"
)

func sampleEntry() *Entry {
	e := settlement("20261123-000042", "152500198001011234", 20261109,
		[]abi.Counter{{Name: "admissions", Value: 1}, {Name: "basic.paid", Value: 123456}}, -5000,
		"83912345678901234567", "83912345678901234568")
	e.Seq = 1042
	e.SettlementID = SettlementID(1042)
	e.CommittedAt = 1_790_000_000_123456789
	e.PrevHash = sha256.Sum256([]byte("prev"))
	e.Input = bytes.Repeat([]byte{0xab, 0x01, 0x00}, 400)
	for i := 0; i < 10; i++ {
		e.Lines = append(e.Lines, Line{Code: "XA10BAA00" + string(rune('0'+i)), Class: abi.ClassB, Listed: true,
			Amount: 12345, PreSelfPay: 1234, Eligible: 11111})
	}
	e.Hash = EntryHash(e.PrevHash, appendEntryBody(nil, e))
	return e
}

func TestEntryCodecRoundTrip(t *testing.T) {
	for _, e := range []*Entry{sampleEntry(), {}, {Kind: KindReversal, Reverses: "S000000000001", BalanceChange: -1, CommittedAt: -5, Date: -20260101}} {
		enc := AppendEntry(nil, e)
		if enc[0] != EntryFormat {
			t.Fatal("no version byte")
		}
		var got Entry
		if err := DecodeEntry(enc, &got); err != nil {
			t.Fatal(err)
		}
		sameEntry(t, &got, e)
		if again := AppendEntry(nil, &got); !bytes.Equal(again, enc) {
			t.Fatal("encoding not canonical")
		}
		// The body is the encoding minus the trailing hash.
		if !bytes.Equal(appendEntryBody(nil, e), enc[:len(enc)-32]) {
			t.Fatal("body is not a prefix")
		}
		// Every truncation is refused.
		for n := 0; n < len(enc); n++ {
			if err := DecodeEntry(enc[:n], &got); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated to %d: %v", n, err)
			}
		}
		if err := DecodeEntry(append(enc, 0), &got); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
}

func TestEntryDecodeRefuses(t *testing.T) {
	var e Entry
	enc := AppendEntry(nil, sampleEntry())
	bad := append([]byte(nil), enc...)
	for _, f := range []byte{0, 3, 255} {
		bad[0] = f
		if err := DecodeEntry(bad, &e); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("format %d: %v", f, err)
		}
	}
	// Non-minimal varint for Seq (1042 = 0x92 0x08 → 0x92 0x88 0x00).
	bad = append([]byte{1, 0x92, 0x88, 0x00}, enc[3:]...)
	if err := DecodeEntry(bad, &e); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("non-minimal varint: %v", err)
	}
	// A huge count must not allocate: refused up front.
	huge := []byte{1, 1, 1}
	for i := 0; i < 4; i++ {
		huge = binary.AppendUvarint(huge, 0) // strings
	}
	huge = append(huge, make([]byte, 32)...)
	for i := 0; i < 4; i++ {
		huge = binary.AppendUvarint(huge, 0)
	}
	huge = append(huge, 0, 0, 0, 0)
	huge = append(huge, make([]byte, 32)...)
	huge = binary.AppendUvarint(huge, 0)
	huge = append(huge, make([]byte, 32)...)
	huge = append(huge, make([]byte, 13)...)
	huge = binary.AppendUvarint(huge, 1<<40) // lines
	if err := DecodeEntry(huge, &e); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge count: %v", err)
	}
	if err := DecodeEntry(make([]byte, MaxEntrySize+1), &e); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("oversized: %v", err)
	}
	if err := DecodeEntry(nil, &e); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty: %v", err)
	}
}

func TestDecodedEntrySharesNoMemory(t *testing.T) {
	enc := AppendEntry(nil, sampleEntry())
	var e Entry
	if err := DecodeEntry(enc, &e); err != nil {
		t.Fatal(err)
	}
	want := normalize(e)
	want.Input = append([]byte(nil), e.Input...)
	for i := range enc {
		enc[i] = 0xff
	}
	sameEntry(t, &e, &want)
}

func TestOtherCodecs(t *testing.T) {
	p := person("P1", 1234)
	p.Facts.Conditions = []string{"diabetes"}
	p.Facts.EnrolledOn = 20250310
	got, err := decodePerson(appendPerson(nil, &p))
	if err != nil || got.ID != "P1" || got.OpeningBalance != 1234 || got.Facts.Conditions[0] != "diabetes" || got.Facts.EnrolledOn != 20250310 {
		t.Fatalf("person = %+v %v", got, err)
	}
	h := Hospital{ID: "H", Region: "370102", Level: 3, AssistanceDesignated: true}
	if got, err := decodeHospital("H", appendHospital(nil, &h)); err != nil || got != h {
		t.Fatalf("hospital = %+v %v", got, err)
	}
	c := CatalogEntry{Code: "X", Class: abi.ClassB, SelfpayProp: 1000, PriceCap: -1, HasPriceCap: true}
	if got, err := decodeCatalogEntry("X", appendCatalogEntry(nil, &c)); err != nil || got != c {
		t.Fatalf("catalog = %+v %v", got, err)
	}
	blob := appendCounters(nil, []abi.Counter{{Name: "a", Value: 1}, {Name: "b", Value: 1 << 62}})
	var cs []abi.Counter
	if err := walkCounters(blob, func(n []byte, v int64) { cs = append(cs, abi.Counter{Name: string(n), Value: v}) }); err != nil || len(cs) != 2 || cs[1].Value != 1<<62 {
		t.Fatalf("counters = %v %v", cs, err)
	}
	for n := 1; n < len(blob); n++ {
		if err := walkCounters(blob[:n], func([]byte, int64) {}); err == nil {
			t.Fatalf("truncated counters blob of %d bytes accepted", n)
		}
	}
}

// A trace code's record: 8 bytes while in use, 16 once freed, and the
// 16-byte in-use records of earlier versions still read as in use.
func TestTraceValue(t *testing.T) {
	if v := appendTraceValue(nil, 7, 0); len(v) != 8 {
		t.Fatalf("in-use record of %d bytes, want 8", len(v))
	}
	old := append(be.AppendUint64(nil, 7), make([]byte, 8)...)
	for _, c := range []struct {
		name         string
		v            []byte
		owner, freed uint64
	}{
		{"in use", appendTraceValue(nil, 7, 0), 7, 0},
		{"freed", appendTraceValue(nil, 7, 9), 7, 9},
		{"in use, written by an earlier version", old, 7, 0},
	} {
		owner, freed, err := decodeTraceValue(c.v)
		if err != nil || owner != c.owner || freed != c.freed {
			t.Errorf("%s: decode = %d, %d, %v; want %d, %d", c.name, owner, freed, err, c.owner, c.freed)
		}
	}
	for _, n := range []int{0, 7, 9, 15, 17, 24} {
		if _, _, err := decodeTraceValue(make([]byte, n)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("a record of %d bytes: err = %v, want ErrCorrupt", n, err)
		}
	}
}

// FuzzEntryCodec: decode(encode(x)) == x for entries built from the fuzz
// input, and DecodeEntry never panics on arbitrary bytes; whatever it
// accepts re-encodes to the same bytes.
func FuzzEntryCodec(f *testing.F) {
	f.Add(AppendEntry(nil, sampleEntry()))
	f.Add(AppendEntry(nil, &Entry{}))
	f.Add([]byte{1})
	f.Add([]byte{2})
	f.Add([]byte{})
	f.Add([]byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Arbitrary bytes.
		var e Entry
		if err := DecodeEntry(data, &e); err == nil {
			if again := AppendEntry(nil, &e); !bytes.Equal(again, data) {
				t.Fatalf("accepted non-canonical input\n in  %x\n out %x", data, again)
			}
		}
		// A valid entry derived from the bytes.
		x := entryFromBytes(data)
		enc := AppendEntry(nil, x)
		var y Entry
		if err := DecodeEntry(enc, &y); err != nil {
			t.Fatalf("decode(encode(x)): %v", err)
		}
		sameEntry(t, &y, x)
	})
}

// entryFromBytes fills an Entry's fields from data, deterministically.
func entryFromBytes(data []byte) *Entry {
	r := fuzzReader{b: data}
	e := &Entry{
		Seq: r.u64(), Kind: Kind(r.byte()), SettlementID: r.str(), Reverses: r.str(),
		RequestID: r.str(), Hospital: r.str(), TreatingRegion: r.str(), InsuredRegion: r.str(),
		PersonID: r.str(), CommittedAt: int64(r.u64()), Date: abi.Date(r.u64()),
		VisitType: abi.VisitType(r.byte()), PolicyVersion: r.str(), BalanceChange: int64(r.u64()),
	}
	copy(e.BodyHash[:], r.str())
	copy(e.ModuleSHA256[:], r.str())
	copy(e.InputHash[:], r.str())
	copy(e.PrevHash[:], r.str())
	copy(e.Hash[:], r.str())
	e.Input = []byte(r.str())
	a := &e.Amounts
	a.Total, a.Cash, a.PersonalTotal, a.BasicFund = int64(r.u64()), int64(r.u64()), -int64(r.u64()), int64(r.u64())
	for n := int(r.byte() % 4); n > 0; n-- {
		e.Lines = append(e.Lines, Line{Code: r.str(), Class: abi.Class(r.byte()), Listed: r.byte()&1 == 1,
			Amount: int64(r.u64()), Eligible: -int64(r.u64()), OverLimit: int64(r.u64())})
	}
	for n := int(r.byte() % 4); n > 0; n-- {
		e.Changes = append(e.Changes, abi.Counter{Name: r.str(), Value: int64(r.u64())})
	}
	for n := int(r.byte() % 4); n > 0; n-- {
		e.TraceCodes = append(e.TraceCodes, r.str())
	}
	for n := int(r.byte() % 3); n > 0; n-- {
		e.Notes = append(e.Notes, r.str())
	}
	switch r.byte() % 4 {
	case 0: // the stored form of a settlement: an ABI input with its lines
		in := abi.Input{Date: abi.Date(r.u64()), UseAccount: r.byte()&1 == 1,
			Person:   abi.Person{Scheme: abi.Scheme(r.byte()), AccountBalance: int64(r.u64()), Groups: []string{r.str()}},
			Hospital: abi.Hospital{Level: r.byte(), TreatingRegion: r.str()},
			Sums:     abi.Sums{Total: int64(r.u64())}}
		for _, l := range e.Lines {
			in.Lines = append(in.Lines, abi.Line(l))
		}
		for n := int(r.byte() % 3); n > 0; n-- {
			in.Counters = append(in.Counters, abi.Counter{Name: r.str(), Value: int64(r.u64())})
		}
		e.Input = in.AppendBinary(nil)
		if r.byte()&1 == 1 && len(e.Lines) > 0 { // and lines of its own
			e.Lines[0].Amount++
		}
	case 1:
		// Format 1 was written before credits and opening balances were
		// entries: none of those is in format 1, and the decoder refuses
		// one (a format-1 record of such a kind is corrupt).
		if !e.Kind.movesBalanceOnly() {
			e.format = entryFormat1
		}
	}
	return e
}

type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzReader) u64() uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(r.byte())
	}
	return v
}

func (r *fuzzReader) str() string {
	n := int(r.byte() % 40)
	n = min(n, len(r.b))
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// TestEntryFormat1 reads an entry that the gateway wrote in format 1 (the
// prefill of a 10 M ledger at commit ad8ffd5): it decodes, re-encodes to
// the same bytes, and its hash still checks. Written again as a new entry
// it takes format 2, with the same fields and fewer bytes.
func TestEntryFormat1(t *testing.T) {
	enc, e := format1Settlement(t)
	if e.format != entryFormat1 || e.Kind != KindSettlement || len(e.Lines) == 0 {
		t.Fatalf("format %d, kind %d, %d lines", e.format, e.Kind, len(e.Lines))
	}
	if again := AppendEntry(nil, e); !bytes.Equal(again, enc) {
		t.Fatal("a format 1 entry does not re-encode to its bytes")
	}
	if EntryHash(e.PrevHash, enc[:len(enc)-32]) != e.Hash {
		t.Fatal("hash does not check")
	}
	var in abi.Input
	if err := in.Decode(e.Input); err != nil {
		t.Fatalf("the input is not an ABI input: %v", err)
	}
	if !sameLines(e.Lines, in.Lines) {
		t.Fatal("the lines are not the input's")
	}

	// As a new entry: format 2.
	n := *e
	n.format = 0
	n.Hash = EntryHash(n.PrevHash, appendEntryBody(nil, &n))
	enc2 := AppendEntry(nil, &n)
	if enc2[0] != EntryFormat || EntryFormat != 2 {
		t.Fatalf("new entry in format %d", enc2[0])
	}
	var got Entry
	if err := DecodeEntry(enc2, &got); err != nil {
		t.Fatal(err)
	}
	sameEntry(t, &got, &n)
	if !bytes.Equal(got.Input, e.Input) {
		t.Fatal("input bytes differ")
	}
	t.Logf("format 1: %d bytes; format 2: %d bytes (input %d bytes, %d lines)", len(enc), len(enc2), len(e.Input), len(e.Lines))
	if len(enc2) >= len(enc)*2/3 {
		t.Fatalf("format 2 is %d bytes against %d: not smaller by a third", len(enc2), len(enc))
	}
}

// format1Settlement is a settlement the gateway wrote in format 1 (12
// lines): its encoding and the entry.
func format1Settlement(tb testing.TB) ([]byte, *Entry) {
	tb.Helper()
	raw, err := os.ReadFile("testdata/entry-format1-settlement.hex")
	if err != nil {
		tb.Fatal(err)
	}
	enc, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		tb.Fatal(err)
	}
	e := new(Entry)
	if err := DecodeEntry(enc, e); err != nil {
		tb.Fatal(err)
	}
	return enc, e
}

// TestEntryForms checks that each entry takes the form the encoder must
// choose, and that the decoder refuses the others.
func TestEntryForms(t *testing.T) {
	abiEntry := settlement("r1", "P1", 20261109, nil, 0, "TC1")
	differentLines := settlement("r2", "P1", 20261109, nil, 0)
	differentLines.Lines = differentLines.Lines[:1]
	rawInput := settlement("r3", "P1", 20261109, nil, 0)
	rawInput.Input = []byte("not an ABI input")
	noInput := reversal("r4", abiEntry)
	noInput.Input = nil
	tooManyGroups := settlement("r5", "P1", 20261109, nil, 0)
	var big abi.Input
	if err := big.Decode(tooManyGroups.Input); err != nil {
		t.Fatal(err)
	}
	big.Person.Groups = make([]string, abi.MaxStrings+1)
	tooManyGroups.Input = big.AppendBinary(nil) // encodes, but no ABI decoder accepts it

	for _, c := range []struct {
		name             string
		e                *Entry
		input, lines     byte
		inputLen, noLine bool
	}{
		{"ABI input, its lines", abiEntry, inputCompact, linesFromInput, true, false},
		{"ABI input, other lines", differentLines, inputCompact, linesListed, true, false},
		{"raw input", rawInput, inputRaw, linesListed, true, false},
		{"an input no ABI decoder takes", tooManyGroups, inputRaw, linesListed, true, false},
		{"no input", noInput, inputNone, linesListed, false, false},
	} {
		enc := AppendEntry(nil, c.e)
		var got Entry
		if err := DecodeEntry(enc, &got); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		sameEntry(t, &got, c.e)
		var in abi.Input
		if c.input == inputCompact {
			if err := in.DecodeShared(c.e.Input); err != nil {
				t.Fatal(err)
			}
		}
		want := appendEntryBodyForms(nil, c.e, EntryFormat, &in, c.input, c.lines)
		if !bytes.Equal(enc[:len(enc)-32], want) {
			t.Errorf("%s: not encoded with input form %d, lines form %d", c.name, c.input, c.lines)
		}
	}

	// Forms the encoder would not choose.
	var in abi.Input
	if err := in.DecodeShared(abiEntry.Input); err != nil {
		t.Fatal(err)
	}
	var big2 abi.Input
	_ = big2.Decode(abiEntry.Input)
	big2.Person.Groups = make([]string, abi.MaxStrings+1)
	for _, c := range []struct {
		name         string
		e            *Entry
		in           *abi.Input
		input, lines byte
	}{
		{"lines listed that are the input's", abiEntry, &in, inputCompact, linesListed},
		{"an ABI input stored raw", abiEntry, nil, inputRaw, linesListed},
		{"an empty input stored raw", noInput, nil, inputRaw, linesListed},
		{"lines from a raw input", rawInput, nil, inputRaw, linesFromInput},
		{"lines from no input", noInput, nil, inputNone, linesFromInput},
		{"a compact input no ABI decoder takes", tooManyGroups, &big2, inputCompact, linesListed},
		{"an unknown input form", abiEntry, nil, 3, linesListed},
		{"an unknown lines form", abiEntry, &in, inputCompact, 2},
	} {
		enc := appendEntryBodyForms(nil, c.e, EntryFormat, c.in, c.input, c.lines)
		enc = append(enc, make([]byte, 32)...)
		var got Entry
		if err := DecodeEntry(enc, &got); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", c.name, err)
		}
	}
}

// TestCompactInputRoundTrip: every input an ABI decoder accepts goes to
// the compact form and back to its exact bytes, at its limits too.
func TestCompactInputRoundTrip(t *testing.T) {
	long := strings.Repeat("x", abi.MaxString)
	full := abi.Input{Date: -1, UseAccount: true,
		Person: abi.Person{Scheme: 255, Employment: 7, Registration: 3, InConcentratedPeriod: true,
			EnrolledOn: math.MinInt32, LapsedYears: math.MaxInt32, RepaidYears: -1, ContinuousYears: 40,
			ZeroClaimYears: 2, AccountBalance: math.MinInt64, Groups: make([]string, abi.MaxStrings), Conditions: []string{long}},
		Visit:    abi.Visit{Type: 9, Emergency: true, BirthOrder: 2, AdmittedOn: 20261101, DischargedOn: 20261109, VisitDate: math.MaxInt32, Diagnoses: []string{"I10", ""}},
		Hospital: abi.Hospital{Level: 255, AssistanceDesignated: true, Offsite: true, TreatingRegion: "370102", InsuredRegion: long},
		Sums:     abi.Sums{Total: math.MaxInt64, FullSelfPay: math.MinInt64, OverLimit: 1, PreSelfPay: -1, Eligible: 0},
		Counters: make([]abi.Counter, abi.MaxCounters)}
	for i := range full.Counters {
		full.Counters[i] = abi.Counter{Name: "c" + strconv.Itoa(i), Value: int64(i) - 128}
	}
	for i := 0; i < 300; i++ {
		full.Lines = append(full.Lines, abi.Line{Code: "XB" + strconv.Itoa(i), Class: abi.Class(i % 256), Listed: i%2 == 0,
			Amount: int64(i) << 40, FullSelfPay: -int64(i), OverLimit: math.MaxInt64, PreSelfPay: math.MinInt64})
	}
	for _, in := range []abi.Input{{}, full} {
		data := in.AppendBinary(nil)
		var dec abi.Input
		if err := dec.Decode(data); err != nil {
			t.Fatal(err)
		}
		c := appendCompactInput(nil, &dec)
		d := decoder{b: c, s: string(c)}
		var back abi.Input
		d.compactInput(&back)
		if err := d.finish(); err != nil {
			t.Fatal(err)
		}
		if got := back.AppendBinary(nil); !bytes.Equal(got, data) {
			t.Fatal("compact input does not give back the ABI bytes")
		}
		t.Logf("ABI %d bytes, compact %d", len(data), len(c))
	}
}

// TestMixedFormats: a ledger written in format 1 and carried on in format 2
// (an upgraded gateway) verifies and audits clean, before and after a
// reopen; a format 1 settlement is reversed by a format 2 entry; and an
// inclusion proof of a format 1 entry carries its own bytes.
func TestMixedFormats(t *testing.T) {
	fs := memFS()
	db, err := Open("d", testOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPersons([]Person{person("P1", 100000), person("P2", 100000)}); err != nil {
		t.Fatal(err)
	}
	writeFormat = entryFormat1
	old1 := settlement("r1", "P1", 20261109, []abi.Counter{{Name: "n", Value: 1}}, -300, "TC-1", "TC-2")
	mustAppend(t, db, old1)
	mustAppend(t, db, settlement("r2", "P2", 20261109, nil, 0, "TC-3"))
	writeFormat = 0
	t.Cleanup(func() { writeFormat = 0 })
	mustAppend(t, db, settlement("r3", "P2", 20261110, nil, -10, "TC-4"))
	mustAppend(t, db, reversal("r4", old1))
	mustAppend(t, db, settlement("r5", "P1", 20261111, nil, 0, "TC-1")) // freed by the reversal

	check := func(when string) {
		t.Helper()
		// Entries 1 and 2 are the opening balances (always format 2).
		for seq, want := range map[uint64]byte{1: 2, 2: 2, 3: 1, 4: 1, 5: 2, 6: 2, 7: 2} {
			if v := rawEntry(t, db, seq); v[0] != want {
				t.Fatalf("%s: entry %d stored in format %d, want %d", when, seq, v[0], want)
			}
		}
		if n, err := db.Verify(); err != nil || n != 7 {
			t.Fatalf("%s: Verify = %d, %v", when, n, err)
		}
		rep, err := db.Audit(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Err(); err != nil {
			t.Fatalf("%s: audit: %v", when, err)
		}
		got, err := db.Entry(3)
		if err != nil {
			t.Fatal(err)
		}
		sameEntry(t, got, old1)
		if c := counters(t, db, "P1", 2026); c["n"] != 0 {
			t.Fatalf("%s: counters after the reversal: %v", when, c)
		}
		if b := balance(t, db, "P1"); b != 100000 {
			t.Fatalf("%s: balance after the reversal: %d", when, b)
		}
		s, err := NewCheckpointSigner(DemoCheckpointSeed())
		if err != nil {
			t.Fatal(err)
		}
		doc, err := db.NewInclusionDoc(got, 0, s, testNow())
		if err != nil {
			t.Fatal(err)
		}
		v, err := ParseVerifier(s.VerifierKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, e, err := doc.Verify(v); err != nil || e.format != entryFormat1 {
			t.Fatalf("%s: inclusion proof of a format 1 entry: %v", when, err)
		}
	}
	check("open")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open("d", testOptions(fs)); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check("reopened")
}
