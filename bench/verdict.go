package bench

import (
	"errors"
	"fmt"
	"strings"
)

// The targets of the issue "Speed".
const (
	GoalCommitVsHello = 0.40 // committed settlements/s ÷ hello-world req/s
	GoalWasmVsNative  = 0.80 // wasm ÷ native throughput
	GoalOpenP99Ms     = 5.0  // open-loop p99 at half the max throughput
)

// Verdict is one headline figure against its target.
type Verdict struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	// AtLeast: the value must be ≥ Target (else ≤).
	AtLeast bool   `json:"at_least"`
	Unit    string `json:"unit"`
	Met     bool   `json:"met"`
	// Margin says by how much it was met or missed.
	Margin string `json:"margin"`
	// PerCore is the same ratio of throughputs per core used (see
	// PhaseResult.ReqPerCoreSec), less disturbed by other work on the
	// machine; 0 when not a throughput ratio.
	PerCore float64 `json:"per_core,omitempty"`
}

func (r *Result) target(name string) *TargetResult {
	for i := range r.Targets {
		if r.Targets[i].Name == name {
			return &r.Targets[i]
		}
	}
	return nil
}

// Verdicts computes the headline ratios from whichever targets ran.
func Verdicts(r *Result) []Verdict {
	var vs []Verdict
	hello, native, wasm := r.target(TargetHello), r.target(TargetNative), r.target(TargetWasm)
	if hello != nil && wasm != nil && hello.Closed.ReqPerSec > 0 {
		v := ratioVerdict("committed settlements/s (wasm) ÷ hello-world req/s",
			wasm.Closed.CommittedPerSec/hello.Closed.ReqPerSec, GoalCommitVsHello)
		if wasm.Closed.ReqPerSec > 0 {
			v.PerCore = perCore(wasm.Closed, hello.Closed) * wasm.Closed.CommittedPerSec / wasm.Closed.ReqPerSec
		}
		vs = append(vs, refuseFailed(v, false, wasm, hello))
	}
	if native != nil && wasm != nil && native.Closed.ReqPerSec > 0 {
		v := ratioVerdict("wasm ÷ native throughput (req/s, closed loop)",
			wasm.Closed.ReqPerSec/native.Closed.ReqPerSec, GoalWasmVsNative)
		v.PerCore = perCore(wasm.Closed, native.Closed)
		vs = append(vs, refuseFailed(v, false, wasm, native))
	}
	if wasm != nil && wasm.Open != nil && wasm.Closed != nil {
		// The target's load is half the maximum (the closed loop's
		// throughput); the rate derived from it lost less than 1 req/s to
		// int. A lighter load (-open-fraction below 0.5) has a shorter tail
		// and cannot meet it.
		rate, maxRate := float64(wasm.Open.TargetRate), wasm.Closed.ReqPerSec
		atHalf := rate+1 >= maxRate/2
		at := "half max"
		if !atHalf {
			at = fmt.Sprintf("%.2f of max", rate/maxRate)
		}
		v := Verdict{Name: fmt.Sprintf("open-loop p99 at %s (wasm, %d req/s)", at, wasm.Open.TargetRate),
			Value: wasm.Open.Latency.P99, Target: GoalOpenP99Ms, Unit: "ms"}
		v.Met = v.Value <= v.Target && atHalf
		if v.Value <= v.Target {
			v.Margin = fmt.Sprintf("met by %.2f ms (%.0f%% of the budget used)", v.Target-v.Value, 100*v.Value/v.Target)
		} else {
			v.Margin = fmt.Sprintf("missed by %.2f ms (%.1f× the target)", v.Value-v.Target, v.Value/v.Target)
		}
		if !atHalf {
			v.Margin = fmt.Sprintf("not the target's load: offered %.0f req/s, under half the closed loop's %.0f; the figures: %s", rate, maxRate, v.Margin)
		}
		if r.Disk != nil {
			// A commit waits for up to two syncs: the one under way, then its own.
			v.Margin += fmt.Sprintf("; the disk's own write+sync: p99 %.2f ms, p99.9 %.2f ms", r.Disk.Sync.P99, r.Disk.Sync.P999)
		}
		if l := wasm.Open.SendLag; l != nil {
			// Counted in the latency, never seen by the server.
			v.Margin += fmt.Sprintf("; the client sent its requests late by p99 %.2f ms", l.P99)
		}
		if s := wasm.Open.Server; s != nil && wasm.Open.Requests > 0 {
			// What the server's own timers saw against what the client
			// saw: a tail the handler does not see is waiting to run.
			v.Margin += fmt.Sprintf("; in the server, %.2f %% of requests took over 10 ms", 100*float64(s.SlowRequests)/float64(wasm.Open.Requests))
			if s.Wakeups > 0 {
				v.Margin += fmt.Sprintf(" and %.2f %% of its goroutines' wake-ups waited over %.2f ms for a processor", 100*float64(s.WakeupsLate)/float64(s.Wakeups), s.WakeupBoundMs)
			}
		}
		vs = append(vs, refuseFailed(v, true, wasm))
	}
	return vs
}

