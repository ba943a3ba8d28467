package gateway

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/gateway/internal/testenv"
	"medgate/ledger"
	"medgate/plugins/conformance"

	"github.com/valyala/fasthttp"
)

// benchBody is a 20-line inpatient bill, the median of the load generator.
func benchBody(requestID string) []byte {
	var items strings.Builder
	for i := 0; i < 20; i++ {
		if i > 0 {
			items.WriteByte(',')
		}
		code := []string{"XA01", "XA02", "XB01", "XC01"}[i%4]
		fmt.Fprintf(&items, `{"code":%q,"unit_price":"%d.35","quantity":"2","amount":"%d.70","trace_codes":["T%s-%d"]}`, code, 10+i, 2*(10+i), requestID, i)
	}
	return settleBody(requestID, "EMP1", "371600", `{"type":"inpatient","admitted_on":"2025-06-01","discharged_on":"2025-06-09","diagnoses":["I10"]}`, "["+items.String()+"]")
}

func BenchmarkDecodeSettle(b *testing.B) {
	body := benchBody("B-1")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeSettle(body, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCatalogStep(b *testing.B) {
	req, _ := decodeSettle(benchBody("B-1"), false)
	e := ledger.CatalogEntry{Class: abi.ClassB, SelfpayProp: 1000, HasPriceCap: true, PriceCap: 15_000_000}
	b.ReportAllocs()
	for b.Loop() {
		for i := range req.Items {
			if _, ok := splitLine(e, true, &req.Items[i]); !ok {
				b.Fatal("split")
			}
		}
	}
}

func BenchmarkRender(b *testing.B) {
	h := newHarness(b, refWorld(b, map[string][]string{"371600": {empActive}}))
	_, out := h.do("POST", "/v1/settlements", "tok-H3716020001", benchBody("B-1"))
	id := decodeAnswer(b, out).SettlementID
	res, err := h.srv.svc.Get("H3716020001", id)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendResult(buf[:0], res)
	}
}

// BenchmarkPolicyCall compares the same policy source run as a wasm module
// in the sandbox and compiled natively, through the same ABI encoding: the
// ratio is the price of the sandbox (issue "Speed": wasm ≥ 80% of native).
func BenchmarkPolicyCall(b *testing.B) {
	_, loaded := testenv.Engine(b)
	in := &abi.Input{
		Date: 20250609, UseAccount: true,
		Person:   abi.Person{Scheme: abi.SchemeResident, Employment: abi.EmploymentActive, Registration: abi.RegistrationLongTerm, AccountBalance: 0, Groups: []string{"subsistence"}},
		Visit:    abi.Visit{Type: abi.VisitInpatient, AdmittedOn: 20250601, DischargedOn: 20250609, VisitDate: 20250609},
		Hospital: abi.Hospital{Level: 3, AssistanceDesignated: true, TreatingRegion: "371602", InsuredRegion: "371600"},
		Counters: []abi.Counter{{Name: "adm.l23", Value: 1}, {Name: "serious.base", Value: 1_000_000}},
	}
	for i := 0; i < 20; i++ {
		l := abi.Line{Code: fmt.Sprintf("XD%04d", i), Class: abi.ClassA, Listed: true, Amount: int64(1000 + i*137), Eligible: int64(1000 + i*137)}
		in.Lines = append(in.Lines, l)
		in.Sums.Total += l.Amount
		in.Sums.Eligible += l.Eligible
	}
	enc := in.AppendBinary(nil)
	var fn func(*abi.Input, *abi.Output)
	for _, v := range conformance.Versions {
		if v.Region == "371600" && v.Name == "v2024" {
			fn = v.Policy
		}
	}
	runners := []struct {
		name string
		r    engine.Runner
	}{
		{"wasm", loaded["371600/v2024"].Module},
		{"native", engine.NewNative("371600", "v2024", fn)},
	}
	for _, r := range runners {
		b.Run(r.name, func(b *testing.B) {
			var out abi.Output
			b.ReportAllocs()
			for b.Loop() {
				if err := r.r.Call(context.Background(), in, enc, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(r.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var out abi.Output
				for pb.Next() {
					if err := r.r.Call(context.Background(), in, enc, &out); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkQuote is the whole settlement path minus HTTP and the ledger
// write: decode, registry, catalog step, policy call, render.
func BenchmarkQuote(b *testing.B) {
	h := newHarness(b, refWorld(b, map[string][]string{"371600": {empActive}}))
	hosp, _ := h.db.Hospital("H3716020001")
	body := benchBody("B-1")
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		req, derr := decodeSettle(body, true)
		if derr != nil {
			b.Fatal(derr)
		}
		res, err := h.srv.svc.Settle(context.Background(), hosp, req, true)
		if err != nil {
			b.Fatal(err)
		}
		buf = appendResult(buf[:0], res)
	}
}

// BenchmarkSettleHTTP settles 20-line bills over HTTP (in-memory listener)
// on a real on-disk ledger (every batch fsynced), from 64 concurrent
// clients, for many persons: the gateway's committed-settlement path.
func BenchmarkSettleHTTP(b *testing.B) {
	var persons []string
	for i := 0; i < 2000; i++ {
		persons = append(persons, strings.Replace(empActive, "EMP1", fmt.Sprintf("P%05d", i), 1))
	}
	fsys, dir := vfs.Default, b.TempDir()
	if os.Getenv("MEM") != "" {
		fsys, dir = vfs.NewMem(), "ledger"
	}
	h := &harness{tb: b, fs: fsys, dir: dir, world: refWorld(b, map[string][]string{"371600": persons}), policies: &engine.Policies{}}
	h.versions = referenceVersions(b, h.policies)
	h.start()
	b.Cleanup(h.stop)
	var n, maxLatency atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := benchBody(fmt.Sprintf("H-%d", i))
			body = []byte(strings.Replace(string(body), `"EMP1"`, fmt.Sprintf(`"P%05d"`, i%2000), 1))
			began := time.Now()
			if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body); status != 200 {
				b.Fatalf("%d %s", status, out)
			}
			for d := time.Since(began).Nanoseconds(); ; {
				m := maxLatency.Load()
				if d <= m || maxLatency.CompareAndSwap(m, d) {
					break
				}
			}
		}
	})
	b.StopTimer()
	if c := h.db.Commits(); c > 0 {
		b.ReportMetric(float64(n.Load())/float64(c), "entries/commit")
	}
	b.ReportMetric(float64(maxLatency.Load())/1e6, "max-ms")
	b.ReportMetric(float64(h.db.Stalls()), "stalls")
}

// BenchmarkBodyLimit is the work fasthttp's HeaderReceived adds to every
// settlement: the body limit decided from the header.
func BenchmarkBodyLimit(b *testing.B) {
	h := newHarness(b, refWorld(b, nil))
	var hdr fasthttp.RequestHeader
	hdr.SetMethod("POST")
	hdr.SetRequestURI("/v1/settlements")
	hdr.Set("Authorization", "Bearer tok-H3716020001")
	b.ReportAllocs()
	for b.Loop() {
		if c := h.srv.bodyLimit(&hdr); c.MaxRequestBodySize != readSlack*MaxBodyBytes {
			b.Fatal(c.MaxRequestBodySize)
		}
	}
}
