package bench

import (
	"sort"
	"strconv"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to an hour, with 3
// significant digits (0.1 % resolution). An open loop's latency counts
// from the due time and has no bound (a stalled server lets the backlog
// grow for as long as the phase drains it): a longer one is recorded as
// an hour, never dropped, so that it still counts as a request and in the
// tail.
const histMaxMicros = int64(time.Hour / time.Microsecond)

func newHistogram() *hdr.Histogram { return hdr.New(1, histMaxMicros, 3) }

// recordLatency adds micros (≥ 0) to h, an hour at most.
func recordLatency(h *hdr.Histogram, micros int64) {
	_ = h.RecordValue(min(micros, histMaxMicros))
}

// recorder is one connection's tally. The connection records under its
// own (uncontended) lock; the once-a-second collector swaps the interval
// out, so figures are merged without stopping the load.
type recorder struct {
	mu     sync.Mutex
	hist   *hdr.Histogram
	lag    *hdr.Histogram // open loop: send time − due time, µs
	ok     [numKinds]int64
	errs   map[string]int64
	late   int64
	sample []string
}

func newRecorder() *recorder {
	return &recorder{hist: newHistogram(), lag: newHistogram(), errs: map[string]int64{}}
}

// record adds one finished request; problem is "" for a good answer, else
// the status or what was wrong with it.
// late marks an open-loop request sent after its intended time because
// every connection was busy; lagMicros (open loop; negative: none) is how
// long after its due time it was sent.
func (r *recorder) record(kind Kind, micros, lagMicros int64, problem string, body []byte, late bool) {
	r.mu.Lock()
	recordLatency(r.hist, max(micros, 1))
	if lagMicros >= 0 {
		recordLatency(r.lag, lagMicros)
	}
	if late {
		r.late++
	}
	if problem == "" {
		r.ok[kind]++
	} else {
		r.errs[problem]++
		if len(r.sample) < 3 {
			r.sample = append(r.sample, problem+" "+kind.String()+": "+truncate(string(body), 300))
		}
	}
	r.mu.Unlock()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// window is what a set of recorders counted over some time.
type window struct {
	hist   *hdr.Histogram
	lag    *hdr.Histogram
	ok     [numKinds]int64
	errs   map[string]int64
	late   int64
	sample []string
}

func newWindow() *window {
	return &window{hist: newHistogram(), lag: newHistogram(), errs: map[string]int64{}}
}

// drain moves r's interval into w and resets r.
func (w *window) drain(r *recorder) {
	r.mu.Lock()
	w.hist.Merge(r.hist)
	r.hist.Reset()
	w.lag.Merge(r.lag)
	r.lag.Reset()
	for k := range r.ok {
		w.ok[k] += r.ok[k]
		r.ok[k] = 0
	}
	for e, n := range r.errs {
		w.errs[e] += n
		delete(r.errs, e)
	}
	w.late += r.late
	r.late = 0
	if len(w.sample) < 5 {
		w.sample = append(w.sample, r.sample...)
	}
	r.sample = nil
	r.mu.Unlock()
}

func (w *window) add(o *window) {
	w.hist.Merge(o.hist)
	w.lag.Merge(o.lag)
	for k := range o.ok {
		w.ok[k] += o.ok[k]
	}
	for e, n := range o.errs {
		w.errs[e] += n
	}
	w.late += o.late
	if len(w.sample) < 5 {
		w.sample = append(w.sample, o.sample...)
	}
}

func (w *window) errors() int64 {
	var n int64
	for _, c := range w.errs {
		n += c
	}
	return n
}

func (w *window) committed() int64 { return w.ok[KindSettle] + w.ok[KindReversal] }

// Latency summarizes a latency distribution, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func ms(micros int64) float64 { return float64(micros) / 1000 }

func summarize(h *hdr.Histogram) Latency {
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

// PercentilePoint is one point of a latency percentile curve.
type PercentilePoint struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// percentileCurve samples h at percentiles spaced evenly on the
// "number of nines" scale, the way HdrHistogram plots are read.
func percentileCurve(h *hdr.Histogram) []PercentilePoint {
	if h.TotalCount() == 0 {
		return nil
	}
	var pts []PercentilePoint
	for _, p := range []float64{0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96.25, 97.5,
		98, 98.75, 99, 99.25, 99.5, 99.6, 99.7, 99.8, 99.9, 99.95, 99.97, 99.99, 99.995, 99.999, 100} {
		pts = append(pts, PercentilePoint{Percentile: p, Ms: ms(h.ValueAtQuantile(p))})
	}
	return pts
}

// statusKey names an HTTP status as an error key.
func statusKey(status int) string { return strconv.Itoa(status) }

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