// refuseFailed marks v as missed when a phase it was computed from had a
// request not answered 200 as expected: a failed request counts in req/s
// (a quick 503 or 422 as throughput) and in the latencies (as a short
// one), so such figures measure something else than the targets ask.
// v was computed from the open phases of targets if open, else from
// their closed ones.
func refuseFailed(v Verdict, open bool, targets ...*TargetResult) Verdict {
	var bad []string
	for _, t := range targets {
		p := t.Closed
		if open {
			p = t.Open
		}
		if n := p.ErrorCount(); n > 0 {
			bad = append(bad, fmt.Sprintf("%s %s: %d of %d requests failed (%s)", t.Name, p.Mode, n, p.Requests, errorText(p)))
		}
	}
	if len(bad) > 0 {
		v.Met = false
		v.Margin = "not a measurement, " + strings.Join(bad, "; ") + "; the figures: " + v.Margin
	}
	return v
}

// perCore is a's throughput per core used ÷ b's.
func perCore(a, b *PhaseResult) float64 {
	if a.ReqPerCoreSec == 0 || b.ReqPerCoreSec == 0 {
		return 0
	}
	return a.ReqPerCoreSec / b.ReqPerCoreSec
}

func ratioVerdict(name string, value, target float64) Verdict {
	v := Verdict{Name: name, Value: value, Target: target, AtLeast: true, Unit: "ratio", Met: value >= target}
	if v.Met {
		v.Margin = fmt.Sprintf("met by %.1f pp", 100*(value-target))
	} else {
		v.Margin = fmt.Sprintf("missed by %.1f pp (needs %.2f× the throughput)", 100*(target-value), target/value)
	}
	return v
}

// CheckHarness fails when the harness itself is broken, whatever the
// speed: any request not answered 200 as expected (every generated request
// is valid, so a 409 or 422 is a generator bug), or a phase with no
// throughput. It is what bench-smoke and the test check.
func CheckHarness(r *Result) error {
	var errs []error
	for _, t := range r.Targets {
		for _, p := range []*PhaseResult{t.Closed, t.Open} {
			if p == nil {
				continue
			}
			if p.Requests == 0 || p.ReqPerSec <= 0 {
				errs = append(errs, fmt.Errorf("%s %s: no throughput", t.Name, p.Mode))
			}
			if n := p.ErrorCount(); n > 0 {
				errs = append(errs, fmt.Errorf("%s %s: %d of %d requests failed %v; e.g. %q", t.Name, p.Mode, n, p.Requests, p.Errors, p.ErrorSamples))
			}
			if t.Name != TargetHello && p.OK[KindSettle.String()] == 0 {
				errs = append(errs, fmt.Errorf("%s %s: no settlement was committed", t.Name, p.Mode))
			}
		}
	}
	return errors.Join(errs...)
}
