package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// scrape reads /metrics strictly: the text parses, each family has one
// HELP and one TYPE line, before its samples, and no series (name and
// label set) appears twice. It returns every series' value by
// name{label="value",...} (labels sorted; histograms as _count, _sum and
// _bucket).
func scrape(t *testing.T, h *harness) map[string]float64 {
	t.Helper()
	status, body := h.do("GET", "/metrics", "", nil)
	if status != 200 {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	return parseMetricsStrict(t, body)
}

func parseMetricsStrict(t *testing.T, body []byte) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	help, typ := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == "#" && f[1] == "HELP" {
			help[f[2]]++
		}
		if len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			typ[f[2]]++
		}
	}
	out := map[string]float64{}
	put := func(key string, v float64) {
		if _, dup := out[key]; dup {
			t.Errorf("/metrics has the series %s twice", key)
		}
		out[key] = v
	}
	for name, mf := range mfs {
		if help[name] != 1 || typ[name] != 1 {
			t.Errorf("family %s has %d HELP and %d TYPE lines, want one each", name, help[name], typ[name])
		}
		for _, m := range mf.GetMetric() {
			labels := m.GetLabel()
			sort.Slice(labels, func(i, j int) bool { return labels[i].GetName() < labels[j].GetName() })
			var lb []string
			for _, l := range labels {
				lb = append(lb, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			ls := "{" + strings.Join(lb, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				put(name+ls, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				put(name+ls, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				put(name+ls, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				hg := m.GetHistogram()
				put(name+"_count"+ls, float64(hg.GetSampleCount()))
				put(name+"_sum"+ls, hg.GetSampleSum())
				for _, b := range hg.GetBucket() {
					put(fmt.Sprintf("%s_bucket%s{le=%g}", name, ls, b.GetUpperBound()), float64(b.GetCumulativeCount()))
				}
			case dto.MetricType_SUMMARY:
				put(name+"_count"+ls, float64(m.GetSummary().GetSampleCount()))
			}
		}
	}
	return out
}

// counted is what an event must change among the medgate counters and
// histogram counts: every other one must stay as it was.
type counted map[string]float64

// checkDelta compares two scrapes: each series of want changed by its
// value, and no other medgate counter or histogram count changed (the
// scrape's own request and gauges aside).
func checkDelta(t *testing.T, event string, before, after map[string]float64, want counted) {
	t.Helper()
	for k, d := range want {
		if got := after[k] - before[k]; math.Abs(got-d) > 1e-9 {
			t.Errorf("%s: %s changed by %g, want %g", event, k, got, d)
		}
	}
	for k, v := range after {
		if _, ok := want[k]; ok || !strings.HasPrefix(k, "medgate_") {
			continue
		}
		if strings.Contains(k, `route="/metrics"`) {
			continue
		}
		name := k[:strings.IndexByte(k, '{')]
		if !strings.HasSuffix(name, "_total") && !strings.HasSuffix(name, "_count") {
			continue
		}
		if strings.HasPrefix(name, "medgate_ledger_write_stall") {
			continue
		}
		if v != before[k] {
			t.Errorf("%s: %s changed by %g, want no change", event, k, v-before[k])
		}
	}
}

func req(route, method string, status int) string {
	return fmt.Sprintf(`medgate_http_requests_total{method=%q,route=%q,status="%d"}`, method, route, status)
}

func dur(route, method, class string) string {
	return fmt.Sprintf(`medgate_http_request_duration_seconds_count{class=%q,method=%q,route=%q}`, class, method, route)
}

// TestR4MetricsCountEachEventOnce drives the gateway through each kind of
// answer and reads /metrics after each: the counters the event should move
// move by exactly one, and no other does.
func TestR4MetricsCountEachEventOnce(t *testing.T) {
	h, eng := twoRegionHarness(t)
	const tok = "tok-H3716020001"
	settlements := func(kind, insured string) string {
		return fmt.Sprintf(`medgate_settlements_total{insured_region=%q,kind=%q,treating_region="371602"}`, insured, kind)
	}
	policy := `medgate_policy_call_duration_seconds_count{region="371600",version="v2024"}`
	const commits, entries, commitTotal = "medgate_ledger_commit_duration_seconds_count{}", "medgate_ledger_commit_entries_sum{}", "medgate_ledger_commits_total{}"
	const entriesCount = "medgate_ledger_commit_entries_count{}"

	step := func(event string, want counted, do func()) {
		t.Helper()
		before := scrape(t, h)
		do()
		checkDelta(t, event, before, scrape(t, h), want)
	}
	body := settleBody("MX-1", "EMP1", "371600", chronicVisit, oneLine)
	var sid string
	step("settlement", counted{req("/v1/settlements", "POST", 200): 1, dur("/v1/settlements", "POST", "2xx"): 1,
		settlements("settlement", "371600"): 1, policy: 1, commits: 1, entries: 1, entriesCount: 1, commitTotal: 1}, func() {
		sid = decodeAnswer(t, mustDo(t, h, 200, "POST", "/v1/settlements", tok, body)).SettlementID
	})
	step("replay", counted{req("/v1/settlements", "POST", 200): 1, dur("/v1/settlements", "POST", "2xx"): 1}, func() {
		if !decodeAnswer(t, mustDo(t, h, 200, "POST", "/v1/settlements", tok, body)).Replayed {
			t.Fatal("not a replay")
		}
	})
	quote := strings.Replace(string(body), `"request_id":"MX-1",`, ``, 1)
	step("quote", counted{req("/v1/settlements/quote", "POST", 200): 1, dur("/v1/settlements/quote", "POST", "2xx"): 1, policy: 1}, func() {
		mustDo(t, h, 200, "POST", "/v1/settlements/quote", tok, []byte(quote))
	})
	step("get", counted{req("/v1/settlements/{}", "GET", 200): 1, dur("/v1/settlements/{}", "GET", "2xx"): 1}, func() {
		mustDo(t, h, 200, "GET", "/v1/settlements/"+sid, tok, nil)
	})
	rev := []byte(`{"request_id":"MX-2","reason":"entered twice"}`)
	step("reversal", counted{req("/v1/settlements/{}/reversal", "POST", 200): 1, dur("/v1/settlements/{}/reversal", "POST", "2xx"): 1,
		settlements("reversal", "371600"): 1, commits: 1, entries: 1, entriesCount: 1, commitTotal: 1}, func() {
		mustDo(t, h, 200, "POST", "/v1/settlements/"+sid+"/reversal", tok, rev)
	})
	step("reversal replay", counted{req("/v1/settlements/{}/reversal", "POST", 200): 1, dur("/v1/settlements/{}/reversal", "POST", "2xx"): 1}, func() {
		mustDo(t, h, 200, "POST", "/v1/settlements/"+sid+"/reversal", tok, rev)
	})
	for _, c := range []struct {
		event, method, path, route, token string
		body                              []byte
		status                            int
		policyCalls                       float64
	}{
		{"400", "POST", "/v1/settlements", "/v1/settlements", tok, []byte(`{"request_id":"MX-3"}`), 400, 0},
		{"401", "POST", "/v1/settlements", "/v1/settlements", "", body, 401, 0},
		{"401 unknown token", "GET", "/v1/settlements/" + sid, "/v1/settlements/{}", "nope", nil, 401, 0},
		{"403", "POST", "/v1/settlements", "/v1/settlements", "tok-region-371600", body, 403, 0},
		{"404", "GET", "/v1/settlements/S999999999999", "/v1/settlements/{}", tok, nil, 404, 0},
		{"404 unmatched", "GET", "/v1/nothing/371602198807154321", "unmatched", "", nil, 404, 0},
		{"405", "DELETE", "/v1/settlements", "unmatched", tok, nil, 405, 0},
		{"409", "POST", "/v1/settlements", "/v1/settlements", tok, settleBody("MX-1", "EMP1", "371600", chronicVisit, `[{"code":"XA01","unit_price":"2.00","quantity":"1","amount":"2.00"}]`), 409, 0},
		{"413", "POST", "/v1/settlements", "/v1/settlements", tok, bytes.Repeat([]byte(" "), MaxBodyBytes+1), 413, 0},
		{"422", "POST", "/v1/settlements", "/v1/settlements", tok, settleBody("MX-4", "NOBODY", "371600", chronicVisit, oneLine), 422, 0},
	} {
		method := c.method
		if c.route == "unmatched" {
			method = "*"
		}
		class := fmt.Sprintf("%dxx", c.status/100)
		want := counted{req(c.route, method, c.status): 1, dur(c.route, method, class): 1}
		if c.policyCalls > 0 {
			want[policy] = c.policyCalls
		}
		step(c.event, want, func() { mustDo(t, h, c.status, c.method, c.path, c.token, c.body) })
	}

	// A policy that traps: its failure is counted once, by kind.
	m, err := eng.Load(context.Background(), "152500", "trapper", wasmgen.Policy(1, 8192, []byte{wasmgen.OpUnreachable}).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	h.policies.Put("152500", engine.Version{Name: "trapper", EffectiveFrom: 20230101, Module: m})
	step("trap", counted{req("/v1/settlements", "POST", 422): 1, dur("/v1/settlements", "POST", "4xx"): 1,
		`medgate_policy_call_duration_seconds_count{region="152500",version="trapper"}`:     1,
		`medgate_policy_call_failures_total{kind="trap",region="152500",version="trapper"}`: 1}, func() {
		mustDo(t, h, 422, "POST", "/v1/settlements", tok, settleBody("MX-5", "EMP2", "152500", chronicVisit, oneLine))
	})
	step("trap quote", counted{req("/v1/settlements/quote", "POST", 422): 1, dur("/v1/settlements/quote", "POST", "4xx"): 1,
		`medgate_policy_call_duration_seconds_count{region="152500",version="trapper"}`:     1,
		`medgate_policy_call_failures_total{kind="trap",region="152500",version="trapper"}`: 1}, func() {
		q := strings.Replace(string(settleBody("MX-6", "EMP2", "152500", chronicVisit, oneLine)), `"request_id":"MX-6",`, ``, 1)
		mustDo(t, h, 422, "POST", "/v1/settlements/quote", tok, []byte(q))
	})
}

// rawExchange writes each request on one connection and reads each answer.
func rawExchange(t *testing.T, h *harness, reqs ...string) []int {
	t.Helper()
	c := h.rawConn(t)
	defer c.Close()
	br := bufio.NewReader(c)
	var out []int
	for _, r := range reqs {
		if _, err := c.Write([]byte(r)); err != nil {
			t.Fatal(err)
		}
		var resp fasthttp.Response
		if err := resp.Read(br); err != nil {
			t.Fatalf("%.40q: %v", r, err)
		}
		out = append(out, resp.StatusCode())
	}
	return out
}

// Requests refused before they were read are counted under a route
// pattern (or "unmatched"), never under the previous request's route.
func TestR4MetricsRefusedBeforeRouting(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	step := func(event string, want counted, reqs ...string) {
		t.Helper()
		before := scrape(t, h)
		got := rawExchange(t, h, reqs...)
		t.Logf("%s: %v", event, got)
		checkDelta(t, event, before, scrape(t, h), want)
	}
	big := "X-Big: " + strings.Repeat("a", 8<<10) + "\r\n"
	step("413 transport", counted{req("/v1/settlements", "POST", 413): 1, dur("/v1/settlements", "POST", "4xx"): 1},
		"POST /v1/settlements HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer tok-H3716020001\r\nContent-Length: 30000000\r\n\r\n")
	step("431 first", counted{req("unmatched", "*", 431): 1, dur("unmatched", "*", "4xx"): 1},
		"GET /v1/settlements/S1 HTTP/1.1\r\nHost: g\r\n"+big+"\r\n")
	step("431 after a request", counted{req("/healthz", "GET", 200): 1, dur("/healthz", "GET", "2xx"): 1,
		req("unmatched", "*", 431): 1, dur("unmatched", "*", "4xx"): 1},
		"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n",
		"GET /v1/settlements/S1 HTTP/1.1\r\nHost: g\r\n"+big+"\r\n")
	step("malformed after a request", counted{req("/healthz", "GET", 200): 1, dur("/healthz", "GET", "2xx"): 1,
		req("unmatched", "*", 400): 1, dur("unmatched", "*", "4xx"): 1},
		"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: g\r\nContent-Length: x\r\n\r\n")
}

// A damaged blob block answered 503 ledger_unreadable is counted in
// medgate_ledger_read_errors_total, as /healthz reports it: an operator
// alerting on the counter must see what the health check sees.
func TestR4CorruptBlockIsCounted(t *testing.T) {
	h, id := damagedBlockHarness(t)
	before := scrape(t, h)
	mustDo(t, h, 503, "GET", "/v1/settlements/"+id, "tok-H3716020001", nil)
	after := scrape(t, h)
	if _, body := h.do("GET", "/healthz", "", nil); !strings.Contains(string(body), `"ledger":"read_errors"`) {
		t.Errorf("healthz: %s", body)
	}
	if d := after["medgate_ledger_read_errors_total{}"] - before["medgate_ledger_read_errors_total{}"]; d < 1 {
		t.Errorf("a 503 ledger_unreadable moved medgate_ledger_read_errors_total by %g, want at least 1", d)
	}
}

// A failed ledger write is one commit failure, no settlement, a 503; the
// ledger reports itself read-only on /metrics and /healthz.
func TestR4MetricsLedgerWriteFailure(t *testing.T) {
	for _, kind := range []string{"sync", "write"} {
		t.Run(kind, func(t *testing.T) {
			fault := walFault(kind)
			h := &harness{tb: t, fs: errorfs.Wrap(vfs.NewMem(), fault), dir: "ledger", policies: &engine.Policies{},
				world: refWorld(t, map[string][]string{"371600": {empActive}})}
			h.versions = referenceVersions(t, h.policies)
			h.start()
			t.Cleanup(h.stopAfterFailure)
			const tok = "tok-H3716020001"
			mustDo(t, h, 200, "POST", "/v1/settlements", tok, settleBody("WF-1", "EMP1", "371600", chronicVisit, oneLine))
			before := scrape(t, h)
			if before["medgate_ledger_read_only{}"] != 0 {
				t.Fatal("read-only before the fault")
			}
			fault.On()
			mustDo(t, h, 503, "POST", "/v1/settlements", tok, settleBody("WF-2", "EMP1", "371600", chronicVisit, oneLine))
			after := scrape(t, h)
			checkDelta(t, "failed write", before, after, counted{
				req("/v1/settlements", "POST", 503): 1, dur("/v1/settlements", "POST", "5xx"): 1,
				`medgate_policy_call_duration_seconds_count{region="371600",version="v2024"}`: 1,
				"medgate_ledger_commit_failures_total{}":                                      1,
			})
			if after["medgate_ledger_read_only{}"] != 1 {
				t.Errorf("medgate_ledger_read_only %g after a failed write", after["medgate_ledger_read_only{}"])
			}
			if _, body := h.do("GET", "/healthz", "", nil); string(body) != `{"status":"degraded","ledger":"read_only"}` {
				t.Errorf("healthz after a failed write: %s", body)
			}
			// Later writes are refused without a commit: no more failures,
			// and without calling the policy on state a failed write may
			// have left (TestR7NoRefusalFromAFailedWrite).
			before = scrape(t, h)
			mustDo(t, h, 503, "POST", "/v1/settlements", tok, settleBody("WF-3", "EMP1", "371600", chronicVisit, oneLine))
			checkDelta(t, "refused write", before, scrape(t, h), counted{
				req("/v1/settlements", "POST", 503): 1, dur("/v1/settlements", "POST", "5xx"): 1,
			})
		})
	}
}

// A nearly full disk shows on /healthz and /metrics while it lasts, and
// both recover by themselves once space is freed.
func TestR4HealthLowDiskRecovers(t *testing.T) {
	var free atomic.Uint64
	free.Store(10 << 30)
	h := &harness{tb: t, fs: vfs.NewMem(), dir: "ledger", policies: &engine.Policies{}, minFree: 1 << 30,
		freeSpace: func(string) (uint64, error) { return free.Load(), nil },
		world:     refWorld(t, map[string][]string{"371600": {empActive}})}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)
	wait := func(want string, low float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, body := h.do("GET", "/healthz", "", nil)
			m := scrape(t, h)
			if string(body) == want && m["medgate_ledger_low_disk{}"] == low {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("healthz %s, low_disk %g; want %s and %g", body, m["medgate_ledger_low_disk{}"], want, low)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait(`{"status":"ok"}`, 0)
	free.Store(1 << 20)
	wait(`{"status":"degraded","ledger":"disk_full"}`, 1)
	before := scrape(t, h)
	mustDo(t, h, 503, "POST", "/v1/settlements", "tok-H3716020001", settleBody("LD-1", "EMP1", "371600", chronicVisit, oneLine))
	checkDelta(t, "disk full", before, scrape(t, h), counted{
		req("/v1/settlements", "POST", 503): 1, dur("/v1/settlements", "POST", "5xx"): 1,
		`medgate_policy_call_duration_seconds_count{region="371600",version="v2024"}`: 1,
	})
	free.Store(10 << 30)
	wait(`{"status":"ok"}`, 0)
	mustDo(t, h, 200, "POST", "/v1/settlements", "tok-H3716020001", settleBody("LD-1", "EMP1", "371600", chronicVisit, oneLine))
}

// Each way a policy call fails is counted once, under its kind, for a
// settlement as for a quote; the policy's own words never reach the logs.
func TestR4MetricsPolicyFailureKinds(t *testing.T) {
	h, eng := twoRegionHarness(t)
	logs := logTo(h, zerolog.DebugLevel)
	const secret = "E11.902 of 371602198807154321"
	for i, c := range []struct {
		kind, version string
		wasm          []byte
		status        int
	}{
		{"timeout", "loop", wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes(), 422},
		{"check", "negative", answerModule(abi.Output{Basic: -5}), 422},
		{"check", "counter", answerModule(abi.Output{Changes: []abi.Counter{{Name: secret, Value: 1}}}), 422},
		{"malformed_answer", "outside", wasmgen.Policy(1, 8192, wasmgen.Answer(1024, 1<<20)).Bytes(), 422},
		{"refused", "refuses", answerModule(abi.Output{Refusal: "refused: " + secret}), 422},
	} {
		m, err := eng.Load(context.Background(), "152500", c.version, c.wasm)
		if err != nil {
			t.Fatal(err)
		}
		h.policies.Put("152500", engine.Version{Name: c.version, EffectiveFrom: 20230101, Module: m})
		for _, route := range []string{"/v1/settlements", "/v1/settlements/quote"} {
			before := scrape(t, h)
			b := settleBody(fmt.Sprintf("PK-%d", i), "EMP2", "152500", chronicVisit, oneLine)
			if route != "/v1/settlements" {
				b = bytes.Replace(b, []byte(fmt.Sprintf(`"request_id":"PK-%d",`, i)), nil, 1)
			}
			mustDo(t, h, c.status, "POST", route, "tok-H3716020001", b)
			checkDelta(t, c.version+" "+route, before, scrape(t, h), counted{
				req(route, "POST", c.status): 1, dur(route, "POST", "4xx"): 1,
				fmt.Sprintf(`medgate_policy_call_duration_seconds_count{region="152500",version=%q}`, c.version):         1,
				fmt.Sprintf(`medgate_policy_call_failures_total{kind=%q,region="152500",version=%q}`, c.kind, c.version): 1,
			})
		}
	}
	if out := logs.String(); strings.Contains(out, "371602198807154321") || strings.Contains(out, "E11.902") {
		t.Errorf("the logs quote what a policy wrote:\n%s", out)
	}
}

func TestR4RedactQuoted(t *testing.T) {
	for in, want := range map[string]string{
		`counter_name: counter name "E11.902 x" is malformed`: `counter_name: counter name "[redacted]" is malformed`,
		`counter "a\"b" changed twice; "c"`:                   `counter "[redacted]" changed twice; "[redacted]"`,
		`deductible 5 fen exceeds eligible 4`:                 `deductible 5 fen exceeds eligible 4`,
		`open "quote`:                                         `open "quote`,
	} {
		if got := redactQuoted(in); got != want {
			t.Errorf("redactQuoted(%q) = %q, want %q", in, got, want)
		}
	}
}

// A request refused at capacity (503) and one whose header did not arrive
// in time (408) are counted once each, under a route pattern.
func TestR4MetricsOverloadAndTimeout(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	h.srv.http.ReadTimeout = 300 * time.Millisecond
	h.srv.maxInflight = 0
	before := scrape(t, h)
	mustDo(t, h, 503, "GET", "/v1/settlements/S1", "tok-H3716020001", nil)
	after := scrape(t, h)
	checkDelta(t, "overloaded", before, after, counted{req("/v1/settlements/{}", "GET", 503): 1, dur("/v1/settlements/{}", "GET", "5xx"): 1})
	if after["medgate_http_inflight_requests{}"] != 0 {
		t.Errorf("inflight %g after a refusal", after["medgate_http_inflight_requests{}"])
	}
	h.srv.maxInflight = 4096

	before = scrape(t, h)
	c := h.rawConn(t)
	defer c.Close()
	c.Write([]byte("POST /v1/regions/371600/persons/371602198807154321/credits HTTP/1.1\r\nHost: g\r\n"))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("no answer to a slow header: %v", err)
	}
	t.Logf("slow header: %d %s", resp.StatusCode(), resp.Body())
	after = scrape(t, h)
	var moved []string
	for k, v := range after {
		if strings.HasPrefix(k, "medgate_http_requests_total") && v != before[k] && !strings.Contains(k, "/metrics") {
			moved = append(moved, k)
		}
	}
	if len(moved) != 1 || after[moved[0]]-before[moved[0]] != 1 || strings.Contains(moved[0], "371602198807154321") {
		t.Errorf("a %d moved %v", resp.StatusCode(), moved)
	}
	t.Log(moved)
}

// fasthttp's own messages (logged at debug level) never quote a request
// that could not be read: its path may hold a person's id, its header a
// token.
func TestR4UnreadableRequestsNotQuotedInLogs(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	logs := logTo(h, zerolog.DebugLevel)
	h.srv.http.Logger = fasthttpLogger{h.srv.log}
	const person, token = "371602198807154321", "tok-region-371600"
	for _, r := range []string{
		"POST /v1/regions/371600/persons/" + person + "/credits HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer " + token + "\r\nContent-Length: x\r\n\r\n",
		"POST /v1/regions/371600/persons/" + person + "/credits HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer " + token + "\r\nX-Bad\r\n\r\n",
		"POST /v1/regions/371600/persons/" + person + "/credits\x01 HTTP/1.1\r\nHost: g\r\n\r\n",
		"POST /v1/regions/371600/persons/" + person + "/credits HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer " + token + "\x01\r\n\r\n",
		"POST /v1/regions/371600/persons/" + person + "/credits HTTP/1.1\r\nHost: g\r\nAuthorization Bearer " + token + "\r\n\r\n",
	} {
		st := rawExchange(t, h, r)
		t.Logf("%v", st)
	}
	time.Sleep(100 * time.Millisecond)
	if out := logs.String(); strings.Contains(out, person) || strings.Contains(out, token) {
		t.Errorf("the logs quote an unreadable request:\n%s", out)
	}
}
