// Command medgate is the settlement gateway: `medgate serve` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"

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
	register(command{name: "serve", summary: "run the gateway (no flags: a demo on the embedded reference world)", run: serve})
}

func serve(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return serveContext(ctx, args, os.LookupEnv, stdout, stderr, nil)
}

// serveContext runs the gateway until ctx ends. Settings come from args,
// the environment and the config file (gateway.LoadSettings); ready, if
// set, is called with the API's address once serving.
func serveContext(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer, ready func(net.Addr)) int {
	s, err := gateway.LoadSettings(args, lookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		gateway.WriteUsage(stdout)
		return exitOK
	}
	if s != nil {
		// Every invalid setting at once: those whose value did not parse
		// (err) and those whose value is out of bounds.
		err = errors.Join(err, s.Validate())
	}
	if err != nil {
		fmt.Fprintln(stderr, "medgate serve: invalid settings:")
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
		fmt.Fprintln(stderr, "(medgate serve --help lists every setting)")
		return exitUsage
	}
	if s.PrintConfig {
		s.WriteConfig(stdout)
		return exitOK
	}
	log := s.Logger(stderr)
	if s.Procs > 0 {
		runtime.GOMAXPROCS(s.Procs)
	}
	log.Info().Int("gomaxprocs", runtime.GOMAXPROCS(0)).Int("cpus", runtime.NumCPU()).Msg("schedulers")
	cfg := s.Config(log)
	cfg.Ready = ready
	if s.NativePolicies {
		for _, v := range conformance.Versions {
			cfg.Native = append(cfg.Native, engine.Version{Name: v.Name, EffectiveFrom: v.Effective,
				Module: engine.NewNative(v.Region, v.Name, v.Policy)})
		}
	}
	if cfg.World == nil {
		sub, err := fs.Sub(testdata.World, "world")
		if err != nil {
			fmt.Fprintf(stderr, "medgate: embedded world: %v\n", err)
			return exitFailure
		}
		cfg.World, cfg.DemoWorld = sub, true
		log.Info().Msg("no --world given: running the demo on the embedded reference world")
	}
	if s.CheckpointKey != "" {
		if cfg.CheckpointKey, err = gateway.ReadCheckpointKey(s.CheckpointKey); err != nil {
			fmt.Fprintf(stderr, "medgate serve: --checkpoint-key: %v\n", err)
			return exitUsage
		}
		if mode, exposed := keyFileExposed(s.CheckpointKey); exposed {
			log.Warn().Str("file", s.CheckpointKey).Str("mode", mode).
				Msg("the checkpoint key file can be read or written by other users, who could sign checkpoints: chmod 600 it")
		}
	}
	if err := gateway.Run(ctx, cfg); err != nil {
		log.Error().Err(err).Msg("medgate serve failed")
		return exitFailure
	}
	return exitOK
}
