package bench

import (
	"fmt"
	"testing"
)

// exposition is a /metrics text with the series the bench reads; its
// verbs are, in order: commits within 10 ms and all, their time; entries
// in all; settlements within 10 ms and all, their time; failed GETs
// within 10 ms and all; write stalls and their time; wake-ups within
// 82 µs, within 0.92 ms, within 10.5 ms and all.
const exposition = `# HELP medgate_ledger_commit_duration_seconds x
medgate_ledger_commit_duration_seconds_bucket{le="0.005"} 1
medgate_ledger_commit_duration_seconds_bucket{le="0.01"} %[1]d
medgate_ledger_commit_duration_seconds_bucket{le="+Inf"} %[2]d
medgate_ledger_commit_duration_seconds_sum %[3]g
medgate_ledger_commit_duration_seconds_count %[2]d
medgate_ledger_commit_entries_sum %[4]d
medgate_ledger_commit_entries_count %[2]d
medgate_http_request_duration_seconds_bucket{class="2xx",method="POST",route="/v1/settlements",le="0.01"} %[5]d
medgate_http_request_duration_seconds_bucket{class="2xx",method="POST",route="/v1/settlements",le="+Inf"} %[6]d
medgate_http_request_duration_seconds_sum{class="2xx",method="POST",route="/v1/settlements"} %[7]g
medgate_http_request_duration_seconds_count{class="2xx",method="POST",route="/v1/settlements"} %[6]d
medgate_http_request_duration_seconds_bucket{class="4xx",method="GET",route="/v1/a b",le="0.01"} %[8]d
medgate_http_request_duration_seconds_count{class="4xx",method="GET",route="/v1/a b"} %[9]d
medgate_ledger_write_stalls_total %[10]d
medgate_ledger_write_stall_seconds_total %[11]g
go_sched_latencies_seconds_bucket{le="8.191999999999999e-05"} %[12]d
go_sched_latencies_seconds_bucket{le="0.0009175039999999999"} %[13]d
go_sched_latencies_seconds_bucket{le="0.010485759999999998"} %[14]d
go_sched_latencies_seconds_bucket{le="+Inf"} %[15]d
go_sched_latencies_seconds_count %[15]d
`

func TestServerStatsFromMetrics(t *testing.T) {
	before := parseMetrics(fmt.Appendf(nil, exposition, 95, 100, 0.5, 150, 180, 200, 1.0, 10, 10, 1, 0.05, 900, 990, 1000, 1000))
	after := parseMetrics(fmt.Appendf(nil, exposition, 195, 210, 1.5, 370, 400, 430, 2.0, 12, 13, 3, 0.2, 1800, 1960, 1998, 2000))
	s := serverStats(before, after)
	if s == nil {
		t.Fatal("no stats")
	}
	check := func(name string, got, want float64) {
		t.Helper()
		if d := got - want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("commits", float64(s.Commits), 110)
	check("entries/commit", s.EntriesPerCommit, 2)
	check("commit ms", s.CommitMs, 1000.0/110)
	// 110 commits, 100 of them within 10 ms.
	check("commits over 10 ms", float64(s.SlowCommits), 10)
	// 233 requests, 222 within 10 ms (both label sets).
	check("requests over 10 ms", float64(s.SlowRequests), 11)
	check("write stalls", float64(s.WriteStalls), 2)
	check("write stall ms", s.WriteStallMs, 150)
	// 1000 wake-ups, 970 within the bound nearest under 1 ms.
	check("wake-ups", float64(s.Wakeups), 1000)
	check("late wake-ups", float64(s.WakeupsLate), 30)
	check("wake-up bound", s.WakeupBoundMs, 0.9175039999999999)
}

// The open-loop verdict says what the server's own timers and the
// runtime saw, so that a tail outside the handler can be told apart.
func TestOpenVerdictNamesServerTail(t *testing.T) {
	open := &PhaseResult{Requests: 1000, Latency: Latency{P99: 12.5}, SendLag: &Latency{P99: 4.25},
		Server: &ServerStats{SlowRequests: 3, Wakeups: 400, WakeupsLate: 20, WakeupBoundMs: 0.9175}}
	r := &Result{Targets: []TargetResult{{Name: TargetWasm, Closed: &PhaseResult{}, Open: open}}}
	var found bool
	for _, v := range Verdicts(r) {
		if v.Unit != "ms" {
			continue
		}
		found = true
		if v.Met {
			t.Error("12.5 ms met a 5 ms target")
		}
		want := "missed by 7.50 ms (2.5× the target); the client sent its requests late by p99 4.25 ms; in the server, 0.30 % of requests took over 10 ms and 5.00 % of its goroutines' wake-ups waited over 0.92 ms for a processor"
		if v.Margin != want {
			t.Errorf("margin\n got %s\nwant %s", v.Margin, want)
		}
	}
	if !found {
		t.Fatal("no open-loop verdict")
	}
}
