package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Targets, in the order they run: the two baselines, then the gateway as
// it runs in production.
const (
	TargetHello  = "hello"
	TargetNative = "native"
	TargetWasm   = "wasm"
)

var targetAbout = map[string]string{
	TargetHello:  "fasthttp hello-world: reads the POST body, answers {\"ok\":true}, no work (the HTTP layer's limit)",
	TargetNative: "medgate serve --native-policies: reference policies compiled into the binary (no sandbox)",
	TargetWasm:   "medgate serve: policies as wasm modules in wazero (production)",
}

// Config is a full comparison run.
type Config struct {
	// Root is the repository root (default: found from the working
	// directory).
	Root string
	// Work is a scratch directory for the world, the binary, built modules
	// and the ledgers (default: a new temporary directory, removed at the
	// end unless KeepWork). Ledgers are fsync'ed there: keep it on a real
	// disk, not tmpfs, or the gateway's durability costs nothing.
	Work     string
	KeepWork bool
	// Binary is a prebuilt medgate (default: go build ./cmd/medgate).
	Binary string
	// Modules is the policy module directory (default: build/policies when
	// fresh, else a build into Work).
	Modules string
	World   WorldConfig // Source defaults to <Root>/testdata/world, Dir to <Work>/world
	Traffic TrafficConfig
	// Targets to run, a subset of hello, native, wasm (default all three).
	Targets     []string
	Connections int           // default 64
	Warmup      time.Duration // closed loop before measuring, discarded; default 3s
	Duration    time.Duration // closed loop, per target; default 20s
	// OpenFraction of the closed-loop throughput is the open-loop rate
	// (default 0.5); negative skips the open loop.
	OpenFraction float64
	OpenDuration time.Duration // default Duration
	// ProfileDir, if set, receives CPU and allocation profiles of each
	// gateway target's closed loop, fetched from its admin listener
	// (<target>-cpu.prof, <target>-allocs-base.prof, <target>-allocs.prof).
	// Profiling costs the server some throughput: keep it for separate runs.
	ProfileDir string
	// QuietWait is how long to wait, before each target, for the machine
	// to be nearly idle (see WaitQuiet); 0: do not wait.
	QuietWait time.Duration
	// Progress receives status lines and the live progress line.
	Progress io.Writer
}

