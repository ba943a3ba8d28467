package gateway

import (
	"bytes"
	"errors"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/ledger"
)

// Metrics are the gateway's Prometheus instruments and their registry. A
// Server makes its own unless ServerConfig.Metrics gives one; one Metrics
// serves one Server.
//
// The request path adds no allocation once a (route, status) or policy
// version has been seen: the children of every metric vector are resolved
// once and cached (WithLabelValues allocates its variadic slice and
// validates the labels on every call).
type Metrics struct {
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec   // route, method, status
	latency     *prometheus.HistogramVec // route, method, class
	settlements *prometheus.CounterVec   // kind, insured_region, treating_region
	policyTime  *prometheus.HistogramVec // region, version
	policyFail  *prometheus.CounterVec   // region, version, kind
	commitTime  prometheus.Histogram
	commitSize  prometheus.Histogram
	commitFail  prometheus.Counter

	routes    map[*Route]*routeStats // read-only once built
	unmatched *routeStats

	pairMu sync.RWMutex
	pairs  map[pairKey]prometheus.Counter

	calls sync.Map // engine.Runner → prometheus.Observer

	bound atomic.Bool
	// storeText, once bound to a server with a ledger, is its store's
	// metrics as text (the admin listener's /debug/ledger).
	storeText atomic.Pointer[func() string]
}

// Statuses the gateway answers, each with a cached counter per route; any
// other status takes the (allocating) slow path.
var statusSlot = func() (t [600]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, s := range []int{200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 503} {
		t[s] = int8(i)
	}
	return
}()

const statusSlots = 14

var statusClasses = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

type routeStats struct {
	route, method string
	byStatus      [statusSlots]atomic.Pointer[prometheus.Counter]
	byClass       [6]atomic.Pointer[prometheus.Observer]
}

type pairKey struct {
	kind              ledger.Kind
	insured, treating string
}

// NewMetrics makes the instruments, registered with a fresh registry along
// with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medgate_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medgate_http_request_duration_seconds",
			Help:    "Time from reading a request to having its answer, by route pattern, method and status class.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route", "method", "class"}),
		settlements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medgate_settlements_total",
			Help: "Settlements and reversals written to the ledger (replays and quotes excluded), by kind, insured region and treating region.",
		}, []string{"kind", "insured_region", "treating_region"}),
		policyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medgate_policy_call_duration_seconds",
			Help:    "Time of one policy call for a settlement or quote (borrowing an instance, the call, the answer check), by insured region and version.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5},
		}, []string{"region", "version"}),
		policyFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medgate_policy_call_failures_total",
			Help: "Policy calls that did not give a usable answer, by insured region, version and kind (trap, timeout, malformed_answer, check, unavailable; refused counts a deliberate refusal by the policy).",
		}, []string{"region", "version", "kind"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "medgate_ledger_commit_duration_seconds",
			Help:    "Time of one synced group commit of the ledger (Pebble batch commit with fsync).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		commitSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "medgate_ledger_commit_entries",
			Help:    "Entries (settlements, reversals, credits and opening balances) per group commit.",
			Buckets: []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		commitFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medgate_ledger_commit_failures_total",
			Help: "Group commits whose sync failed (the ledger turns read-only after the first).",
		}),
		routes: map[*Route]*routeStats{},
		pairs:  map[pairKey]prometheus.Counter{},
	}
	for _, r := range routes {
		m.routes[r] = &routeStats{route: r.Pattern, method: r.Method}
	}
	m.unmatched = &routeStats{route: "unmatched", method: "*"}
	m.Registry.MustRegister(m.requests, m.latency, m.settlements, m.policyTime, m.policyFail,
		m.commitTime, m.commitSize, m.commitFail,
		goCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// goCollector is the Go runtime collector plus two of the runtime's
// histograms that explain a latency tail the handlers' own timers cannot:
// how long goroutines wait for a processor once runnable
// (go_sched_latencies_seconds; a settlement wakes four or five goroutines
// on its way: connection, writer, Pebble's WAL flusher, syncer) and how long
// the collector stops the world (go_sched_pauses_total_gc_seconds).
func goCollector() prometheus.Collector {
	return collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: schedMetrics}))
}

var schedMetrics = regexp.MustCompile(`^/sched/(latencies|pauses/total/gc):seconds$`)

