package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/ledger"
)

func TestMetricsEndpoint(t *testing.T) {
	// No opening balance (it would be an entry): the head is the two writes.
	emp := strings.Replace(empActive, `"account_balance":"1000.00"`, `"account_balance":"0.00"`, 1)
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {emp}}))
	if status, body := h.do("POST", "/v1/settlements", "tok-H3701020001", settleBody("M-1", "EMP1", "371600", chronicVisit, oneLine)); status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	a := decodeAnswer(t, mustDo(t, h, 200, "POST", "/v1/settlements", "tok-H3701020001", settleBody("M-1", "EMP1", "371600", chronicVisit, oneLine)))
	if !a.Replayed {
		t.Fatal("expected a replay")
	}
	mustDo(t, h, 200, "POST", "/v1/settlements/"+a.SettlementID+"/reversal", "tok-H3701020001", []byte(`{"request_id":"M-2","reason":"test"}`))
	mustDo(t, h, 401, "GET", "/v1/settlements/S1", "", nil)
	mustDo(t, h, 404, "GET", "/v1/regions/371600/persons/110101199003074518/nothing", "", nil)

	status, body := h.do("GET", "/metrics", "", nil)
	if status != 200 {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	text := string(body)
	for _, want := range []string{
		`medgate_http_requests_total{method="POST",route="/v1/settlements",status="200"} 2`,
		`medgate_http_requests_total{method="GET",route="/v1/settlements/{}",status="401"} 1`,
		`medgate_http_requests_total{method="*",route="unmatched",status="404"} 1`,
		`medgate_http_request_duration_seconds_count{class="2xx",method="POST",route="/v1/settlements"} 2`,
		// The replay is not a second settlement.
		`medgate_settlements_total{insured_region="371600",kind="settlement",treating_region="370102"} 1`,
		`medgate_settlements_total{insured_region="371600",kind="reversal",treating_region="370102"} 1`,
		`medgate_policy_call_duration_seconds_count{region="371600",version="v2024"} 1`,
		`medgate_policy_instances{region="371600",version="v2024"}`,
		`medgate_ledger_commit_duration_seconds_count 2`,
		`medgate_ledger_commit_entries_sum 2`,
		`medgate_ledger_head_seq 2`,
		`medgate_ledger_read_only 0`,
		`medgate_ledger_compaction_debt_bytes`,
		`medgate_ledger_compactions_running`,
		`medgate_ledger_l0_tables`,
		`medgate_ledger_write_stalls_total 0`,
		`medgate_ledger_write_stall_seconds_total 0`,
		`medgate_http_inflight_requests`,
		`go_goroutines`,
		`go_sched_latencies_seconds_bucket{le=`,
		`go_sched_pauses_total_gc_seconds_bucket{le=`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The raw path of an unmatched request never becomes a label.
	if strings.Contains(text, "110101199003074518") {
		t.Error("/metrics quotes a raw path")
	}
}

func mustDo(t *testing.T, h *harness, want int, method, path, token string, body []byte) []byte {
	t.Helper()
	status, b := h.do(method, path, token, body)
	if status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, b)
	}
	return b
}

// The hot path's instruments allocate nothing once their labels were seen.
func TestMetricsHotPathAllocations(t *testing.T) {
	m := NewMetrics()
	var r *Route
	for _, x := range routes {
		if x.Pattern == "/v1/settlements" {
			r = x
		}
	}
	mod := engine.NewNative("371600", "v1", nil)
	e := &ledger.Entry{Kind: ledger.KindSettlement, InsuredRegion: "371600", TreatingRegion: "370102"}
	fail := &engine.CallError{Kind: engine.FailTimeout, Err: errors.New("x")}
	warm := func() {
		m.observeRequest(r, 200, time.Millisecond)
		m.observeRequest(nil, 404, time.Millisecond)
		m.settled(e)
		m.policyCall(mod, "371600", "v1", time.Millisecond, nil)
		m.observeCommit(time.Millisecond, 3, nil)
	}
	warm()
	if n := testing.AllocsPerRun(200, warm); n != 0 {
		t.Fatalf("instruments allocate %.1f times per request", n)
	}
	m.policyCall(mod, "371600", "v1", time.Millisecond, fail)
	var b bytes.Buffer
	if err := m.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `medgate_policy_call_failures_total{kind="timeout",region="371600",version="v1"} 1`) {
		t.Fatalf("failure not counted:\n%s", b.String())
	}
}

// Serving a request adds no allocation for its metrics, access log line
// and request id (health is a handler that allocates nothing itself).
func TestHandleOverheadAllocations(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	h.srv.access = AccessLogSampling{Every: 1}.logger(zerolog.New(io.Discard))
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/healthz")
	ctx.Request.Header.SetMethod("GET")
	serve := func() {
		ctx.Response.Reset()
		h.srv.Handle(&ctx)
	}
	serve()
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("healthz: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := testing.AllocsPerRun(100, serve); n != 0 {
		t.Fatalf("Handle allocates %.1f times around the handler", n)
	}
}

// TestTransportErrorsCounted: a request answered before its body was read
// (a body past the limit, headers too large) is counted in
// medgate_http_requests_total like any other answer: a flood of 413s must
// show on the dashboard.
func TestTransportErrorsCounted(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	c := h.rawConn(t)
	defer c.Close()
	// A request read and answered first on the same connection: fasthttp
	// would hand the refused one its id (or 0), so the refused one must
	// get an id of its own.
	br := bufio.NewReader(c)
	var resp fasthttp.Response
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := resp.Read(br); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("healthz: %d %v", resp.StatusCode(), err)
	}
	okID := string(resp.Header.Peek("X-Request-Id"))
	if _, err := c.Write([]byte("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nContent-Length: 30000000\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := resp.Read(br); err != nil || resp.StatusCode() != 413 {
		t.Fatalf("oversized body: %d %v", resp.StatusCode(), err)
	}
	ids := map[string]bool{okID: true}
	refusedID := string(resp.Header.Peek("X-Request-Id"))
	if refusedID == "" || refusedID == "0" || ids[refusedID] {
		t.Errorf("the 413 has X-Request-Id %q (the request before it: %q)", refusedID, okID)
	}
	ids[refusedID] = true
	// Another refused request, on another connection: another id.
	c2, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Write([]byte("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nContent-Length: 30000000\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := resp.Read(bufio.NewReader(c2)); err != nil || resp.StatusCode() != 413 {
		t.Fatalf("oversized body: %d %v", resp.StatusCode(), err)
	}
	if id := string(resp.Header.Peek("X-Request-Id")); id == "" || id == "0" || ids[id] {
		t.Errorf("the second 413 has X-Request-Id %q (ids so far: %v)", id, ids)
	}
	_, body := h.do("GET", "/metrics", "", nil)
	if want := `medgate_http_requests_total{method="POST",route="/v1/settlements",status="413"} 2`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
