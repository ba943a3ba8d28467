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
}

// The histograms read from /metrics (_sum and _count, summed over their
// labels).
var scraped = []string{
	"medgate_ledger_commit_duration_seconds",
	"medgate_ledger_commit_entries",
	"medgate_policy_call_duration_seconds",
	"medgate_http_request_duration_seconds",
}

// The counters read from /metrics as they are.
var scrapedCounters = []string{
	"medgate_ledger_write_stalls_total",
	"medgate_ledger_write_stall_seconds_total",
}

// The histograms whose bucket at 10 ms is read (summed over their other
// labels), as name+"_bucket_10ms".
var scrapedAt10ms = []string{
	"medgate_ledger_commit_duration_seconds",
	"medgate_http_request_duration_seconds",
}

const le10ms = `le="0.01"`

// scrapeMetrics reads the _sum and _count of the scraped histograms from
// GET /metrics; nil when the server has none.
func scrapeMetrics(addr string) map[string]float64 {
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/metrics", 5*time.Second)
	if err != nil || status != fasthttp.StatusOK {
		return nil
	}
	return parseMetrics(body)
}

// parseMetrics reads the scraped series from a Prometheus text exposition.
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
	return &ServerStats{
		Commits:          int64(d("medgate_ledger_commit_entries_count")),
		EntriesPerCommit: mean("medgate_ledger_commit_entries", 1),
		CommitMs:         mean("medgate_ledger_commit_duration_seconds", 1000),
		PolicyCallMs:     mean("medgate_policy_call_duration_seconds", 1000),
		HandlerMs:        mean("medgate_http_request_duration_seconds", 1000),
		WriteStalls:      int64(d("medgate_ledger_write_stalls_total")),
		WriteStallMs:     d("medgate_ledger_write_stall_seconds_total") * 1000,
		SlowCommits:      int64(over10ms("medgate_ledger_commit_duration_seconds")),
		SlowRequests:     int64(over10ms("medgate_http_request_duration_seconds")),
	}
}
