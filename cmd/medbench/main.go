// Command medbench measures the gateway: `medbench run` compares the
// gateway (wasm and native policies) with a hello-world baseline and
// writes a report; `medbench world` only writes a bench world; `medbench
// load` offers load to a gateway that is already running. It binds flags to
// package bench, which does the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"medgate/bench"
)

const usage = `medbench: load benchmark of the medgate gateway

Usage:
  medbench run [flags]     hello-world, native and wasm gateway: closed loop, open loop at half max; report
  medbench world [flags]   write a bench world directory and exit
  medbench load [flags]    offer load to a running gateway (needs the world it was started with);
                           exit 1 if any request was not answered 200
  medbench prefill [flags] grow a ledger fast, for the growth benchmark (bench/growth.sh)
  medbench help

Run "medbench <command> -h" for the flags.
`

func main() {
	// The hello-world baseline is this binary re-executed.
	bench.MaybeRunHelloChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "world":
		err = cmdWorld(args[1:], stdout, stderr)
	case "load":
		err = cmdLoad(ctx, args[1:], stdout, stderr)
	case "prefill":
		err = cmdPrefill(ctx, args[1:], stdout, stderr)

	default:
		fmt.Fprintf(stderr, "medbench: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "medbench:", err)
		return 1
	}
	return 0
}

func worldFlags(fl *flag.FlagSet, cfg *bench.WorldConfig) {
	fl.StringVar(&cfg.Source, "source", "", "reference world directory (default: <repo>/testdata/world)")
	fl.IntVar(&cfg.PersonsPerRegion, "persons", 20000, "generated persons per insured region")
	fl.Uint64Var(&cfg.Seed, "seed", 1, "seed of the world and the traffic")
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg bench.Config
	fl := flag.NewFlagSet("run", flag.ContinueOnError)
	fl.SetOutput(stderr)
	worldFlags(fl, &cfg.World)
	out := fl.String("out", "bench/out", "directory for result.json, table.txt and latency.png")
	targets := fl.String("targets", "hello,native,wasm", "targets to run, in order")
	fl.IntVar(&cfg.Connections, "connections", 64, "connections (closed and open loop)")
	fl.DurationVar(&cfg.Warmup, "warmup", 3*time.Second, "closed-loop warmup per target, not measured")
	fl.DurationVar(&cfg.Duration, "duration", 20*time.Second, "closed-loop duration per target")
	fl.IntVar(&cfg.Rounds, "rounds", 4, "split each target's closed and open loop into this many slices, taken by the targets in turn")
	fl.DurationVar(&cfg.OpenDuration, "open-duration", 0, "open-loop duration per target (default: -duration)")
	fl.Float64Var(&cfg.OpenFraction, "open-fraction", 0.5, "open-loop rate as a fraction of the closed-loop throughput (negative: no open loop)")
	fl.StringVar(&cfg.Binary, "binary", "", "prebuilt medgate binary (default: go build ./cmd/medgate)")
	fl.StringVar(&cfg.Modules, "modules", "", "policy module directory (default: build/policies when fresh, else built)")
	fl.StringVar(&cfg.Work, "work", "", "scratch directory for world, binary and ledgers (default: a temporary one under bench/)")
	fl.DurationVar(&cfg.QuietWait, "quiet-wait", 2*time.Minute, "before measuring, wait at most this long for the machine to be nearly idle (0: don't)")
	fl.IntVar(&cfg.DiskSyncWrites, "disk-sync-writes", 2000, "synced writes that measure the ledger disk's own sync latency before the targets (negative: skip)")
	fl.StringVar(&cfg.ProfileDir, "profile", "", "write CPU and allocation profiles of each gateway target's closed loop into this `directory` (via its --admin-listen pprof; adds profiling overhead to the figures)")
	fl.BoolVar(&cfg.KeepWork, "keep", false, "keep the scratch directory (ledgers, server logs)")
	smoke := fl.Bool("smoke", false, "a seconds-long run on a small world (overrides -persons, -connections and the durations) that fails unless every request was answered 200 as expected and every phase had throughput")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *smoke {
		bench.Smoke(&cfg)
	}
	cfg.Targets = strings.Split(*targets, ",")
	cfg.Traffic.Seed = cfg.World.Seed
	cfg.Progress = stderr
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.Command = "medbench run " + strings.Join(args, " ")
	paths, err := bench.WriteReport(*out, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s\ncommit %s (dirty tree: %v), %d CPUs (%s)\n\n", res.Command, res.Commit, res.Dirty, res.Machine.CPUs, res.Machine.CPU)
	if err := bench.WriteTable(stdout, res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join(paths, ", "))
	if *smoke {
		if err := bench.CheckHarness(res); err != nil {
			return fmt.Errorf("smoke: the harness is broken:\n%w", err)
		}
		fmt.Fprintln(stdout, "smoke: every request answered as expected")
	}
	return nil
}

func cmdWorld(args []string, stdout, stderr io.Writer) error {
	var cfg bench.WorldConfig
	fl := flag.NewFlagSet("world", flag.ContinueOnError)
	fl.SetOutput(stderr)
	worldFlags(fl, &cfg)
	fl.StringVar(&cfg.Dir, "out", "bench/out/world", "directory to write the world into")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := defaultSource(&cfg); err != nil {
		return err
	}
	w, err := bench.GenerateWorld(cfg)
	if err != nil {
		return err
	}
	n := 0
	for _, ps := range w.Persons {
		n += len(ps)
	}
	fmt.Fprintf(stdout, "wrote %s: %d hospitals, %d persons in %v\n", w.Dir, len(w.Hospitals), n, w.Regions)
	return nil
}

func defaultSource(cfg *bench.WorldConfig) error {
	if cfg.Source != "" {
		return nil
	}
	root, err := bench.FindRepoRoot(".")
	if err != nil {
		return err
	}
	cfg.Source = filepath.Join(root, "testdata", "world")
	return nil
}

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var wcfg bench.WorldConfig
	var lcfg bench.LoadConfig
	fl := gatewayWorldFlags("load", stderr, &wcfg)
	fl.StringVar(&lcfg.Addr, "addr", "127.0.0.1:8080", "the gateway's address")
	mode := fl.String("mode", "closed", "closed or open")
	fl.IntVar(&lcfg.Connections, "connections", 64, "connections")
	fl.IntVar(&lcfg.Rate, "rate", 0, "open loop: requests per second")
	fl.DurationVar(&lcfg.Duration, "duration", 20*time.Second, "duration")
	if err := fl.Parse(args); err != nil {
		return err
	}
	w, err := regenerateWorld(&wcfg)
	if err != nil {
		return err
	}
	lcfg.Mode = bench.Mode(*mode)
	lcfg.Label = "load " + *mode
	lcfg.Progress = stderr
	lcfg.CheckBodies = true
	res, err := bench.RunLoad(ctx, lcfg, bench.NewTraffic(w, bench.TrafficConfig{Seed: wcfg.Seed}))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s loop, %d connections: %.0f req/s, %.0f committed/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms, errors %v\n",
		res.Mode, res.Connections, res.ReqPerSec, res.CommittedPerSec, res.Latency.P50, res.Latency.P99, res.Latency.P999, res.Latency.Max, res.Errors)
	if n := failed(res.Errors); n > 0 {
		// A throughput that counts failed requests is no measurement: a
		// script (growth.sh) must not take it for one.
		return fmt.Errorf("%d requests were not answered 200 (%v): not a measurement", n, res.Errors)
	}
	return nil
}

