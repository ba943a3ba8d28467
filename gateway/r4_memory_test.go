package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"medgate/engine"
)

// heapInuse is the heap in use after two collections (sync.Pool keeps
// what was put in it through one).
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rawRequest writes req on c and reads the answer's status.
func rawRequest(tb testing.TB, c net.Conn, br *bufio.Reader, req []byte) int {
	tb.Helper()
	if _, err := c.Write(req); err != nil {
		tb.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode()
}

// One large request on a keep-alive connection must not leave its body's
// buffer held by the connection (and, once it closes, by fasthttp's pool of
// request contexts, reused by the next connection) for good: fasthttp keeps
// a request's body buffer, at the largest size it ever grew to, from one
// request to the next unless told otherwise. A hospital's pool of
// keep-alive connections that each once carried a long bill would hold
// 2 MiB apiece for as long as the gateway runs.
func TestR4LargeBodyNotKeptByTheConnection(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	const conns = 16
	cs := make([]net.Conn, conns)
	brs := make([]*bufio.Reader, conns)
	small := []byte("GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
	for i := range cs {
		cs[i] = h.rawConn(t)
		defer cs[i].Close()
		brs[i] = bufio.NewReader(cs[i])
		if st := rawRequest(t, cs[i], brs[i], small); st != 200 {
			t.Fatalf("healthz: %d", st)
		}
	}
	before := heapInuse()
	// A body a little past 1 MiB from a known token: read whole and
	// answered 413 on a connection that stays open.
	body := bytes.Repeat([]byte(" "), MaxBodyBytes+MaxBodyBytes/2)
	big := append([]byte(fmt.Sprintf("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-H3716020001\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))), body...)
	for i := range cs {
		if st := rawRequest(t, cs[i], brs[i], big); st != 413 {
			t.Fatalf("large body: %d", st)
		}
		for range 3 {
			if st := rawRequest(t, cs[i], brs[i], small); st != 200 {
				t.Fatalf("healthz after: %d", st)
			}
		}
	}
	body, big = nil, nil
	after := heapInuse()
	grown := int64(after) - int64(before)
	t.Logf("heap in use: %d KiB before, %d KiB after (%+d KiB)", before>>10, after>>10, grown>>10)
	if limit := int64(conns) * MaxBodyBytes / 4; grown > limit {
		t.Fatalf("after one large request on each of %d connections and small ones since, the heap holds %d KiB more (limit %d KiB)", conns, grown>>10, limit>>10)
	}
}

// bigBill is a settlement of 1,000 lines, each with codes trace codes
// unique to tag.
func bigBill(requestID, tag string, codes int) []byte {
	var items bytes.Buffer
	items.WriteByte('[')
	for i := range MaxItems {
		if i > 0 {
			items.WriteByte(',')
		}
		items.WriteString(`{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00","trace_codes":[`)
		for j := range codes {
			if j > 0 {
				items.WriteByte(',')
			}
			fmt.Fprintf(&items, `"%s-%04d-%03d"`, tag, i, j)
		}
		items.WriteString(`]}`)
	}
	items.WriteByte(']')
	return settleBody(requestID, "EMP1", "371600", chronicVisit, items.String())
}

func settleRaw(body []byte) []byte {
	return append([]byte(fmt.Sprintf("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-H3716020001\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))), body...)
}

// A long bill's scratch space (its canonical form, the policy's encoded
// input, its lines) must not go back to the pool at that size: under steady
// traffic a pooled work is used again and again and never collected, and
// each would keep the largest bill it ever carried. Nor may a pooled work
// keep pointing into its last bill's body (the lines' codes, the visit),
// which keeps that whole body alive.
func TestR4LongBillNotPinnedByThePools(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	svc := h.srv.svc
	hosp, ok := h.db.Hospital("H3716020001")
	if !ok {
		t.Fatal("no hospital")
	}
	settle := func(body []byte) {
		t.Helper()
		req, e := decodeSettle(body, false)
		if e != nil {
			t.Fatal(e)
		}
		res, err := svc.Settle(context.Background(), hosp, req, false)
		if err != nil {
			t.Fatal(err)
		}
		var ctx fasthttp.RequestCtx
		h.srv.writeResult(&ctx, res)
	}
	for k := range 3 {
		tag := fmt.Sprintf("B%d", k)
		settle(bigBill("L-"+tag, tag, 40))
		for j := range 3 {
			settle(settleBody(fmt.Sprintf("S-%d-%d", k, j), "EMP1", "371600", chronicVisit, oneLine))
		}
		// The work the settlements just used (this goroutine's P's).
		w := svc.work.Get().(*work)
		if cap(w.canon) > keptWorkBytes || cap(w.encoded) > keptWorkBytes || cap(w.in.Lines) > keptWorkLines {
			t.Fatalf("a pooled work kept a long bill's buffers: canonical %d KiB, input %d KiB, %d lines",
				cap(w.canon)>>10, cap(w.encoded)>>10, cap(w.in.Lines))
		}
		for i, l := range w.in.Lines[:cap(w.in.Lines)] {
			if l.Code != "" {
				t.Fatalf("a pooled work's line %d still points into a bill (code %s)", i, l.Code)
			}
		}
		if len(w.in.Visit.Diagnoses) > 0 || w.in.Hospital.TreatingRegion != "" {
			t.Fatal("a pooled work still holds its last request's visit")
		}
		// The buffer the answers were rendered in.
		if b := h.srv.bufs.Get().(*[]byte); cap(*b) > keptBodyBytes {
			t.Fatalf("the answer buffer pool kept a long bill's answer's buffer: %d KiB", cap(*b)>>10)
		}
	}
}

// A withdrawn version's module (its decoded code and data, up to an
// upload's size) must be collectable once nothing can call it. The
// policy-call timings kept each module that ever served a settlement as
// the key of their cache of histograms, for the gateway's life: a region
// publishing and withdrawing versions pinned every one.
func TestR4WithdrawnModuleNotPinnedByMetrics(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	var collected atomic.Bool
	func() {
		status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600",
			upload("371600", "v2025", "2025-01-01", referenceWasm(t, "371600", "v2023"), readCases(t, "371600-v2023.json"), demoKey("371600")))
		if status != 201 {
			t.Fatalf("publish: %d %s", status, out)
		}
		ver, ok := h.policies.Lookup("371600", 20250601)
		m, isModule := ver.Module.(*engine.Module)
		if !ok || ver.Name != "v2025" || !isModule {
			t.Fatalf("v2025 not in force on 2025-06-01: %+v", ver)
		}
		runtime.AddCleanup(m, func(b *atomic.Bool) { b.Store(true) }, &collected)
	}()
	status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("W-1", "EMP1", "371600", chronicVisit, oneLine))
	if a := decodeAnswer(t, out); status != 200 || a.Policy["version"] != "v2025" {
		t.Fatalf("settle on v2025: %d %s", status, out)
	}
	if status, out := h.do("POST", "/v1/regions/371600/policies/v2025/withdraw", "tok-region-371600", nil); status != 200 {
		t.Fatalf("withdraw: %d %s", status, out)
	}
	// Settled and scraped again after the withdrawal: the new version in
	// force is measured, the withdrawn one is gone.
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("W-2", "EMP1", "371600", chronicVisit, oneLine)); status != 200 {
		t.Fatalf("settle after the withdrawal: %d %s", status, out)
	}
	for i := 0; i < 20 && !collected.Load(); i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if !collected.Load() {
		t.Fatal("the withdrawn version's module is still reachable")
	}
}
