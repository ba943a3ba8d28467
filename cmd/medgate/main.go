// Command medgate is the settlement gateway: `medgate serve` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/gateway"
	"medgate/plugins/conformance"
	"medgate/testdata"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// command is a subcommand; each lives in its own file and registers itself
// in init, so adding one touches no other file.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// Exit codes scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1 // the operation failed (or found a problem: a check, a verification)
	exitUsage   = 2 // bad flags or arguments
)

func usage(w io.Writer) {
	fmt.Fprint(w, "medgate: cross-region medical insurance settlement gateway\n\nUsage:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  medgate %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, "  medgate help       show this help\n\nEvery command takes --help. Exit codes: 0 ok, 1 failure, 2 usage.\n")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	if c, ok := commands[args[0]]; ok {
		return c.run(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "medgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func init() {
	register(command{name: "serve", summary: "run the gateway (no flags: a demo on the embedded reference world)",
		run: func(args []string, _, stderr io.Writer) int { return serve(args, stderr) }})
}

func serve(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	listen := fl.String("listen", "127.0.0.1:8080", "address to listen on")
	db := fl.String("db", "medgate-data", "the ledger's Pebble directory")
	world := fl.String("world", "", "world directory to load at start (default: the embedded reference world)")
	modules := fl.String("modules", "build/policies", "directory of <region>/<version>.wasm for policies whose module is not in the world")
	level := fl.String("log-level", "info", "log level: debug, info, warn, error")
	callFuel := fl.Int64("policy-fuel", 5_000_000, "step budget of one policy call (loop iterations and function entries)")
	deadline := fl.Bool("policy-deadline", false, "bound policy calls by wall-clock deadlines (wazero close-on-context-done) instead of step budgets")
	callTimeout := fl.Duration("policy-timeout", 200*time.Millisecond, "time limit of one policy call with --policy-deadline")
	native := fl.Bool("native-policies", false, "benchmark mode: run the reference policies compiled into the binary instead of their wasm modules (no sandbox)")
	memPages := fl.Uint("policy-memory-pages", 1024, "memory limit of one policy instance, in 64 KiB pages")
	ckptKey := fl.String("checkpoint-key", "", "file holding the ed25519 seed (64 hex digits) that signs ledger checkpoints (default: a public demo key, never for production)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "medgate: --log-level: %v\n", err)
		return 2
	}
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Logger()

	cfg := gateway.Config{Listen: *listen, DBDir: *db, Logger: log, ModuleDirs: []fs.FS{os.DirFS(*modules)}}
	cfg.Engine.CallTimeout = *callTimeout
	cfg.Engine.CallFuel = *callFuel
	cfg.Engine.Deadline = *deadline
	cfg.Engine.MemoryLimitPages = uint32(*memPages)
	if *native {
		for _, v := range conformance.Versions {
			cfg.Native = append(cfg.Native, engine.Version{Name: v.Name, EffectiveFrom: v.Effective,
				Module: engine.NewNative(v.Region, v.Name, v.Policy)})
		}
	}
	if *world != "" {
		cfg.World = os.DirFS(*world)
	} else {
		sub, err := fs.Sub(testdata.World, "world")
		if err != nil {
			fmt.Fprintf(stderr, "medgate: embedded world: %v\n", err)
			return 1
		}
		cfg.World = sub
		log.Info().Msg("no --world given: running the demo on the embedded reference world")
	}
	if *ckptKey != "" {
		if cfg.CheckpointKey, err = gateway.ReadCheckpointKey(*ckptKey); err != nil {
			fmt.Fprintf(stderr, "medgate: --checkpoint-key: %v\n", err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := gateway.Run(ctx, cfg); err != nil {
		log.Error().Err(err).Msg("medgate serve failed")
		return 1
	}
	return 0
}
