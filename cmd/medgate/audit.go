package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"medgate/gateway"
	"medgate/ledger"
)

// medgate audit: recompute every index of a stopped gateway's ledger from
// its entries and compare (ledger.AuditStore).
func init() {
	register(command{name: "audit", summary: "recompute counters, balances, trace codes and idempotency keys from the entries and compare (offline)",
		run: auditCmd})
}

const auditUsage = `Usage:
  medgate audit --db DIR [--tmp DIR] [--json]

Opens the ledger in DIR read-only (the gateway must be stopped; nothing is
written, not even the WAL replay, so a store is audited exactly as a crash
left it), verifies the hash chain and the Merkle tree, and recomputes from
the entries alone what the writer keeps next to them: idempotency keys,
trace-code owners, reversal marks, counters per (region, person, year),
balances (opening balance + entries + credits), month totals, month
records, hospital rows and closed months (their frozen statements
included). Every difference is listed.
The records expected of each entry are sorted on disk, in a directory
made under --tmp (default $TMPDIR or /tmp) and removed at the end: allow
about 400 bytes an entry there (20 GB for 50 million entries); the
audit's memory does not grow with the entries.
Exit codes: 0 the audit passed, 1 it found problems, 2 usage, an
unreadable store or an interrupted audit (SIGINT or SIGTERM: the audit
stops and removes its directory under --tmp).
`

// auditVisit, set by tests, sees each entry the audit replays.
var auditVisit func(*ledger.Entry)

func auditCmd(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("audit", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, auditUsage) }
	dir := fl.String("db", "", "the ledger's Pebble directory (the gateway must be stopped)")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	tmp := fl.String("tmp", "", "where to sort the expected records (default $TMPDIR or /tmp)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *dir == "" || fl.NArg() != 0 {
		fmt.Fprint(stderr, auditUsage)
		return exitUsage
	}
	// An interrupted audit must still remove its scratch store (up to
	// about 400 bytes an entry): the first SIGINT or SIGTERM stops it, and
	// a second one ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	rep, err := ledger.AuditStoreWith(*dir, nil, ledger.AuditOptions{Statement: gateway.ClosedStatement, TempDir: *tmp,
		Visit: auditVisit, Context: ctx})
	if err != nil {
		fmt.Fprintf(stderr, "medgate audit: %v\n", err)
		return exitUsage
	}
	if *asJSON {
		out := struct {
			OK            bool               `json:"ok"`
			Entries       uint64             `json:"entries"`
			Settlements   uint64             `json:"settlements"`
			Reversals     uint64             `json:"reversals"`
			Credits       uint64             `json:"credits"`
			Openings      uint64             `json:"opening_balances"`
			Head          string             `json:"head"`
			Chain         string             `json:"chain_error,omitempty"`
			Tree          string             `json:"tree_error,omitempty"`
			Checked       ledger.AuditCounts `json:"checked"`
			Problems      []string           `json:"problems"`
			TotalProblems int                `json:"total_problems"`
		}{OK: rep.OK(), Entries: rep.Entries, Settlements: rep.Settlements, Reversals: rep.Reversals,
			Credits: rep.Credits, Openings: rep.Openings, Head: hex.EncodeToString(rep.Head[:]), Checked: rep.Checked, Problems: rep.Problems, TotalProblems: rep.TotalProblems}
		if rep.ChainErr != nil {
			out.Chain = rep.ChainErr.Error()
		}
		if rep.TreeErr != nil {
			out.Tree = rep.TreeErr.Error()
		}
		if out.Problems == nil {
			out.Problems = []string{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		c := rep.Checked
		fmt.Fprintf(stdout, "entries %d (%d settlements, %d reversals, %d credits, %d opening balances), head %x\n",
			rep.Entries, rep.Settlements, rep.Reversals, rep.Credits, rep.Openings, rep.Head)
		fmt.Fprintf(stdout, "checked: %d idempotency keys, %d trace codes, %d reversal marks, %d counter sets, %d balances, %d credit records, %d opening-balance records, %d month pairs, %d months, %d hospital rows, %d closed months\n",
			c.IdempotencyKeys, c.TraceCodes, c.ReversalMarks, c.CounterSets, c.Persons, c.Credits, c.Openings, c.MonthPairs, c.Months, c.HospitalRows, c.ClosedMonths)
		if err := rep.Err(); err != nil {
			fmt.Fprintln(stdout, err)
		} else {
			fmt.Fprintln(stdout, "audit passed: the chain verifies and every index equals its recomputation from the entries")
		}
	}
	if !rep.OK() {
		return exitFailure
	}
	return exitOK
}
