package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	randv2 "math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"medgate/engine"
	"medgate/ledger"
)

// walFault fails syncs (and, for "write", writes) of the WAL while on.
func walFault(kind string) *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errorfs.ErrInjected
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
			if kind == "write" {
				return errorfs.ErrInjected
			}
		}
		return nil
	})}
}

// stopAfterFailure stops the harness; after a write failure closing the
// ledger may report it, which is not this test's business.
func (h *harness) stopAfterFailure() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.srv.Shutdown(ctx)
	h.ln.Close()
	done := make(chan error, 1)
	go func() { done <- h.db.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		h.tb.Fatal("closing the ledger hangs after a write failure")
	}
	h.db = nil
}

// TestLedgerWriteFailure injects WAL write or sync failures under the
// gateway. While the store fails: no write is acknowledged (every
// settlement, reversal, credit and registry upload answers 503
// ledger_unavailable, quickly), and the gateway stays up for /healthz
// (degraded), reads of settlements and quotes. After a restart on the
// repaired disk, each unanswered write, retried with its request id,
// settles once (a replay if it had reached the disk) and the ledger
// audits clean.
func TestLedgerWriteFailure(t *testing.T) {
	for _, kind := range []string{"sync", "write"} {
		t.Run(kind, func(t *testing.T) {
			mem := vfs.NewMem()
			fault := walFault(kind)
			h := &harness{tb: t, fs: errorfs.Wrap(mem, fault), dir: "ledger", policies: &engine.Policies{},
				world: refWorld(t, map[string][]string{"371600": {empActive, resident}})}
			h.versions = referenceVersions(t, h.policies)
			h.start()
			status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("OK-1", "EMP1", "371600", chronicVisit, oneLine))
			if status != 200 {
				t.Fatalf("settle before the fault: %d %s", status, body)
			}
			first := decodeAnswer(t, body)

			fault.On()
			type write struct {
				path, token string
				body        []byte
			}
			var writes []write
			for i := 0; i < 8; i++ {
				writes = append(writes, write{"/v1/settlements", "tok-H3716020001", settleBody(fmt.Sprintf("F-%d", i), []string{"EMP1", "RES1"}[i%2], "371600", chronicVisit,
					fmt.Sprintf(`[{"code":"XA01","unit_price":"%d.00","quantity":"1","amount":"%d.00","trace_codes":["FT-%d"]}]`, 10+i, 10+i, i))})
			}
			var wg sync.WaitGroup
			statuses := make([]int, len(writes))
			bodies := make([][]byte, len(writes))
			for i, w := range writes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					statuses[i], bodies[i] = h.do("POST", w.path, w.token, w.body)
				}()
			}
			wg.Wait()
			for i := range writes {
				var a answer
				json.Unmarshal(bodies[i], &a)
				if statuses[i] != 503 || a.Error == nil || a.Error.Code != "ledger_unavailable" {
					t.Fatalf("write %d during the fault: %d %s, want 503 ledger_unavailable", i, statuses[i], bodies[i])
				}
			}
			// Every later write is refused at once, retries included.
			later := []write{
				writes[0],
				{"/v1/settlements", "tok-H3716020001", settleBody("F-later", "EMP1", "371600", chronicVisit, oneLine)},
				{"/v1/settlements/" + first.SettlementID + "/reversal", "tok-H3716020001", []byte(`{"request_id":"F-rev"}`)},
				{"/v1/regions/371600/persons/EMP1/credits", "tok-region-371600", []byte(`{"reference":"F-credit","amount":"5.00"}`)},
				{"/v1/regions/371600/persons", "tok-region-371600", []byte(strings.Replace(empActive, "EMP1", "NEW1", 1) + "\n")},
			}
			for _, w := range later {
				began := time.Now()
				status, body := h.do("POST", w.path, w.token, w.body)
				if status != 503 || !strings.Contains(string(body), "ledger_unavailable") {
					t.Errorf("%s during the fault: %d %s, want 503 ledger_unavailable", w.path, status, body)
				}
				if d := time.Since(began); d > time.Second {
					t.Errorf("%s refused after %v", w.path, d)
				}
				// A 503 says when to come back.
				if resp, err := h.roundTrip("POST", w.path, w.token, "application/json", w.body, 5*time.Second); err != nil {
					t.Errorf("%s: %v", w.path, err)
				} else {
					if resp.StatusCode() != 503 || string(resp.Header.Peek("Retry-After")) != "1" {
						t.Errorf("%s during the fault: %d with Retry-After %q, want 503 with 1", w.path, resp.StatusCode(), resp.Header.Peek("Retry-After"))
					}
					fasthttp.ReleaseResponse(resp)
				}
				writes = append(writes, w)
			}
			if status, body := h.do("GET", "/healthz", "", nil); status != 200 || !strings.Contains(string(body), "degraded") {
				t.Errorf("healthz during the fault: %d %s", status, body)
			}
			if status, body := h.do("GET", "/v1/settlements/"+first.SettlementID, "tok-H3716020001", nil); status != 200 || decodeAnswer(t, body).Seq != first.Seq {
				t.Errorf("read during the fault: %d %s", status, body)
			}
			if status, body := h.do("POST", "/v1/settlements/quote", "tok-H3716020001", settleBody("Q-1", "RES1", "371600", chronicVisit, oneLine)); status != 200 {
				t.Errorf("quote during the fault: %d %s", status, body)
			}
			if seq, _ := h.db.Head(); seq != first.Seq {
				t.Errorf("the durable head moved to %d during the fault", seq)
			}
			h.stopAfterFailure()

			// The disk is repaired; restart and retry every unanswered
			// write: each is done once.
			fault.Off()
			h.start()
			t.Cleanup(h.stop)
			replayed := 0
			for _, w := range writes {
				status, body := h.do("POST", w.path, w.token, w.body)
				if status != 200 {
					t.Fatalf("retry of %s after the restart: %d %s", w.path, status, body)
				}
				if strings.Contains(string(body), `"replayed":true`) {
					replayed++
				}
			}
			rep, err := h.db.Audit(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := rep.Err(); err != nil {
				t.Fatal(err)
			}
			if rep.Settlements+rep.Reversals != 1+9+1 {
				t.Fatalf("%d settlements and reversals after the retries, want 11 (1 before, 9 settlements, 1 reversal)", rep.Settlements+rep.Reversals)
			}
			t.Logf("after the restart: %d entries; %d of the retried writes had reached the disk and were replayed", rep.Entries, replayed)
		})
	}
}

