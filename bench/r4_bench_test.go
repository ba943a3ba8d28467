package bench

import (
	"testing"
	"time"
)

// A latency far above the usual (a stalled server, an open loop whose
// backlog grew for minutes) is still one request: it counts in Requests,
// and the percentiles and maximum see it, never less than it was. Before,
// the histograms ended at about 67 s and dropped anything longer silently:
// the phase counted fewer requests and a lower tail than it had.
func TestR4LongLatenciesAreCounted(t *testing.T) {
	r := newRecorder()
	lats := []time.Duration{30 * time.Second, 70 * time.Second, 10 * time.Minute, 3 * time.Hour}
	for _, d := range lats {
		r.record(KindSettle, d.Microseconds(), d.Microseconds(), "", nil, true)
	}
	w := newWindow()
	w.drain(r)
	for name, h := range map[string]interface{ TotalCount() int64 }{"latency": w.hist, "send lag": w.lag} {
		if n := h.TotalCount(); n != int64(len(lats)) {
			t.Errorf("%s histogram counted %d of %d requests", name, n, len(lats))
		}
	}
	// 30 s is kept to the histogram's resolution (0.1 %).
	if got := ms(w.hist.ValueAtQuantile(25)); got < 29_970 || got > 30_030 {
		t.Errorf("a 30 s latency reads back as %.0f ms", got)
	}
	// 10 min likewise; the longest, beyond the range, is counted at no less
	// than the range's end (an hour).
	if got := ms(w.hist.ValueAtQuantile(75)); got < 599_400 || got > 600_600 {
		t.Errorf("a 10 min latency reads back as %.0f ms", got)
	}
	if got := ms(w.hist.Max()); got < 3_600_000 {
		t.Errorf("the maximum reads %.0f ms after a 3 h latency", got)
	}
	// Rounds merge without losing them either.
	p := &PhaseResult{hist: w.hist, lag: w.lag, Requests: w.hist.TotalCount(), Seconds: 1}
	m := mergePhases([]*PhaseResult{p, p})
	if m.hist.TotalCount() != int64(2*len(lats)) || m.lag.TotalCount() != int64(2*len(lats)) {
		t.Errorf("merged rounds count %d latencies and %d lags, want %d", m.hist.TotalCount(), m.lag.TotalCount(), 2*len(lats))
	}
}
