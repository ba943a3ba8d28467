// Package inproc runs the gateway inside the bench's own process, to
// profile it with the Go profiler (the gateway has no profiling endpoint).
// The numbers of record come from the real binary (package bench); this is
// only for finding where the time and allocations go. It is a package of
// its own so that the bench library does not depend on the gateway's
// internals.
package inproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"medgate/bench"
	"medgate/engine"
	"medgate/gateway"
	"medgate/plugins/conformance"
)

// Start runs the gateway in this process the way `medgate serve` does
// (same gateway.Config and defaults as cmd/medgate builds from cfg) and
// returns its address and a function that shuts it down.
func Start(ctx context.Context, cfg bench.GatewayConfig, log io.Writer) (addr string, stop func() error, err error) {
	gcfg := gateway.Config{Listen: "127.0.0.1:0", DBDir: cfg.DB, World: os.DirFS(cfg.World),
		ModuleDirs: []fs.FS{os.DirFS(cfg.Modules)},
		Logger:     zerolog.New(log).Level(zerolog.WarnLevel).With().Timestamp().Logger()}
	if cfg.Native {
		for _, v := range conformance.Versions {
			gcfg.Native = append(gcfg.Native, engine.Version{Name: v.Name, EffectiveFrom: v.Effective,
				Module: engine.NewNative(v.Region, v.Name, v.Policy)})
		}
	}
	ready := make(chan string, 1)
	gcfg.Ready = func(a net.Addr) { ready <- a.String() }
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gateway.Run(ctx, gcfg) }()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		return "", nil, fmt.Errorf("inproc: gateway stopped before serving: %v", err)
	}
	var once sync.Once
	var stopErr error
	return addr, func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}, nil
}

// ProfileConfig is a profiling run.
type ProfileConfig struct {
	Root        string // repository root
	Work        string // scratch directory (world, modules, ledger)
	World       bench.WorldConfig
	Traffic     bench.TrafficConfig
	Native      bool
	Modules     string // default: build/policies when fresh, else built into Work
	Connections int
	Warmup      time.Duration
	Duration    time.Duration
	// Out receives cpu.prof, allocs-base.prof and allocs.prof.
	Out      string
	Progress io.Writer
}

// Profile runs a closed loop against the in-process gateway and writes a
// CPU profile of the loop and heap-allocation profiles before and after
// it. The client's goroutines carry the pprof label bench=client, so
//
//	go tool pprof -tagignore bench=client cpu.prof
//
// shows the gateway alone, and
//
//	go tool pprof -sample_index=alloc_space -base allocs-base.prof allocs.prof
//
// shows what the loop allocated (use -ignore 'medgate/bench|fasthttp.\(\*HostClient' to drop the client).
func Profile(ctx context.Context, cfg ProfileConfig) (*bench.PhaseResult, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.World.Source == "" {
		cfg.World.Source = filepath.Join(cfg.Root, "testdata", "world")
	}
	cfg.World.Dir = filepath.Join(cfg.Work, "world")
	world, err := bench.GenerateWorld(cfg.World)
	if err != nil {
		return nil, err
	}
	if !cfg.Native {
		pols, err := bench.WorldPolicies(world.Dir)
		if err != nil {
			return nil, err
		}
		preferred := cfg.Modules
		if preferred == "" {
			preferred = filepath.Join(cfg.Root, "build", "policies")
		}
		if cfg.Modules, err = bench.ModuleDir(cfg.Root, preferred, filepath.Join(cfg.Work, "policies"), pols); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(filepath.Join(cfg.Work, "gateway.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	db := filepath.Join(cfg.Work, "db")
	if err := os.RemoveAll(db); err != nil {
		return nil, err
	}
	addr, stop, err := Start(ctx, bench.GatewayConfig{World: world.Dir, DB: db, Modules: cfg.Modules, Native: cfg.Native}, logf)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}

	traffic := bench.NewTraffic(world, cfg.Traffic)
	load := bench.LoadConfig{Addr: addr, Mode: bench.Closed, Connections: cfg.Connections, Progress: cfg.Progress,
		CheckBodies: true, ServerPid: os.Getpid()}
	var res *bench.PhaseResult
	var loadErr error
	pprof.Do(ctx, pprof.Labels("bench", "client"), func(ctx context.Context) {
		warm := load
		warm.Duration, warm.Label = cfg.Warmup, "in-process warmup"
		if _, loadErr = bench.RunLoad(ctx, warm, traffic); loadErr != nil {
			return
		}
		runtime.GC()
		if loadErr = writeProfile(filepath.Join(cfg.Out, "allocs-base.prof"), "allocs"); loadErr != nil {
			return
		}
		f, err := os.Create(filepath.Join(cfg.Out, "cpu.prof"))
		if err != nil {
			loadErr = err
			return
		}
		defer f.Close()
		if loadErr = pprof.StartCPUProfile(f); loadErr != nil {
			return
		}
		run := load
		run.Duration, run.Label = cfg.Duration, "in-process profile"
		res, loadErr = bench.RunLoad(ctx, run, traffic)
		pprof.StopCPUProfile()
	})
	if loadErr != nil {
		return nil, loadErr
	}
	runtime.GC()
	if err := writeProfile(filepath.Join(cfg.Out, "allocs.prof"), "allocs"); err != nil {
		return nil, err
	}
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	return res, nil
}

func writeProfile(path, name string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