// startLimited is harness.start with a server bounded to maxInflight
// requests in flight.
func (h *harness) startLimited(maxInflight int) {
	tb := h.tb
	db, err := ledger.Open(h.dir, ledger.Options{FS: h.fs, Logger: zerolog.Nop()})
	if err != nil {
		tb.Fatal(err)
	}
	h.db = db
	if err := h.world.ApplyRegistry(db); err != nil {
		tb.Fatal(err)
	}
	principals, err := NewPrincipals(h.world.Principals)
	if err != nil {
		tb.Fatal(err)
	}
	h.srv = NewServer(ServerConfig{Service: NewService(db, h.policies, zerolog.Nop()), DB: db, Versions: h.versions,
		Principals: principals, Logger: zerolog.Nop(), MaxInflight: maxInflight})
	h.ln = fasthttputil.NewInmemoryListener()
	go h.srv.Serve(h.ln)
	ln := h.ln
	h.client = &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConnsPerHost: 4096}
}

// TestOverload bounds the gateway to 4 requests in flight, measures its
// capacity with 4 closed-loop clients, then offers twice that rate in an
// open loop: requests beyond the bound are answered 503 with Retry-After
// at once, the admitted ones keep a bounded p99, and nothing else fails.
func TestOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("measures latency for seconds")
	}
	const limit = 4
	var ps []string
	for i := 0; i < 16; i++ {
		ps = append(ps, strings.Replace(empActive, `"EMP1"`, fmt.Sprintf(`"O%d"`, i), 1))
	}
	h := &harness{tb: t, fs: vfs.NewMem(), dir: "ledger", world: refWorld(t, map[string][]string{"371600": ps}), policies: &engine.Policies{}}
	h.versions = referenceVersions(t, h.policies)
	h.startLimited(limit)
	t.Cleanup(h.stop)
	var n atomic.Int64
	var lines []string
	for i := 0; i < 30; i++ {
		lines = append(lines, `{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"}`, `{"code":"XB01","unit_price":"2.00","quantity":"3","amount":"6.00"}`)
	}
	bill := "[" + strings.Join(lines, ",") + "]"
	body := func() []byte {
		i := n.Add(1)
		return settleBody(fmt.Sprintf("O-%d", i), fmt.Sprintf("O%d", i%16), "371600", chronicVisit, bill)
	}
	// Capacity: closed loop at the bound.
	base := latencies(t, h, limit, 1500*time.Millisecond, func(int, int) (string, string, []byte) {
		return "/v1/settlements", "tok-H3716020001", body()
	}, 200)
	capacity := float64(len(base)) / 1.5
	b99 := pct(base, 0.99)

	// Twice the capacity, open loop.
	rate := 2 * capacity
	const d = 1500 * time.Millisecond
	type res struct {
		status     int
		took       time.Duration
		retryAfter bool
		err        error
	}
	total := int(rate * d.Seconds())
	results := make([]res, total)
	var wg sync.WaitGroup
	began := time.Now()
	for i := 0; i < total; i++ {
		at := began.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://gateway/v1/settlements")
			req.Header.Set("Authorization", "Bearer tok-H3716020001")
			req.SetBody(body())
			t0 := time.Now()
			err := h.client.DoTimeout(req, resp, 10*time.Second)
			results[i] = res{resp.StatusCode(), time.Since(t0), len(resp.Header.Peek("Retry-After")) > 0, err}
		}(i)
	}
	wg.Wait()
	var ok, shed []time.Duration
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Fatalf("request %d: %v", i, r.err)
		case r.status == 200:
			ok = append(ok, r.took)
		case r.status == 503 && r.retryAfter:
			shed = append(shed, r.took)
		default:
			t.Fatalf("request %d: status %d (Retry-After %v): only 200 and 503 with Retry-After may answer", i, r.status, r.retryAfter)
		}
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i] < ok[j] })
	sort.Slice(shed, func(i, j int) bool { return shed[i] < shed[j] })
	t.Logf("capacity at %d in flight: %.0f settlements/s, p50 %v p99 %v", limit, capacity, pct(base, 0.5), b99)
	t.Logf("offered %.0f/s for %v: %d admitted (%.0f/s, p50 %v p90 %v p99 %v), %d shed with 503 + Retry-After (p50 %v p90 %v p99 %v)",
		rate, d, len(ok), float64(len(ok))/time.Since(began).Seconds(), pct(ok, 0.5), pct(ok, 0.9), pct(ok, 0.99),
		len(shed), pct(shed, 0.5), pct(shed, 0.9), pct(shed, 0.99))
	if len(shed) == 0 {
		t.Error("nothing was shed at twice the capacity")
	}
	if len(ok) == 0 {
		t.Fatal("nothing was admitted")
	}
	// Admitted requests wait for at most the requests in flight, not for
	// a queue. Held like the 503s below: the p90 to 5 × the p99 at
	// capacity + 50 ms, the p99 (the client's tail on two shared CPUs:
	// 46 ms in a CI run with a p99 at capacity of 4.4 ms) to half a
	// second, which requests queued at twice the capacity would pass.
	if bound := 5*b99 + 50*time.Millisecond; pct(ok, 0.90) > bound {
		t.Errorf("admitted p90 %v above %v (5 × the p99 at capacity + 50 ms)", pct(ok, 0.90), bound)
	}
	if o99 := pct(ok, 0.99); o99 > 500*time.Millisecond {
		t.Errorf("admitted p99 %v above 500 ms: admitted requests waited as if queued", o99)
	}
	// A 503 must be quick: its median is microseconds, and it is held to
	// the p99 at capacity, which a 503 that waited in a queue would miss by
	// far (at twice the capacity for 1.5 s, a queue would hold half of
	// them for 0.375 s or more). Its tail is the client's (this open loop
	// starts a goroutine per request on the same two CPUs, beside the other
	// packages' tests): the p90 is held to half a second, which a queue
	// would exceed (its p90 ≈ 0.68 s), and the p99 is only logged. Tighter
	// tail bounds failed CI twice with medians of 12 and 18 µs: a p99 of
	// 165 ms against 72 ms, then a p90 of 165 ms against 74 ms with a p99
	// of 481 ms.
	if s50 := pct(shed, 0.5); s50 > b99 {
		t.Errorf("shed p50 %v: a 503 must be quick (p99 at capacity %v)", s50, b99)
	}
	if s90 := pct(shed, 0.90); s90 > 500*time.Millisecond {
		t.Errorf("shed p90 %v above 500 ms: 503s waited as if queued", s90)
	}
}

