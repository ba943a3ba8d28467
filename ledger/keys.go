package ledger

import (
	"encoding/binary"
	"strconv"
	"sync"
)

// Key prefixes; see the package documentation for the layout.
const (
	pfxMeta     = 'm'
	pfxEntry    = 'e'
	pfxIdem     = 'K'
	pfxTrace    = 'T'
	pfxReversed = 'r'
	pfxCounters = 'c'
	pfxBalance  = 'b'
	pfxPerson   = 'p'
	pfxHospital = 'h'
	pfxCatalog  = 'g'
)

var (
	keyHead   = []byte("mhead")
	keyFormat = []byte("mformat")
)

// storeFormat is the layout version written under keyFormat, followed by
// the store's bucket shift. Format 1 had no derived state (month totals,
// hospital rows, Merkle tree); formats 1 and 2 kept trace codes and
// idempotency keys unbucketed (under 't' and 'k'); formats 1 to 3 kept
// credits and opening balances outside the hash chain, as registry records
// only. Open upgrades them all (upgrade.go).
const storeFormat = 4

// formatBucketed is the format after the trace codes and idempotency keys
// went into buckets, before credits and opening balances were entries.
const formatBucketed = 3

// defaultBucketShift: a new store puts the trace codes and idempotency
// keys of 2^20 consecutive entries in one bucket (see bucketed.go).
const defaultBucketShift = 20

var be = binary.BigEndian

func appendLP(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEntryKey(b []byte, seq uint64) []byte {
	b = append(b, pfxEntry)
	return be.AppendUint64(b, seq)
}

// entryKeySeq is the sequence number of entry key k; ok is false if k is
// not one (a damaged store).
func entryKeySeq(k []byte) (seq uint64, ok bool) {
	if len(k) != 9 || k[0] != pfxEntry {
		return 0, false
	}
	return be.Uint64(k[1:]), true
}

// bucketKeyLen is the length of a bucketed key's header: prefix and bucket.
const bucketKeyLen = 5

func appendBucketHeader(b []byte, pfx byte, bucket uint32) []byte {
	b = append(b, pfx)
	return be.AppendUint32(b, bucket)
}

// appendIdemKey appends the idempotency key of (hospital, requestID) in
// bucket; key[bucketKeyLen:] is the key's name, what the filter holds.
func appendIdemKey(b []byte, bucket uint32, hospital, requestID string) []byte {
	b = appendBucketHeader(b, pfxIdem, bucket)
	b = appendLP(b, hospital)
	return append(b, requestID...)
}

// appendTraceKey appends the record key of trace code code in bucket.
func appendTraceKey(b []byte, bucket uint32, code string) []byte {
	b = appendBucketHeader(b, pfxTrace, bucket)
	return append(b, code...)
}

func appendReversedKey(b []byte, seq uint64) []byte {
	b = append(b, pfxReversed)
	return be.AppendUint64(b, seq)
}

func appendCountersKey(b []byte, region, person string, year int32) []byte {
	b = append(b, pfxCounters)
	b = appendLP(b, region)
	b = appendLP(b, person)
	// Years are positive; flipping the sign bit keeps any int32 in order.
	return be.AppendUint32(b, uint32(year)^0x80000000)
}

func appendBalanceKey(b []byte, region, person string) []byte {
	b = append(b, pfxBalance)
	b = appendLP(b, region)
	return append(b, person...)
}

func appendPersonKey(b []byte, region, id string) []byte {
	b = append(b, pfxPerson)
	b = appendLP(b, region)
	return append(b, id...)
}

func appendHospitalKey(b []byte, id string) []byte {
	b = append(b, pfxHospital)
	return append(b, id...)
}

func appendCatalogPrefix(b []byte, region string) []byte {
	b = append(b, pfxCatalog)
	return appendLP(b, region)
}

func appendCatalogKey(b []byte, region, code string) []byte {
	b = appendCatalogPrefix(b, region)
	return append(b, code...)
}

// prefixEnd returns the smallest key greater than every key with prefix p
// (p must not be all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// splitLP splits a length-prefixed string off the front of b.
func splitLP(b []byte) (s []byte, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// keyBuf is a pooled buffer for building keys on the read path.
type keyBuf struct{ b []byte }

var keyPool = sync.Pool{New: func() any { return &keyBuf{b: make([]byte, 0, 128)} }}

func getKeyBuf() *keyBuf { return keyPool.Get().(*keyBuf) }

func putKeyBuf(k *keyBuf) {
	if cap(k.b) <= 4096 {
		k.b = k.b[:0]
		keyPool.Put(k)
	}
}

// SettlementID is the settlement id of sequence number seq: "S" and the
// number in at least 12 digits.
func SettlementID(seq uint64) string {
	var buf [24]byte
	return string(appendSettlementID(buf[:0], seq))
}

func appendSettlementID(b []byte, seq uint64) []byte {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], seq, 10)
	b = append(b, 'S')
	for i := len(d); i < 12; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// ParseSettlementID returns the sequence number of a settlement id produced
// by SettlementID; ok is false for anything else.
func ParseSettlementID(id string) (seq uint64, ok bool) {
	if len(id) < 13 || len(id) > 21 || id[0] != 'S' {
		return 0, false
	}
	if len(id) > 13 && id[1] == '0' {
		return 0, false // not canonical
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if seq > (1<<64-1-d)/10 {
			return 0, false
		}
		seq = seq*10 + d
	}
	if seq == 0 {
		return 0, false
	}
	return seq, true
}
