package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Mode is how load is offered.
type Mode string

// Load modes.
const (
	// Closed: each connection sends its next request as soon as the last
	// one is answered; measures the most the server can do.
	Closed Mode = "closed"
	// Open: requests are due on a fixed schedule whatever the answers do,
	// and latency counts from the due time, so a stalled server is charged
	// for every request it kept waiting (no coordinated omission).
	Open Mode = "open"
)

// LoadConfig is one phase of load against one server.
type LoadConfig struct {
	Addr        string // host:port
	Mode        Mode
	Connections int           // default 64
	Rate        int           // Open: requests per second
	Duration    time.Duration // default 20s
	Timeout     time.Duration // per request; default 10s
	// Label prefixes the progress line.
	Label string
	// Progress, if set, gets a progress line once a second, rewritten in
	// place (carriage return), and a newline at the end.
	Progress io.Writer
	// Sample, if set, is called once a second; its value (the server's
	// RSS in KiB) goes into the timeline.
	Sample func() int64
	// CheckBodies checks 200 answers as the gateway's: not a replay, and a
	// settlement id that later reversals use. Off for the hello server.
	CheckBodies bool
	// ServerPid, if known, lets the phase report the server's CPU time.
	ServerPid int
}

func (c *LoadConfig) ensureDefaults() error {
	if c.Connections == 0 {
		c.Connections = 64
	}
	if c.Duration == 0 {
		c.Duration = 20 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Mode == "" {
		c.Mode = Closed
	}
	switch {
	case c.Addr == "":
		return errors.New("bench: load: no address")
	case c.Mode != Closed && c.Mode != Open:
		return fmt.Errorf("bench: load: mode %q is not closed or open", c.Mode)
	case c.Mode == Open && c.Rate <= 0:
		return errors.New("bench: load: open loop needs a rate > 0")
	case c.Connections < 1:
		return errors.New("bench: load: connections must be at least 1")
	}
	return nil
}

// PhaseResult is what one phase measured.
type PhaseResult struct {
	Mode        Mode    `json:"mode"`
	Connections int     `json:"connections"`
	TargetRate  int     `json:"target_rate,omitempty"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	// OK counts 200 answers by request kind (settle, quote, reversal).
	OK        map[string]int64 `json:"ok"`
	ReqPerSec float64          `json:"req_per_s"`
	// CommittedPerSec counts acknowledged ledger writes: settlements and
	// reversals answered 200 (each fsync'ed before its answer).
	CommittedPerSec float64           `json:"committed_per_s"`
	Latency         Latency           `json:"latency"`
	Percentiles     []PercentilePoint `json:"percentiles"`
	// Errors counts every request not answered 200 by status, plus
	// "transport" (no answer) and wrong 200 answers ("replayed").
	Errors       map[string]int64 `json:"errors"`
	ErrorSamples []string         `json:"error_samples,omitempty"`
	// Late counts open-loop requests sent more than 1 ms after their due
	// time because every connection was busy (their latency includes the
	// wait).
	Late int64 `json:"late,omitempty"`
	// SendLag (open loop) is how long after its due time each request was
	// sent: a connection still busy, or the client's own goroutine waking
	// late from its sleep on a machine it shares with the server. It is
	// part of the latency (counted from the due time), and the part the
	// server never saw.
	SendLag *Latency `json:"send_lag,omitempty"`
	// CPU is where the machine's CPU went during the phase.
	CPU *CPU `json:"cpu,omitempty"`
	// ReqPerCoreSec is ReqPerSec per core the measurement used (server,
	// client, irq): on a machine shared with other work, the figure that
	// other work disturbs least (exact only while the server is CPU-bound).
	ReqPerCoreSec float64 `json:"req_per_core_s,omitempty"`
	// Server is the gateway's own view (its /metrics), when it has one.
	Server   *ServerStats    `json:"server,omitempty"`
	Timeline []TimelinePoint `json:"timeline"`

	hist      *hdr.Histogram // for merging rounds
	lag       *hdr.Histogram // SendLag's
	committed int64
}

func (p *PhaseResult) setPerCore() {
	if p.CPU != nil && p.CPU.Used() > 0 {
		p.ReqPerCoreSec = p.ReqPerSec / p.CPU.Used()
	}
}

// ErrorCount is the number of requests that were not answered 200 as
// expected.
func (p *PhaseResult) ErrorCount() int64 {
	var n int64
	for _, c := range p.Errors {
		n += c
	}
	return n
}

// TimelinePoint is one second of a phase.
type TimelinePoint struct {
	Second          float64 `json:"t_s"`
	ReqPerSec       float64 `json:"req_per_s"`
	CommittedPerSec float64 `json:"committed_per_s"`
	P99             float64 `json:"p99_ms"`
	Errors          int64   `json:"errors"`
	RSSKiB          int64   `json:"server_rss_kib,omitempty"`
}

// RunLoad offers load to cfg.Addr with requests from traffic and measures
// it. Every connection has its own fasthttp.HostClient with one
// connection, so Connections is exactly the number of TCP connections.
func RunLoad(ctx context.Context, cfg LoadConfig, traffic *Traffic) (*PhaseResult, error) {
	if err := cfg.ensureDefaults(); err != nil {
		return nil, err
	}
	recs := make([]*recorder, cfg.Connections)
	streams := make([]*Stream, cfg.Connections)
	for i := range recs {
		recs[i] = newRecorder()
		streams[i] = traffic.NewStream()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	cpu0 := readCPU(cfg.ServerPid)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var due func() (time.Time, bool)
	if cfg.Mode == Closed {
		due = func() (time.Time, bool) {
			now := time.Now()
			return now, now.Before(deadline) && ctx.Err() == nil
		}
	} else {
		var next atomic.Int64
		total := int64(cfg.Duration.Seconds() * float64(cfg.Rate))
		due = func() (time.Time, bool) {
			i := next.Add(1) - 1
			// Integer schedule: request i is due i/Rate seconds in.
			return start.Add(time.Duration(i * int64(time.Second) / int64(cfg.Rate))), i < total && ctx.Err() == nil
		}
	}

	var wg sync.WaitGroup
	for i := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drive(ctx, &cfg, streams[i], recs[i], traffic, due)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	total := newWindow()
	var timeline []TimelinePoint
	last := start
	collect := func(now time.Time) {
		w := newWindow()
		for _, r := range recs {
			w.drain(r)
		}
		total.add(w)
		secs := now.Sub(last).Seconds()
		// The last window is what is left after the final tick: too short
		// to be a rate worth plotting (its requests count in the totals).
		if secs < 0.5 {
			return
		}
		last = now
		n := w.hist.TotalCount()
		pt := TimelinePoint{
			Second:          now.Sub(start).Seconds(),
			ReqPerSec:       float64(n) / secs,
			CommittedPerSec: float64(w.committed()) / secs,
			P99:             ms(w.hist.ValueAtQuantile(99)),
			Errors:          w.errors(),
		}
		if cfg.Sample != nil {
			pt.RSSKiB = cfg.Sample()
		}
		timeline = append(timeline, pt)
		if cfg.Progress != nil {
			commits := ""
			if cfg.CheckBodies {
				commits = fmt.Sprintf(" %7.0f commits/s", pt.CommittedPerSec)
			}
			fmt.Fprintf(cfg.Progress, "\r%-20s %5.1fs %8.0f req/s%s  p99 so far %8.2f ms  errors %d   ",
				cfg.Label, pt.Second, pt.ReqPerSec, commits, ms(total.hist.ValueAtQuantile(99)), total.errors())
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case now := <-tick.C:
			collect(now)
		case <-done:
			break loop
		}
	}
	end := time.Now()
	cpu1 := readCPU(cfg.ServerPid)
	collect(end)
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	secs := end.Sub(start).Seconds()
	res := &PhaseResult{
		Mode: cfg.Mode, Connections: cfg.Connections, Seconds: secs,
		Requests: total.hist.TotalCount(), OK: map[string]int64{},
		ReqPerSec:       float64(total.hist.TotalCount()) / secs,
		CommittedPerSec: float64(total.committed()) / secs,
		Latency:         summarize(total.hist),
		Percentiles:     percentileCurve(total.hist),
		Errors:          total.errs,
		ErrorSamples:    total.sample,
		Late:            total.late,
		CPU:             cpuBetween(cpu0, cpu1),
		Timeline:        timeline,
		hist:            total.hist,
		committed:       total.committed(),
	}
	if cfg.Mode == Open {
		res.TargetRate = cfg.Rate
		res.lag = total.lag
		l := summarize(total.lag)
		res.SendLag = &l
	}
	res.setPerCore()
	if !cfg.CheckBodies {
		// Not the gateway: nothing was committed anywhere.
		res.CommittedPerSec, res.committed = 0, 0
		for i := range res.Timeline {
			res.Timeline[i].CommittedPerSec = 0
		}
	}
	for k := range numKinds {
		res.OK[k.String()] = total.ok[k]
	}
	return res, nil
}

// drive is one connection: it takes the next due time, waits for it (open
// loop), sends, and records the latency from the due time.
func drive(ctx context.Context, cfg *LoadConfig, st *Stream, rec *recorder, traffic *Traffic, due func() (time.Time, bool)) {
	hc := &fasthttp.HostClient{
		Addr:                     cfg.Addr,
		MaxConns:                 1,
		ReadTimeout:              cfg.Timeout,
		WriteTimeout:             cfg.Timeout,
		MaxIdleConnDuration:      time.Minute,
		NoDefaultUserAgentHeader: true,
		// A POST that failed in flight must not be sent again behind our
		// back: it would be counted once and settled twice.
		MaxIdemponentCallAttempts: 1,
	}
	defer hc.CloseIdleConnections()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var r Request
	for {
		// Build the request before its due time: generating it is the
		// client's work, not the server's latency.
		st.Next(&r)
		req.Reset()
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURIBytes(r.Path)
		req.Header.SetHost(cfg.Addr)
		req.Header.Set("Authorization", r.Auth)
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(r.Body)
		at, ok := due()
		if !ok {
			return
		}
		late, lag := waitDue(ctx, cfg.Mode, at)
		err := hc.Do(req, resp)
		micros := time.Since(at).Microseconds()
		problem := "transport"
		status := 0
		if err == nil {
			status = resp.StatusCode()
			if status == fasthttp.StatusOK {
				problem = traffic.Done(&r, status, resp.Body(), cfg.CheckBodies)
			} else {
				problem = statusKey(status)
			}
		}
		var body []byte
		if problem != "" {
			body = resp.Body()
			if err != nil {
				body = []byte(err.Error())
			}
		}
		rec.record(r.Kind, micros, lag, problem, body, late)
	}
}

// waitDue waits until at, a request's due time. In the open loop it says
// whether the request was late (every connection busy past its due time
// by more than 1 ms) and how long after at it is sent (µs); the closed
// loop has no schedule to be late for (its due time is when the
// connection asked, and a goroutine descheduled right after is no busy
// connection): never late, lag -1.
func waitDue(ctx context.Context, mode Mode, at time.Time) (late bool, lagMicros int64) {
	if mode != Open {
		return false, -1
	}
	if d := time.Until(at); d > 0 {
		// time.Sleep uses the goroutine's own timer: no allocation per
		// request, which matters at tens of thousands a second on a
		// machine the client shares with the server.
		for d > 0 && ctx.Err() == nil {
			time.Sleep(min(d, 100*time.Millisecond))
			d = time.Until(at)
		}
	} else {
		late = d < -time.Millisecond
	}
	return late, max(time.Since(at).Microseconds(), 0)
}
