package ledger

import (
	"context"
	"fmt"
	"math/bits"
	"strconv"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/rs/zerolog"

	"medgate/engine/abi"
)

// BenchmarkAppend appends from many goroutines to a ledger on the real disk
// (t.TempDir), every batch synced.
func BenchmarkAppend(b *testing.B) {
	for _, par := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", par), func(b *testing.B) {
			db, err := Open(b.TempDir(), Options{Logger: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var next atomic.Int64
			tmpl := sampleEntry()
			b.ReportAllocs()
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				e := new(Entry)
				changes := []abi.Counter{{Name: "admissions", Value: 1}, {Name: "basic.paid", Value: 100}}
				codes := []string{"", ""}
				for pb.Next() {
					i := next.Add(1)
					*e = *tmpl
					e.Seq, e.SettlementID, e.Hash, e.PrevHash = 0, "", [32]byte{}, [32]byte{}
					e.RequestID = fmt.Sprintf("req-%d", i)
					e.PersonID = fmt.Sprintf("P%d", i%1000)
					e.BalanceChange = 0
					e.Changes = changes
					codes[0], codes[1] = fmt.Sprintf("A%d", i), fmt.Sprintf("B%d", i)
					e.TraceCodes = codes
					if err := db.Append(ctx, e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if c := db.commits.Load(); c > 0 {
				b.ReportMetric(float64(b.N)/float64(c), "entries/commit")
			}
		})
	}
}

func BenchmarkEntryCodec(b *testing.B) {
	b.Run("sample", func(b *testing.B) { benchEntryCodec(b, sampleEntry()) })
	// A settlement the gateway wrote (12 lines), in both formats.
	_, e1 := format1Settlement(b)
	b.Run("settlement-format1", func(b *testing.B) { benchEntryCodec(b, e1) })
	e2 := *e1
	e2.format = 0
	b.Run("settlement-format2", func(b *testing.B) { benchEntryCodec(b, &e2) })
}

func benchEntryCodec(b *testing.B, e *Entry) {
	enc := AppendEntry(nil, e)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		buf := make([]byte, 0, 2*len(enc))
		var in abi.Input // as the writer encodes: with its scratch input
		for i := 0; i < b.N; i++ {
			buf = appendEntryBodyIn(buf[:0], e, &in)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		var d Entry
		for i := 0; i < b.N; i++ {
			if err := DecodeEntry(enc, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReads measures the hot read path (idempotency check, trace-code
// check, counters, balance) on a small in-memory ledger.
func BenchmarkReads(b *testing.B) {
	db, _ := openMem(b)
	if _, err := db.PutPersons([]Person{person("P1", 1000)}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		mustAppend(b, db, settlement(req(i), "P1", 20261109, []abi.Counter{{Name: "admissions", Value: 1}, {Name: "basic.paid", Value: 7}}, -1, fmt.Sprintf("T%d", i)))
	}
	b.Run("Idempotency", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok, err := db.Idempotency(hospital, "req-000042"); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("IdempotencyMiss", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok, err := db.Idempotency(hospital, "req-999999"); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("TraceCodeOwner", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := db.TraceCodeOwner("T-unused"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Counters", func(b *testing.B) {
		b.ReportAllocs()
		var dst []abi.Counter
		for i := 0; i < b.N; i++ {
			var err error
			if dst, err = db.Counters(region, "P1", 2026, dst[:0]); err != nil || len(dst) != 2 {
				b.Fatal(err)
			}
		}
	})
	b.Run("Balance", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := db.Balance(region, "P1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkKeyFilter is a check and an add of a new key in a filter sized
// for 16 million keys (32 MB, past the caches), as for a big ledger.
func BenchmarkKeyFilter(b *testing.B) {
	f := newKeyFilter(16 << 20)
	var key []byte
	i := 0
	for b.Loop() {
		key = strconv.AppendInt(append(key[:0], "8390"...), int64(i)*7919, 10)
		if !f.mayContainBytes(key) {
			f.add(key)
		}
		i++
	}
}

// BenchmarkTraceCodeFilter: the filter's part of a settlement's trace
// codes — check 14 new codes, then add them — in a trace-code filter the
// size of a 10-million-entry ledger's (≈ 140 M codes, 280 MB), filled to
// a tenth. "loop" is mayContain and add code by code; "each" the batched
// forms (their cache misses overlap); "checkThenAdd" the one pass the
// settlement path makes (tracecodes.go). All make their new codes the same
// way (≈ 0.3 µs of each op).
func BenchmarkTraceCodeFilter(b *testing.B) {
	f := newKeyFilter(140 << 20)
	var next uint64 // codes are XD and 18 digits of a mixed counter
	var buf [14][20]byte
	var bill [14]string
	newBill := func() []string {
		for j := range buf {
			next++
			x := next * 0x9e3779b97f4a7c15
			buf[j][0], buf[j][1] = 'X', 'D'
			for k := 19; k >= 2; k-- {
				buf[j][k] = byte('0' + x%10)
				x /= 10
			}
			// The filter keeps only hashes: a string over buf is safe.
			bill[j] = unsafe.String(&buf[j][0], len(buf[j]))
		}
		return bill[:]
	}
	for n := 0; n < 14<<20; n += 14 {
		f.addEach(newBill())
	}
	found := 0
	b.Run("loop", func(b *testing.B) {
		for b.Loop() {
			codes := newBill()
			for _, c := range codes {
				if f.mayContain(c) {
					found++ // a false positive: ≈ 0.1 %
				}
			}
			for _, c := range codes {
				f.addString(c)
			}
		}
	})
	b.Run("each", func(b *testing.B) {
		for b.Loop() {
			codes := newBill()
			if m := f.mayContainEach(codes); m != 0 {
				found += bits.OnesCount64(m)
			}
			f.addEach(codes)
		}
	})
	b.Run("checkThenAdd", func(b *testing.B) {
		for b.Loop() {
			if m := f.mayContainThenAdd(newBill()); m != 0 {
				found += bits.OnesCount64(m)
			}
		}
	})
	_ = found
}