// TestCloseMonthRetryAfterFailedSync: a close whose sync failed is applied
// in memory but not on disk. A retry must not be told "closed" from that
// record (a power cut would take it away and reopen the month); after the
// power cut and a restart, the month is open and closes for good.
func TestCloseMonthRetryAfterFailedSync(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	mem := vfs.NewCrashableMem()
	fault := walFault("sync")
	w := refWorld(t, map[string][]string{"371600": {empActive, resident}})
	h := &harness{tb: t, fs: errorfs.Wrap(mem, fault), dir: "ledger", policies: &engine.Policies{}, world: w, now: clk.now}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	if status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("OK-1", "EMP1", "371600", chronicVisit, oneLine)); status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	clk.set("2026-11-02T02:00:00Z")
	fault.On()
	for i := range 2 {
		status, body := h.do("POST", "/v1/clearing/months/2026-10/close", "tok-clearing", nil)
		if a := decodeAnswer(t, body); status != 503 || a.Error.Code != "ledger_unavailable" {
			t.Fatalf("close %d while syncs fail: %d %s, want 503 ledger_unavailable", i, status, body)
		}
		status, body = h.do("GET", "/v1/clearing/months/2026-10", "tok-clearing", nil)
		if status == 200 && strings.Contains(string(body), `"closed":true`) {
			t.Fatalf("GET %d while syncs fail says closed: %s", i, body)
		}
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: randv2.New(randv2.NewPCG(1, 1))})
	h.stopAfterFailure()
	h2 := &harness{tb: t, fs: crashed, dir: "ledger", policies: &engine.Policies{}, world: w, now: clk.now}
	h2.versions = referenceVersions(t, h2.policies)
	h2.start()
	defer h2.stop()
	status, body := h2.do("GET", "/v1/clearing/months/2026-10", "tok-clearing", nil)
	if status != 200 || !strings.Contains(string(body), `"closed":false`) {
		t.Fatalf("GET after the power cut: %d %s, want the month open", status, body)
	}
	status, body = h2.do("POST", "/v1/clearing/months/2026-10/close", "tok-clearing", nil)
	if status != 200 || !strings.Contains(string(body), `"closed":true`) {
		t.Fatalf("close after the restart: %d %s", status, body)
	}
}

