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
}

// The histograms read from /metrics (summed over their labels).
var scraped = []string{
	"medgate_ledger_commit_duration_seconds",
	"medgate_ledger_commit_entries",
	"medgate_policy_call_duration_seconds",
	"medgate_http_request_duration_seconds",
}

// scrapeMetrics reads the _sum and _count of the scraped histograms from
// GET /metrics; nil when the server has none.
func scrapeMetrics(addr string) map[string]float64 {
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/metrics", 5*time.Second)
	if err != nil || status != fasthttp.StatusOK {
		return nil
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// Labels may hold spaces; the value is the last field.
			name = name[:i]
			rest = line[strings.LastIndexByte(line, ' ')+1:]
		}
		for _, h := range scraped {
			if name == h+"_sum" || name == h+"_count" {
				v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err == nil {
					m[name] += v
				}
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
	}
}