func failed(errs map[string]int64) (n int64) {
	for _, c := range errs {
		n += c
	}
	return n
}

func cmdPrefill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var wcfg bench.WorldConfig
	var pcfg bench.PrefillConfig
	fl := gatewayWorldFlags("prefill", stderr, &wcfg)
	fl.StringVar(&pcfg.Dir, "db", "", "the ledger directory to grow (required)")
	fl.IntVar(&pcfg.Entries, "entries", 1_000_000, "settlements to add")
	fl.IntVar(&pcfg.Writers, "writers", 1024, "concurrent appenders")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if pcfg.Dir == "" {
		return errors.New("prefill: -db is required")
	}
	w, err := regenerateWorld(&wcfg)
	if err != nil {
		return err
	}
	pcfg.Seed = wcfg.Seed
	pcfg.Progress = stderr
	res, err := bench.Prefill(ctx, w, pcfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "prefill: %d entries in %v (%.0f/s), ledger head %d, %d trace codes, %.1f GiB on disk (%.0f bytes/entry)\n",
		res.Entries, res.Took.Round(time.Second), res.EntriesPerS, res.Head, res.TraceCodes,
		float64(res.BytesOnDisk)/(1<<30), res.BytesPerEntry)
	return nil
}

// gatewayWorldFlags is the flag set of a command that works with the world
// a gateway was (or will be) started with: -world and the world's knobs.
func gatewayWorldFlags(name string, stderr io.Writer, wcfg *bench.WorldConfig) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&wcfg.Dir, "world", "bench/out/world", "the world the gateway is started with (written by medbench world; regenerated with -persons and -seed)")
	worldFlags(fl, wcfg)
	return fl
}

// regenerateWorld regenerates the world of wcfg: with the same seed and
// size it has the same persons and hospitals as the gateway's.
func regenerateWorld(wcfg *bench.WorldConfig) (*bench.World, error) {
	if err := defaultSource(wcfg); err != nil {
		return nil, err
	}
	return bench.GenerateWorld(*wcfg)
}