// TestLowDiskIs503: while the ledger's disk is nearly full, a settlement,
// a reversal and a registry write are answered 503 ledger_disk_full with
// Retry-After at once and write nothing; quotes and reads keep working;
// writes resume once there is room.
func TestLowDiskIs503(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	var free atomic.Uint64
	free.Store(1 << 40)
	h.stop()
	h.minFree, h.freeSpace = 1<<30, func(string) (uint64, error) { return free.Load(), nil }
	h.start()
	status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("D-1", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, out)
	}
	first := decodeAnswer(t, out)

	free.Store(1<<30 - 1)
	for deadline := time.Now().Add(5 * time.Second); !h.db.LowDisk(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the low disk was not noticed in 5 s")
		}
	}
	head := h.head()
	for _, w := range []struct {
		path, token string
		body        []byte
	}{
		{"/v1/settlements", "tok-H3716020001", settleBody("D-2", "EMP1", "371600", chronicVisit, oneLine)},
		{"/v1/settlements/" + first.SettlementID + "/reversal", "tok-H3716020001", []byte(`{"request_id":"D-rev"}`)},
		{"/v1/regions/371600/persons/EMP1/credits", "tok-region-371600", []byte(`{"reference":"D-credit","amount":"5.00"}`)},
	} {
		resp, err := h.roundTrip("POST", w.path, w.token, "application/json", w.body, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", w.path, err)
		}
		a := decodeAnswer(t, resp.Body())
		if resp.StatusCode() != 503 || a.Error == nil || a.Error.Code != "ledger_disk_full" || string(resp.Header.Peek("Retry-After")) == "" {
			t.Errorf("%s on a full disk: %d %s (Retry-After %q), want 503 ledger_disk_full", w.path, resp.StatusCode(), resp.Body(), resp.Header.Peek("Retry-After"))
		}
		fasthttp.ReleaseResponse(resp)
	}
	if h.head() != head {
		t.Fatal("the ledger moved while its disk was full")
	}
	if status, out := h.do("POST", "/v1/settlements/quote", "tok-H3716020001", settleBody("D-q", "EMP1", "371600", chronicVisit, oneLine)); status != 200 {
		t.Errorf("quote on a full disk: %d %s", status, out)
	}
	if status, out := h.do("GET", "/v1/settlements/"+first.SettlementID, "tok-H3716020001", nil); status != 200 {
		t.Errorf("read on a full disk: %d %s", status, out)
	}
	if status, body := h.do("GET", "/healthz", "", nil); status != 200 || !strings.Contains(string(body), `"disk_full"`) {
		t.Errorf("healthz on a full disk: %d %s", status, body)
	}
	if _, body := h.do("GET", "/metrics", "", nil); !strings.Contains(string(body), "medgate_ledger_low_disk 1") {
		t.Error("/metrics does not say the disk is low")
	}

	free.Store(1 << 30)
	for deadline := time.Now().Add(5 * time.Second); h.db.LowDisk(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the room was not noticed in 5 s")
		}
	}
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("D-2", "EMP1", "371600", chronicVisit, oneLine)); status != 200 {
		t.Fatalf("the same settlement once there is room: %d %s", status, out)
	}
}