func (c *Config) ensureDefaults() error {
	if c.Root == "" {
		root, err := FindRepoRoot(".")
		if err != nil {
			return err
		}
		c.Root = root
	}
	if c.World.Source == "" {
		c.World.Source = filepath.Join(c.Root, "testdata", "world")
	}
	if len(c.Targets) == 0 {
		c.Targets = []string{TargetHello, TargetNative, TargetWasm}
	}
	for _, t := range c.Targets {
		if targetAbout[t] == "" {
			return fmt.Errorf("bench: unknown target %q (hello, native, wasm)", t)
		}
	}
	if c.Connections == 0 {
		c.Connections = 64
	}
	if c.Warmup == 0 {
		c.Warmup = 3 * time.Second
	}
	if c.Duration == 0 {
		c.Duration = 20 * time.Second
	}
	if c.OpenFraction == 0 {
		c.OpenFraction = 0.5
	}
	if c.OpenDuration == 0 {
		c.OpenDuration = c.Duration
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// Smoke turns cfg into a seconds-long run on a small world: enough to show
// that every part of the harness works, not to measure anything.
func Smoke(cfg *Config) {
	cfg.World.PersonsPerRegion = 1000
	cfg.Connections = 16
	cfg.Warmup = 500 * time.Millisecond
	cfg.Duration = 2 * time.Second
	cfg.OpenDuration = time.Second
	cfg.QuietWait = 0
	if cfg.OpenFraction == 0 {
		cfg.OpenFraction = 0.5
	}
}

// Result is everything a comparison run measured.
type Result struct {
	Date    string  `json:"date"`
	Commit  string  `json:"commit"`
	Dirty   bool    `json:"dirty_tree"`
	Command string  `json:"command,omitempty"`
	Machine Machine `json:"machine"`
	// Settings are the run's effective knobs.
	Settings Settings       `json:"settings"`
	Targets  []TargetResult `json:"targets"`
	Verdicts []Verdict      `json:"verdicts"`
}

// Settings records how the run was configured.
type Settings struct {
	Connections      int     `json:"connections"`
	WarmupSeconds    float64 `json:"warmup_s"`
	DurationSeconds  float64 `json:"duration_s"`
	OpenSeconds      float64 `json:"open_duration_s"`
	OpenFraction     float64 `json:"open_fraction"`
	PersonsPerRegion int     `json:"persons_per_region"`
	Persons          int     `json:"persons"`
	Hospitals        int     `json:"hospitals"`
	QuotePermille    int     `json:"quote_permille"`
	ReversalPermille int     `json:"reversal_permille"`
	ZipfS            float64 `json:"zipf_s"`
	ZipfV            float64 `json:"zipf_v"`
	LedgerFS         string  `json:"ledger_filesystem"`
}

// TargetResult is one server's figures.
type TargetResult struct {
	Name   string       `json:"name"`
	About  string       `json:"about"`
	Closed *PhaseResult `json:"closed"`
	Open   *PhaseResult `json:"open,omitempty"`
	// Server memory from /proc/<pid>/status: VmRSS once healthy (before
	// load), the largest VmRSS sampled under load, and VmHWM at the end.
	IdleRSSKiB int64 `json:"server_idle_rss_kib"`
	MaxRSSKiB  int64 `json:"server_max_rss_kib"`
	HWMKiB     int64 `json:"server_hwm_kib"`
}

// Run builds what it needs, generates the bench world, and measures each
// target in turn: start it, warm up, closed loop, open loop at
// OpenFraction of the closed loop's throughput, stop it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.ensureDefaults(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Progress, format+"\n", args...) }
	if cfg.Work == "" {
		dir, err := os.MkdirTemp(filepath.Join(cfg.Root, "bench"), ".work-")
		if err != nil {
			return nil, err
		}
		cfg.Work = dir
		if !cfg.KeepWork {
			defer os.RemoveAll(dir)
		}
	}
	cfg.World.Dir = filepath.Join(cfg.Work, "world")
	logf("bench: generating the bench world in %s", cfg.World.Dir)
	world, err := GenerateWorld(cfg.World)
	if err != nil {
		return nil, err
	}
	persons := 0
	for _, ps := range world.Persons {
		persons += len(ps)
	}
	logf("bench: %d hospitals, %d persons in %d insured regions", len(world.Hospitals), persons, len(world.Regions))

	needGateway := slices.Contains(cfg.Targets, TargetNative) || slices.Contains(cfg.Targets, TargetWasm)
	if needGateway && cfg.Binary == "" {
		cfg.Binary = filepath.Join(cfg.Work, "medgate")
		logf("bench: go build ./cmd/medgate")
		if err := BuildGateway(cfg.Root, cfg.Binary); err != nil {
			return nil, err
		}
	}
	if slices.Contains(cfg.Targets, TargetWasm) {
		pols, err := WorldPolicies(world.Dir)
		if err != nil {
			return nil, err
		}
		preferred := cfg.Modules
		if preferred == "" {
			preferred = filepath.Join(cfg.Root, "build", "policies")
		}
		if cfg.Modules, err = ModuleDir(cfg.Root, preferred, filepath.Join(cfg.Work, "policies"), pols); err != nil {
			return nil, err
		}
		logf("bench: policy modules from %s", cfg.Modules)
	}

	res := &Result{
		Date:    time.Now().Format(time.RFC3339),
		Machine: ReadMachine(),
		Settings: Settings{
			Connections: cfg.Connections, WarmupSeconds: cfg.Warmup.Seconds(), DurationSeconds: cfg.Duration.Seconds(),
			OpenSeconds: cfg.OpenDuration.Seconds(), OpenFraction: cfg.OpenFraction,
			PersonsPerRegion: cfg.World.PersonsPerRegion, Persons: persons, Hospitals: len(world.Hospitals),
			LedgerFS: filesystemOf(cfg.Work),
		},
	}
	res.Commit, res.Dirty = gitCommit(cfg.Root)
	for _, name := range cfg.Targets {
		traffic := NewTraffic(world, cfg.Traffic)
		if name == cfg.Targets[0] {
			t := traffic.cfg
			res.Settings.QuotePermille, res.Settings.ReversalPermille = t.QuotePermille, t.ReversalPermille
			res.Settings.ZipfS, res.Settings.ZipfV = t.ZipfS, t.ZipfV
			if res.Settings.PersonsPerRegion == 0 {
				res.Settings.PersonsPerRegion = 20000
			}
		}
		tr, err := runTarget(ctx, &cfg, name, traffic, logf)
		if err != nil {
			return nil, fmt.Errorf("bench: target %s: %w", name, err)
		}
		res.Targets = append(res.Targets, *tr)
	}
	res.Verdicts = Verdicts(res)
	return res, nil
}

func runTarget(ctx context.Context, cfg *Config, name string, traffic *Traffic, logf func(string, ...any)) (tr *TargetResult, err error) {
	if cfg.QuietWait > 0 {
		busy := WaitQuiet(ctx, cfg.QuietWait)
		logf("bench: other work on the machine before %s: %.2f cores", name, busy)
	}
	logf("bench: starting %s", name)
	var p *Process
	var prof *profiler
	logPath := filepath.Join(cfg.Work, name+".log")
	if name == TargetHello {
		p, err = StartHello(ctx, logPath)
	} else {
		db := filepath.Join(cfg.Work, "db-"+name)
		if err := os.RemoveAll(db); err != nil {
			return nil, err
		}
		if !cfg.KeepWork {
			defer os.RemoveAll(db)
		}
		gc := GatewayConfig{Binary: cfg.Binary, World: cfg.World.Dir, DB: db,
			Modules: cfg.Modules, Native: name == TargetNative, Log: logPath}
		if cfg.ProfileDir != "" {
			if gc.Admin, err = freeAddr(); err != nil {
				return nil, err
			}
			prof = &profiler{admin: gc.Admin, dir: cfg.ProfileDir, target: name}
		}
		p, err = StartGateway(ctx, gc)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := p.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	tr = &TargetResult{Name: name, About: targetAbout[name]}
	tr.IdleRSSKiB, _ = p.Memory()
	sample := func() int64 {
		rss, _ := p.Memory()
		tr.MaxRSSKiB = max(tr.MaxRSSKiB, rss)
		return rss
	}
	load := LoadConfig{Addr: p.Addr, Connections: cfg.Connections, Progress: cfg.Progress, Sample: sample,
		CheckBodies: name != TargetHello, ServerPid: p.Pid()}

	warm := load
	warm.Mode, warm.Duration, warm.Label = Closed, cfg.Warmup, name+" warmup"
	if _, err := RunLoad(ctx, warm, traffic); err != nil {
		return nil, err
	}
	// phase runs one measured phase; the gateway's /metrics are read
	// around it (the hello server has none).
	phase := func(lc LoadConfig) (*PhaseResult, error) {
		var before map[string]float64
		if name != TargetHello {
			before = scrapeMetrics(p.Addr)
		}
		res, err := RunLoad(ctx, lc, traffic)
		if err == nil && before != nil {
			res.Server = serverStats(before, scrapeMetrics(p.Addr))
		}
		return res, err
	}
	closed := load
	closed.Mode, closed.Duration, closed.Label = Closed, cfg.Duration, name+" closed"
	if prof == nil {
		tr.Closed, err = phase(closed)
	} else {
		err = prof.around(int(cfg.Duration.Seconds()), func() (err error) {
			tr.Closed, err = phase(closed)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	if cfg.OpenFraction > 0 {
		rate := int(cfg.OpenFraction * tr.Closed.ReqPerSec)
		if rate < 1 {
			return nil, errors.New("closed loop measured no throughput; no open-loop rate to derive")
		}
		open := load
		open.Mode, open.Rate, open.Duration = Open, rate, cfg.OpenDuration
		open.Label = fmt.Sprintf("%s open %d/s", name, rate)
		if tr.Open, err = phase(open); err != nil {
			return nil, err
		}
	}
	_, tr.HWMKiB = p.Memory()
	return tr, nil
}
