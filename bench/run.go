package bench

import (
	"context"
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
	// Rounds splits each target's closed and open loop into this many
	// slices, run in turn with the other targets' (all servers stay up):
	// on a machine shared with other work, a burst of it then costs every
	// target alike instead of whichever was running. Default 1.
	Rounds int
	// OpenFraction of the closed-loop throughput is the open-loop rate
	// (default 0.5); negative skips the open loop.
	OpenFraction float64
	OpenDuration time.Duration // default Duration
	// ProfileDir, if set, receives CPU and allocation profiles of each
	// gateway target's closed loop, fetched from its admin listener
	// (<target>-cpu.prof, <target>-allocs-base.prof, <target>-allocs.prof).
	// Profiling costs the server some throughput: keep it for separate runs.
	ProfileDir string
	// QuietWait is how long to wait, once every target is warm, for the
	// machine to be nearly idle (see WaitQuiet); 0: do not wait.
	QuietWait time.Duration
	// DiskSyncWrites is how many synced writes measure the ledger disk's
	// own sync latency before the targets start (DiskSync; default 2,000,
	// about a second or two; negative: not measured).
	DiskSyncWrites int
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
	if c.Rounds < 1 {
		c.Rounds = 1
	}
	if c.OpenFraction == 0 {
		c.OpenFraction = 0.5
	}
	if c.OpenDuration == 0 {
		c.OpenDuration = c.Duration
	}
	if c.DiskSyncWrites == 0 {
		c.DiskSyncWrites = 2000
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
	cfg.OpenDuration = 2 * time.Second
	cfg.Rounds = 2
	cfg.QuietWait = 0
	cfg.DiskSyncWrites = 200
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
	// Disk is the ledger disk's own sync latency, measured before the
	// targets (nil: not measured).
	Disk *DiskSync `json:"disk_sync,omitempty"`
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
	Rounds           int     `json:"rounds"`
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

// Run builds what it needs, generates the bench world, starts every target
// and warms it up, then measures: closed loop, then open loop at
// OpenFraction of each target's closed-loop throughput, each in Rounds
// slices taken by the targets in turn.
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
			OpenSeconds: cfg.OpenDuration.Seconds(), OpenFraction: cfg.OpenFraction, Rounds: cfg.Rounds,
			PersonsPerRegion: cfg.World.PersonsPerRegion, Persons: persons, Hospitals: len(world.Hospitals),
			LedgerFS: filesystemOf(cfg.Work),
		},
	}
	res.Commit, res.Dirty = gitCommit(cfg.Root)
	tcfg := cfg.Traffic
	tcfg.ensureDefaults()
	res.Settings.QuotePermille, res.Settings.ReversalPermille = tcfg.QuotePermille, tcfg.ReversalPermille
	res.Settings.ZipfS, res.Settings.ZipfV = tcfg.ZipfS, tcfg.ZipfV
	if res.Settings.PersonsPerRegion == 0 {
		res.Settings.PersonsPerRegion = 20000
	}
	if cfg.DiskSyncWrites > 0 {
		// A settlement's record is ≈ 2.5 KB in the WAL.
		if res.Disk, err = MeasureDiskSync(cfg.Work, cfg.DiskSyncWrites, 2500); err != nil {
			return nil, err
		}
		d := res.Disk.Sync
		logf("bench: the disk's write+fdatasync (%d × %d B): p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms",
			res.Disk.Writes, res.Disk.Bytes, d.P50, d.P99, d.P999, d.Max)
	}
	if res.Targets, err = runTargets(ctx, &cfg, world, logf); err != nil {
		return nil, err
	}
	res.Verdicts = Verdicts(res)
	return res, nil
}
