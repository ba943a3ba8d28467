package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// target is one server under test while the run lasts.
type target struct {
	name    string
	p       *Process
	prof    *profiler
	traffic *Traffic
	res     TargetResult
	closed  []*PhaseResult // one per round
	open    []*PhaseResult
}

// runTargets starts every target, measures them in rounds, and stops them.
func runTargets(ctx context.Context, cfg *Config, world *World, logf func(string, ...any)) (_ []TargetResult, err error) {
	var ts []*target
	defer func() {
		for _, t := range ts {
			if serr := t.p.Stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	for _, name := range cfg.Targets {
		t, err := startTarget(ctx, cfg, name, world, logf)
		if err != nil {
			return nil, fmt.Errorf("bench: target %s: %w", name, err)
		}
		ts = append(ts, t)
	}
	// Warm every target up (connections, instance pools, caches) before
	// any is measured; idle servers cost the others almost nothing.
	for _, t := range ts {
		lc := t.load(cfg)
		lc.Mode, lc.Duration, lc.Label = Closed, cfg.Warmup, t.name+" warmup"
		if _, err := RunLoad(ctx, lc, t.traffic); err != nil {
			return nil, err
		}
	}
	if cfg.QuietWait > 0 {
		busy := WaitQuiet(ctx, cfg.QuietWait)
		logf("bench: other work on the machine before measuring: %.2f cores", busy)
	}
	slice := func(d time.Duration) time.Duration { return max(d/time.Duration(cfg.Rounds), time.Second) }
	for r := range cfg.Rounds {
		for _, t := range ts {
			lc := t.load(cfg)
			lc.Mode, lc.Duration = Closed, slice(cfg.Duration)
			lc.Label = fmt.Sprintf("%s closed %d/%d", t.name, r+1, cfg.Rounds)
			var res *PhaseResult
			// Profiles cover the first round (a CPU profile cannot pause).
			if t.prof != nil && r == 0 {
				err = t.prof.around(int(lc.Duration.Seconds()), func() (err error) { res, err = t.phase(ctx, lc); return err })
			} else {
				res, err = t.phase(ctx, lc)
			}
			if err != nil {
				return nil, fmt.Errorf("bench: target %s: %w", t.name, err)
			}
			t.closed = append(t.closed, res)
		}
	}
	for _, t := range ts {
		t.res.Closed = mergePhases(t.closed)
	}
	if cfg.OpenFraction > 0 {
		for r := range cfg.Rounds {
			for _, t := range ts {
				rate := int(cfg.OpenFraction * t.res.Closed.ReqPerSec)
				if rate < 1 {
					return nil, fmt.Errorf("bench: target %s: closed loop measured no throughput; no open-loop rate to derive", t.name)
				}
				lc := t.load(cfg)
				lc.Mode, lc.Rate, lc.Duration = Open, rate, slice(cfg.OpenDuration)
				lc.Label = fmt.Sprintf("%s open %d/s %d/%d", t.name, rate, r+1, cfg.Rounds)
				res, err := t.phase(ctx, lc)
				if err != nil {
					return nil, fmt.Errorf("bench: target %s: %w", t.name, err)
				}
				t.open = append(t.open, res)
			}
		}
		for _, t := range ts {
			t.res.Open = mergePhases(t.open)
		}
	}
	var out []TargetResult
	for _, t := range ts {
		_, t.res.HWMKiB = t.p.Memory()
		out = append(out, t.res)
	}
	return out, nil
}

func startTarget(ctx context.Context, cfg *Config, name string, world *World, logf func(string, ...any)) (*target, error) {
	logf("bench: starting %s", name)
	t := &target{name: name, traffic: NewTraffic(world, cfg.Traffic), res: TargetResult{Name: name, About: targetAbout[name]}}
	logPath := filepath.Join(cfg.Work, name+".log")
	var err error
	if name == TargetHello {
		t.p, err = StartHello(ctx, logPath)
	} else {
		db := filepath.Join(cfg.Work, "db-"+name)
		if err := os.RemoveAll(db); err != nil {
			return nil, err
		}
		gc := GatewayConfig{Binary: cfg.Binary, World: world.Dir, DB: db,
			Modules: cfg.Modules, Native: name == TargetNative, Log: logPath}
		if cfg.ProfileDir != "" {
			if gc.Admin, err = freeAddr(); err != nil {
				return nil, err
			}
			t.prof = &profiler{admin: gc.Admin, dir: cfg.ProfileDir, target: name}
		}
		t.p, err = StartGateway(ctx, gc)
	}
	if err != nil {
		return nil, err
	}
	t.res.IdleRSSKiB, _ = t.p.Memory()
	return t, nil
}

// load is the target's base load configuration.
func (t *target) load(cfg *Config) LoadConfig {
	return LoadConfig{Addr: t.p.Addr, Connections: cfg.Connections, Progress: cfg.Progress,
		CheckBodies: t.name != TargetHello, ServerPid: t.p.Pid(),
		Sample: func() int64 {
			rss, _ := t.p.Memory()
			t.res.MaxRSSKiB = max(t.res.MaxRSSKiB, rss)
			return rss
		}}
}

// phase runs one measured phase; the gateway's /metrics are read around
// it (the hello server has none).
func (t *target) phase(ctx context.Context, lc LoadConfig) (*PhaseResult, error) {
	var before map[string]float64
	if t.name != TargetHello {
		before = scrapeMetrics(t.p.Addr)
	}
	res, err := RunLoad(ctx, lc, t.traffic)
	if err != nil {
		return nil, err
	}
	if before != nil {
		res.Server = serverStats(before, scrapeMetrics(t.p.Addr))
	}
	return res, nil
}