// bind registers the instruments that read the server's state (in-flight
// requests, the ledger head, policy instance pools) and observes the
// ledger's commits. A Metrics binds to one server only.
func (m *Metrics) bind(s *Server) {
	if m.bound.Swap(true) {
		panic("gateway: a Metrics serves one Server")
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medgate_http_inflight_requests",
			Help: "Requests being worked on (those needing a token); beyond the limit the gateway answers 503.",
		}, func() float64 { return float64(s.inflight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medgate_http_inflight_limit",
			Help: "The limit of requests worked on at once.",
		}, func() float64 { return float64(s.maxInflight) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medgate_http_connections_open",
			Help: "Client connections open, idle keep-alive ones included.",
		}, func() float64 { return float64(s.conns.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medgate_http_connections_limit",
			Help: "The limit of client connections open at once (--max-conns); beyond, 503 too_many_connections.",
		}, func() float64 { return float64(s.conns.max) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "medgate_http_connections_refused_total",
			Help:        "Client connections refused on opening, by the bound they were past: max_conns (503) or max_conns_per_ip (429).",
			ConstLabels: prometheus.Labels{"limit": "max_conns"},
		}, func() float64 { return float64(s.conns.refused[refusedTotal].Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "medgate_http_connections_refused_total",
			Help:        "Client connections refused on opening, by the bound they were past: max_conns (503) or max_conns_per_ip (429).",
			ConstLabels: prometheus.Labels{"limit": "max_conns_per_ip"},
		}, func() float64 { return float64(s.conns.refused[refusedPerIP].Load()) }),
		&stateCollector{s: s},
	)
	if s.db != nil {
		s.db.ObserveCommits(m.observeCommit)
		text := s.db.StoreMetrics
		m.storeText.Store(&text)
	}
}

func (m *Metrics) observeCommit(took time.Duration, entries int, err error) {
	if err != nil {
		m.commitFail.Inc()
		return
	}
	m.commitTime.Observe(took.Seconds())
	m.commitSize.Observe(float64(entries))
}

// observeRequest counts one answered request. r is nil for a path no route
// matches.
func (m *Metrics) observeRequest(r *Route, status int, took time.Duration) {
	rs := m.unmatched
	if r != nil {
		if x, ok := m.routes[r]; ok {
			rs = x
		}
	}
	if status >= 0 && status < len(statusSlot) && statusSlot[status] >= 0 {
		slot := &rs.byStatus[statusSlot[status]]
		c := slot.Load()
		if c == nil {
			n := m.requests.WithLabelValues(rs.route, rs.method, strconv.Itoa(status))
			slot.CompareAndSwap(nil, &n)
			c = slot.Load()
		}
		(*c).Inc()
	} else {
		m.requests.WithLabelValues(rs.route, rs.method, strconv.Itoa(status)).Inc()
	}
	class := status / 100
	if class < 1 || class > 5 {
		class = 5
	}
	slot := &rs.byClass[class]
	o := slot.Load()
	if o == nil {
		n := m.latency.WithLabelValues(rs.route, rs.method, statusClasses[class])
		slot.CompareAndSwap(nil, &n)
		o = slot.Load()
	}
	(*o).Observe(took.Seconds())
}

// settled counts an entry newly written to the ledger.
func (m *Metrics) settled(e *ledger.Entry) {
	k := pairKey{kind: e.Kind, insured: e.InsuredRegion, treating: e.TreatingRegion}
	m.pairMu.RLock()
	c, ok := m.pairs[k]
	m.pairMu.RUnlock()
	if !ok {
		kind := "settlement"
		if e.Kind == ledger.KindReversal {
			kind = "reversal"
		}
		m.pairMu.Lock()
		if c, ok = m.pairs[k]; !ok {
			c = m.settlements.WithLabelValues(kind, e.InsuredRegion, e.TreatingRegion)
			m.pairs[k] = c
		}
		m.pairMu.Unlock()
	}
	c.Inc()
}

// policyCall records one call of a policy version for a settlement or quote.
func (m *Metrics) policyCall(r engine.Runner, region, version string, took time.Duration, err error) {
	o, ok := m.calls.Load(r)
	if !ok {
		o, _ = m.calls.LoadOrStore(r, m.policyTime.WithLabelValues(region, version))
	}
	o.(prometheus.Observer).Observe(took.Seconds())
	if err != nil {
		kind := "error"
		var ce *engine.CallError
		if errors.As(err, &ce) {
			kind = ce.Kind.String()
		}
		m.policyFail.WithLabelValues(region, version, kind).Inc()
	}
}

// forgetClosed drops the cached timings of modules that were closed
// (withdrawn versions): keyed by the module, the cache would otherwise keep
// each one, its decoded code and data, for the gateway's life. Their
// series stay registered, as counted.
func (m *Metrics) forgetClosed() {
	m.calls.Range(func(k, _ any) bool {
		if c, ok := k.(interface{ Closed() bool }); ok && c.Closed() {
			m.calls.Delete(k)
		}
		return true
	})
}

// stateCollector reads, at scrape time, what the server holds: the
// instances alive in each policy version's pool and the ledger's state.
type stateCollector struct{ s *Server }

var (
	descInstances = prometheus.NewDesc("medgate_policy_instances",
		"Instances alive (idle or in use) in the pool of each policy version in force.", []string{"region", "version"}, nil)
	descHead = prometheus.NewDesc("medgate_ledger_head_seq",
		"Sequence number of the last durable ledger entry.", nil, nil)
	descReadOnly = prometheus.NewDesc("medgate_ledger_read_only",
		"1 when a ledger write failed and the ledger refuses writes until restarted (sync failure), else 0.", nil, nil)
	descLowDisk = prometheus.NewDesc("medgate_ledger_low_disk",
		"1 while the ledger's disk has less free space than --ledger-min-free-mb and writes are refused (503 ledger_disk_full), else 0.", nil, nil)
	descReadErrors = prometheus.NewDesc("medgate_ledger_read_errors_total",
		"Failed reads of the ledger's tables and blob files (I/O errors, corrupt blocks) since it was opened; requests that needed them are answered 503 ledger_unreadable.", nil, nil)
	descCommitWaiting = prometheus.NewDesc("medgate_ledger_commit_waiting_seconds",
		"How long the group commit being written or synced now has waited, 0 when none is: a disk whose writes or syncs hang shows here (and /healthz says commit_stalled) while every write waits.", nil, nil)
	descCommits = prometheus.NewDesc("medgate_ledger_commits_total",
		"Group commits of the ledger since it was opened.", nil, nil)
	descStalls = prometheus.NewDesc("medgate_ledger_write_stalls_total",
		"Pebble write stalls (a commit waited for a flush or compaction).", nil, nil)
	descStallTime = prometheus.NewDesc("medgate_ledger_write_stall_seconds_total",
		"Time Pebble write stalls lasted, in all (counted when each ends).", nil, nil)
	descRebuilds = prometheus.NewDesc("medgate_ledger_filter_rebuilds",
		"Key filters being rebuilt in the background from the store (after they grew several links).", nil, nil)
	descDebt = prometheus.NewDesc("medgate_ledger_compaction_debt_bytes",
		"Bytes Pebble estimates its compactions must still rewrite to bring the levels within their target sizes.", nil, nil)
	descCompacting = prometheus.NewDesc("medgate_ledger_compactions_running",
		"Pebble compactions in progress.", nil, nil)
	descL0 = prometheus.NewDesc("medgate_ledger_l0_tables",
		"Tables in Pebble's level 0, where memtable flushes land.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInstances
	ch <- descHead
	ch <- descReadOnly
	ch <- descLowDisk
	ch <- descReadErrors
	ch <- descCommits
	ch <- descCommitWaiting
	ch <- descStalls
	ch <- descStallTime
	ch <- descRebuilds
	ch <- descDebt
	ch <- descCompacting
	ch <- descL0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	if s.policies != nil {
		for _, region := range s.policies.Regions() {
			for _, v := range s.policies.Versions(region) {
				if mod, ok := v.Module.(*engine.Module); ok {
					ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(mod.Live()), region, v.Name)
				}
			}
		}
	}
	if s.db != nil {
		seq, _ := s.db.Head()
		ch <- prometheus.MustNewConstMetric(descHead, prometheus.GaugeValue, float64(seq))
		ro := 0.0
		if s.db.Failed() {
			ro = 1
		}
		ch <- prometheus.MustNewConstMetric(descReadOnly, prometheus.GaugeValue, ro)
		low := 0.0
		if s.db.LowDisk() {
			low = 1
		}
		ch <- prometheus.MustNewConstMetric(descLowDisk, prometheus.GaugeValue, low)
		ch <- prometheus.MustNewConstMetric(descReadErrors, prometheus.CounterValue, float64(s.db.ReadErrors()))
		ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(s.db.Commits()))
		ch <- prometheus.MustNewConstMetric(descCommitWaiting, prometheus.GaugeValue, s.db.CommitWaiting().Seconds())
		ch <- prometheus.MustNewConstMetric(descStalls, prometheus.CounterValue, float64(s.db.Stalls()))
		ch <- prometheus.MustNewConstMetric(descStallTime, prometheus.CounterValue, s.db.StallTime().Seconds())
		ch <- prometheus.MustNewConstMetric(descRebuilds, prometheus.GaugeValue, float64(s.db.FilterRebuilds()))
		c := s.db.Compactions()
		ch <- prometheus.MustNewConstMetric(descDebt, prometheus.GaugeValue, float64(c.DebtBytes))
		ch <- prometheus.MustNewConstMetric(descCompacting, prometheus.GaugeValue, float64(c.Running))
		ch <- prometheus.MustNewConstMetric(descL0, prometheus.GaugeValue, float64(c.L0Tables))
	}
}

// metricsContentType is the Prometheus text exposition format.
var metricsContentType = string(expfmt.NewFormat(expfmt.TypeTextPlain))

// WriteText writes every metric in the Prometheus text format.
func (m *Metrics) WriteText(w *bytes.Buffer) error {
	mfs, err := m.Registry.Gather()
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if eerr := enc.Encode(mf); eerr != nil && err == nil {
			err = eerr
		}
	}
	return err
}

func init() {
	registerRoutes(Route{Method: "GET", Pattern: "/metrics", Handle: func(s *Server, ctx *fasthttp.RequestCtx, _ Principal, _ []string) error {
		var b bytes.Buffer
		if err := s.metrics.WriteText(&b); err != nil {
			s.log.Error().Err(err).Msg("metrics: gathering failed")
		}
		ctx.SetContentType(metricsContentType)
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBody(b.Bytes())
		return nil
	}})
}
