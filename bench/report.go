package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// WriteTable prints every figure of r as a table, then the verdicts.
func WriteTable(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tmode\tconns\trate/s\treq/s\treq/core-s\tcommitted/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\tlate\tsend lag p99 ms\tRSS idle/max/HWM MiB\tCPU srv/cli/irq/other\t")
	for _, t := range r.Targets {
		mem := fmt.Sprintf("%.0f/%.0f/%.0f", mib(t.IdleRSSKiB), mib(t.MaxRSSKiB), mib(t.HWMKiB))
		for _, p := range []*PhaseResult{t.Closed, t.Open} {
			if p == nil {
				continue
			}
			rate, committed, lag := "-", "-", "-"
			if p.Mode == Open {
				rate = fmt.Sprint(p.TargetRate)
			}
			if p.SendLag != nil {
				lag = fmt.Sprintf("%.2f", p.SendLag.P99)
			}
			if t.Name != TargetHello {
				committed = fmt.Sprintf("%.0f", p.CommittedPerSec)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.0f\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%d\t%s\t%s\t%s\t\n",
				t.Name, p.Mode, p.Connections, rate, p.ReqPerSec, p.ReqPerCoreSec, committed,
				p.Latency.P50, p.Latency.P99, p.Latency.P999, p.Latency.Max, errorText(p), p.Late, lag, mem, cpuText(p.CPU))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeServerTable(w, r); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, v := range r.Verdicts {
		mark := "MISSED"
		if v.Met {
			mark = "met"
		}
		op := "≤"
		if v.AtLeast {
			op = "≥"
		}
		value := fmt.Sprintf("%.3f", v.Value)
		target := fmt.Sprintf("%.2f", v.Target)
		if v.Unit == "ms" {
			value, target = fmt.Sprintf("%.2f ms", v.Value), fmt.Sprintf("%.0f ms", v.Target)
		}
		perCore := ""
		if v.PerCore > 0 {
			perCore = fmt.Sprintf("; per core used: %.3f", v.PerCore)
		}
		fmt.Fprintf(w, "%-6s %s = %s (target %s %s): %s%s\n", mark, v.Name, value, op, target, v.Margin, perCore)
	}
	return nil
}

// writeServerTable prints the gateway's own figures (its /metrics).
func writeServerTable(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := false
	for _, t := range r.Targets {
		for _, p := range []*PhaseResult{t.Closed, t.Open} {
			if p == nil || p.Server == nil {
				continue
			}
			if !header {
				fmt.Fprintln(w, "\ngateway /metrics over each phase (means; counts of what makes a tail):")
				fmt.Fprintf(tw, "target\tmode\tgroup commits\tentries/commit\tcommit+fsync ms\tpolicy call ms\tin-server ms\tcommits > 10 ms\trequests > 10 ms\twrite stalls (ms)\twake-ups waiting > %.2f ms\t\n", p.Server.WakeupBoundMs)
				header = true
			}
			s := p.Server
			late := "-"
			if s.Wakeups > 0 {
				late = fmt.Sprintf("%.2f %%", 100*float64(s.WakeupsLate)/float64(s.Wakeups))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t%.3f\t%.2f\t%d\t%d\t%d (%.0f)\t%s\t\n", t.Name, p.Mode, s.Commits, s.EntriesPerCommit, s.CommitMs, s.PolicyCallMs, s.HandlerMs,
				s.SlowCommits, s.SlowRequests, s.WriteStalls, s.WriteStallMs, late)
		}
	}
	return tw.Flush()
}

func cpuText(c *CPU) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f/%.2f/%.2f/%.2f", c.Server, c.Client, c.IRQ, c.Other)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func errorText(p *PhaseResult) string {
	if len(p.Errors) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range sortedKeys(p.Errors) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, p.Errors[k]))
	}
	return strings.Join(parts, " ")
}

// WriteReport writes result.json, table.txt and latency.png into dir and
// returns their paths.
func WriteReport(dir string, r *Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	jsonPath := filepath.Join(dir, "result.json")
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\ncommit %s (dirty tree: %v), %s\nmachine: %d CPUs, %s, kernel %s, %s\n\n",
		r.Command, r.Commit, r.Dirty, r.Date, r.Machine.CPUs, r.Machine.CPU, r.Machine.Kernel, r.Machine.GoVersion)
	if d := r.Disk; d != nil {
		fmt.Fprintf(&sb, "ledger disk (%s): write + fdatasync of %d B, %d times: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n\n",
			r.Settings.LedgerFS, d.Bytes, d.Writes, d.Sync.P50, d.Sync.P99, d.Sync.P999, d.Sync.Max)
	}
	if err := WriteTable(&sb, r); err != nil {
		return nil, err
	}
	tablePath := filepath.Join(dir, "table.txt")
	if err := os.WriteFile(tablePath, []byte(sb.String()), 0o644); err != nil {
		return nil, err
	}
	pngPath := filepath.Join(dir, "latency.png")
	if err := Plot(pngPath, r); err != nil {
		return nil, err
	}
	return []string{jsonPath, tablePath, pngPath}, nil
}
