package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
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
	bad[0] = 2
	if err := DecodeEntry(bad, &e); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version: %v", err)
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
