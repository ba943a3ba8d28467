package bench

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// ServerStats are the gateway's own figures over a phase, from the
// difference of two scrapes of its /metrics: what the group commit and
// the policy calls cost, which the client cannot see.
type ServerStats struct {
	Commits int64 `json:"commits"`
	// EntriesPerCommit is the mean group-commit batch size.
	EntriesPerCommit float64 `json:"entries_per_commit"`
	// CommitMs is the mean time of one synced group commit (fsync included).
	CommitMs float64 `json:"commit_ms"`
	// PolicyCallMs is the mean time of one policy call (borrow an
	// instance, call, check the answer).
	PolicyCallMs float64 `json:"policy_call_ms"`
	// HandlerMs is the mean time from reading a request to having its
	// answer, inside the server.
	HandlerMs float64 `json:"handler_ms"`
	// What makes a latency tail, counted: Pebble write stalls (commits
	// held until a flush or compaction caught up) and their time in all,
	// and the group commits and requests that took the server more than
	// 10 ms.
	WriteStalls  int64   `json:"write_stalls"`
	WriteStallMs float64 `json:"write_stall_ms"`
	SlowCommits  int64   `json:"commits_over_10ms"`
	SlowRequests int64   `json:"requests_over_10ms"`
	// Wakeups is how many times a goroutine of the server became runnable,
	// as the runtime samples them (go_sched_latencies_seconds: about one in
	// eight); WakeupsLate how many of those then waited longer than
	// WakeupBoundMs for a processor: the runtime's own bucket bound
	// nearest under 1 ms. A request wakes four or five goroutines on its
	// way, so such waits make a tail the handler's timer does not see.
	Wakeups       int64   `json:"wakeups,omitempty"`
	WakeupsLate   int64   `json:"wakeups_late,omitempty"`
	WakeupBoundMs float64 `json:"wakeup_bound_ms,omitempty"`
}

// The histograms read from /metrics (_sum and _count, summed over their
// labels).
var scraped = []string{
	"medgate_ledger_commit_duration_seconds",
	"medgate_ledger_commit_entries",
	"medgate_policy_call_duration_seconds",
	"medgate_http_request_duration_seconds",
}

// The series read from /metrics as they are (unlabelled).
var scrapedCounters = []string{
	"medgate_ledger_write_stalls_total",
	"medgate_ledger_write_stall_seconds_total",
	schedHist + "_count",
}

// The histograms whose bucket at 10 ms is read (summed over their other
// labels), as name+"_bucket_10ms".
var scrapedAt10ms = []string{
	"medgate_ledger_commit_duration_seconds",
	"medgate_http_request_duration_seconds",
}

const le10ms = `le="0.01"`

// schedHist is the runtime's histogram of runnable-to-running waits; its
// buckets are read as schedBucket+le.
const (
	schedHist   = "go_sched_latencies_seconds"
	schedBucket = schedHist + "_bucket@"
)

// scrapeMetrics reads the scraped series (see parseMetrics) from GET
// /metrics; nil when the server has none.
func scrapeMetrics(addr string) map[string]float64 {
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/metrics", 5*time.Second)
	if err != nil || status != fasthttp.StatusOK {
		return nil
	}
	return parseMetrics(body)
}

// parseMetrics reads from a Prometheus text exposition the _sum and _count
// of the scraped histograms, the scraped counters, the 10 ms buckets of
// scrapedAt10ms and every bucket of the runtime's scheduling latencies.
func parseMetrics(body []byte) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		var labels string
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// Labels may hold spaces; the value is the last field.
			j := strings.LastIndexByte(line, ' ')
			name, labels = name[:i], line[i:j]
			rest = line[j+1:]
		}
		add := func(key string) {
			if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				m[key] += v
			}
		}
		for _, h := range scraped {
			if name == h+"_sum" || name == h+"_count" {
				add(name)
			}
		}
		for _, c := range scrapedCounters {
			if name == c {
				add(name)
			}
		}
		if name == schedHist+"_bucket" {
			if le, ok := labelValue(labels, "le"); ok {
				add(schedBucket + le)
			}
		}
		for _, h := range scrapedAt10ms {
			if name == h+"_bucket" && strings.Contains(labels, le10ms) {
				add(h + "_bucket_10ms")
			}
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// labelValue is the value of label name in a {…} label set.
func labelValue(labels, name string) (string, bool) {
	_, v, ok := strings.Cut(labels, name+`="`)
	if !ok {
		return "", false
	}
	v, _, ok = strings.Cut(v, `"`)
	return v, ok
}

// lateWakeups is how many wake-ups between the scrapes waited longer than
// the largest bucket bound of the runtime's histogram not above 1 ms, and
// that bound in ms; 0, 0 without the histogram.
func lateWakeups(before, after map[string]float64) (late int64, boundMs float64) {
	var bound float64
	var key string
	for k := range after {
		le, ok := strings.CutPrefix(k, schedBucket)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(le, 64)
		if err == nil && v <= 0.001 && v > bound {
			bound, key = v, k
		}
	}
	if key == "" {
		return 0, 0
	}
	n := (after[schedHist+"_count"] - before[schedHist+"_count"]) - (after[key] - before[key])
	return int64(n), bound * 1000
}

// serverStats is what happened between two scrapes.
func serverStats(before, after map[string]float64) *ServerStats {
	if before == nil || after == nil {
		return nil
	}
	d := func(name string) float64 { return after[name] - before[name] }
	over10ms := func(h string) float64 { return d(h+"_count") - d(h+"_bucket_10ms") }
	mean := func(h string, scale float64) float64 {
		n := d(h + "_count")
		if n <= 0 {
			return 0
		}
		return d(h+"_sum") / n * scale
	}
	st := &ServerStats{
		Commits:          int64(d("medgate_ledger_commit_entries_count")),
		EntriesPerCommit: mean("medgate_ledger_commit_entries", 1),
		CommitMs:         mean("medgate_ledger_commit_duration_seconds", 1000),
		PolicyCallMs:     mean("medgate_policy_call_duration_seconds", 1000),
		HandlerMs:        mean("medgate_http_request_duration_seconds", 1000),
		WriteStalls:      int64(d("medgate_ledger_write_stalls_total")),
		WriteStallMs:     d("medgate_ledger_write_stall_seconds_total") * 1000,
		SlowCommits:      int64(over10ms("medgate_ledger_commit_duration_seconds")),
		SlowRequests:     int64(over10ms("medgate_http_request_duration_seconds")),
		Wakeups:          int64(d(schedHist + "_count")),
	}
	st.WakeupsLate, st.WakeupBoundMs = lateWakeups(before, after)
	return st
}
