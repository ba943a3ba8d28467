package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/ledger"
)

// Config is everything `serve` needs. The zero value plus a World works.
type Config struct {
	Listen string // default "127.0.0.1:8080"
	DBDir  string // the Pebble directory; default "./medgate-data"
	// LedgerCache is the ledger's block cache in bytes (0: the ledger's
	// default, ledger.DefaultCacheSize).
	LedgerCache int64
	// LedgerMinFree: the ledger refuses writes (503 ledger_disk_full)
	// while its disk has less free space, in bytes; 0: never.
	LedgerMinFree uint64
	// DirectWALSync: see ledger.Options.DirectWALSync.
	DirectWALSync bool
	// World is the world directory loaded at start (nil: none).
	World fs.FS
	// DemoWorld says World is the embedded reference world, whose tokens
	// are public (README): the demo's, never a real ledger's.
	DemoWorld bool
	// ModuleDirs are searched for <region>/<version>.wasm when a world
	// names a policy without its module file (default: build/policies).
	ModuleDirs []fs.FS
	Engine     engine.Config // CacheDir defaults to <DBDir>/wasm-cache
	Logger     zerolog.Logger
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	ShutdownTimeout time.Duration
	// AdminListen, when set, is the admin listener's address: the Go
	// profiler (/debug/pprof/) and /metrics, without authentication, for a
	// loopback or private interface only. Off by default.
	AdminListen string
	// MaxInflight, MaxConns, MaxConnsPerIP and AccessLog: see
	// ServerConfig. Run lowers MaxConns to fit the file descriptor limit
	// (fitConns).
	MaxInflight   int
	MaxConns      int
	MaxConnsPerIP int
	AccessLog     AccessLogSampling
	// Native, when not empty, replaces the world's policy modules with
	// these policies compiled into the gateway: only to measure the price
	// of the sandbox (bench), never for real regions.
	Native []engine.Version
	// Ready, if set, is called with the bound address once serving.
	Ready func(addr net.Addr)
	// CheckpointKey is the ed25519 seed that signs ledger checkpoints
	// (nil: the public demo key, with a warning).
	CheckpointKey []byte
}

// EnsureDefaults fills in unset fields.
func (c *Config) EnsureDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.DBDir == "" {
		c.DBDir = "medgate-data"
	}
	if c.Engine.CacheDir == "" {
		c.Engine.CacheDir = filepath.Join(c.DBDir, "wasm-cache")
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.ModuleDirs == nil {
		c.ModuleDirs = []fs.FS{os.DirFS("build/policies")}
	}
	c.Engine.Logger = c.Logger
}

// Run serves until ctx is canceled, then shuts down in order: stop taking
// requests and finish those in flight, close the engine, close the ledger
// (last, so nothing writes to a closed ledger).
func Run(ctx context.Context, cfg Config) error {
	cfg.EnsureDefaults()
	log := cfg.Logger
	// What can make the start fail without the ledger is checked before
	// the ledger is created or written: a start refused for a bad world
	// file or an address in use (a second gateway, a mistyped port) must
	// not leave a store, with the world's opening balances as entries,
	// in a --db directory that may be mistyped too.
	var w *World
	var principals *Principals
	if cfg.World != nil {
		var err error
		if w, err = ReadWorld(cfg.World, cfg.ModuleDirs...); err != nil {
			return err
		}
		if len(w.Principals) == 0 {
			// Tokens live only in the world: without one every request
			// would be 401 (a --world naming the wrong directory).
			return errors.New("world: principals.json is missing or empty: no token would be accepted")
		}
		if principals, err = NewPrincipals(w.Principals); err != nil {
			return err
		}
	}
	// Bound again once the ledger is open: until then a connection is
	// refused rather than left waiting in the backlog. Every probe is
	// held until the last is bound, so that --admin-listen given as
	// --listen's address is refused here too, not after the ledger.
	var probes []net.Listener
	for _, addr := range []struct{ flag, addr string }{{"listen", cfg.Listen}, {"admin listen", cfg.AdminListen}} {
		if addr.addr == "" {
			continue
		}
		probe, err := net.Listen("tcp", addr.addr)
		if err != nil {
			for _, p := range probes {
				p.Close()
			}
			return fmt.Errorf("gateway: %s %s: %w", addr.flag, addr.addr, err)
		}
		probes = append(probes, probe)
	}
	for _, p := range probes {
		p.Close()
	}
	// A hospital token of a world without hospitals.json needs its
	// hospital in the ledger (from an earlier world), or its every call
	// is refused; a new ledger has none.
	var unlisted []int
	if w != nil {
		unlisted = w.unlistedHospitalPrincipals()
	}
	if len(unlisted) > 0 {
		if _, err := os.Stat(cfg.DBDir); errors.Is(err, fs.ErrNotExist) {
			return w.unlistedHospitalError(unlisted[0])
		}
	}
	if err := os.MkdirAll(cfg.DBDir, 0o755); err != nil {
		return fmt.Errorf("gateway: db dir: %w", err)
	}
	db, err := ledger.Open(cfg.DBDir, ledger.Options{Logger: log, CacheSize: cfg.LedgerCache, DirectWALSync: cfg.DirectWALSync, MinFreeBytes: cfg.LedgerMinFree})
	if err != nil {
		return err
	}
	defer db.Close()
	eng, err := engine.New(ctx, cfg.Engine)
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())

	var policies engine.Policies
	store, err := engine.OpenStore(filepath.Join(cfg.DBDir, "policies"))
	if err != nil {
		return err
	}
	versions := NewVersions(eng, store, &policies, log)
	for _, i := range unlisted {
		if _, ok := db.Hospital(w.Principals[i].ID); !ok {
			return w.unlistedHospitalError(i)
		}
	}
	if w != nil {
		if err := checkWorldSource(db, cfg.DemoWorld); err != nil {
			return err
		}
		if err := w.ApplyRegistryLogging(db, log); errors.Is(err, ledger.ErrLowDisk) {
			// Serve what the ledger holds (reads, quotes, /healthz
			// degraded) rather than not at all; the world is applied at
			// the next start with room (it is upserted).
			log.Error().Err(err).Msg("world: hospitals, catalogs and persons not applied: the ledger's disk is nearly full; serving what the ledger holds")
		} else if err != nil {
			return err
		}
		if len(cfg.Native) == 0 {
			versions.LoadWorld(ctx, w)
		}
		if err := recordWorldSource(db, cfg.DemoWorld); err != nil {
			log.Error().Err(err).Msg("world: which kind of world this ledger was started with is not recorded")
		}
		log.Info().Int("hospitals", len(w.Hospitals)).Int("catalogs", len(w.Catalogs)).Int("persons", len(w.Persons)).
			Int("policies", len(w.Policies)).Msg("world loaded")
	}
	if len(cfg.Native) == 0 {
		if err := versions.LoadStored(ctx); err != nil {
			return err
		}
	}
	// Versions superseded by the date passing release their idle
	// instances (SweepIdle); stopped before the engine closes.
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		versions.sweepIdleEvery(sweepCtx, idleSweepInterval)
	}()
	defer func() {
		stopSweep()
		<-swept
	}()
	for _, v := range cfg.Native {
		policies.Put(v.Region(), v)
		log.Warn().Str("region", v.Region()).Str("version", v.Name).Msg("policy runs natively, outside the sandbox (benchmark mode)")
	}
	if w != nil {
		w.warnUnserved(db, &policies, log)
	}
	srv := NewServer(ServerConfig{Service: NewService(db, &policies, log), DB: db, Versions: versions,
		MaxInflight: cfg.MaxInflight, AccessLog: cfg.AccessLog, MaxConns: fitConns(cfg.MaxConns, log), MaxConnsPerIP: cfg.MaxConnsPerIP,
		Principals: principals, Logger: log, CheckpointKey: cfg.CheckpointKey})
	if err := logCheckpointKey(log, cfg.CheckpointKey); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", cfg.Listen, err)
	}
	if cfg.AdminListen != "" {
		stopAdmin, err := serveAdmin(cfg.AdminListen, srv.metrics, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopAdmin()
	}
	log.Info().Str("addr", ln.Addr().String()).Uint64("ledger_seq", headSeq(db)).Msg("serving")
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error().Err(err).Msg("shutdown")
	}
	// A signal during startup can come before Serve has taken the
	// listener, which Shutdown then does not know of: close it here too.
	ln.Close()
	<-served
	log.Info().Msg("stopped")
	return nil
}

// worldSource is the applied record of the kind of world a ledger was
// last started with: the embedded reference world or a --world directory.
const worldSource = "world/source"

var (
	demoWorldDigest = sha256.Sum256([]byte("the embedded reference world"))
	dirWorldDigest  = sha256.Sum256([]byte("a --world directory"))
)

// checkWorldSource refuses the embedded reference world on a ledger that
// was started with a --world directory: its tokens are public (README),
// and applying it would write the demo's hospitals, catalog codes,
// persons' opening balances and policy versions into a real ledger (a
// config that lost its world line). Nothing is written before it.
func checkWorldSource(db *ledger.DB, demo bool) error {
	last, ok, err := db.Applied(worldSource)
	if err != nil {
		return err
	}
	if demo && ok && last == dirWorldDigest {
		return errors.New("gateway: this ledger was started with a --world directory; the embedded reference world (the demo, whose tokens are public) is not applied to it: give --world (nothing was written)")
	}
	return nil
}

// recordWorldSource records the kind of world the ledger was started with.
func recordWorldSource(db *ledger.DB, demo bool) error {
	want := dirWorldDigest
	if demo {
		want = demoWorldDigest
	}
	if last, ok, err := db.Applied(worldSource); err != nil || ok && last == want {
		return err
	}
	return db.SetApplied(worldSource, want)
}

func headSeq(db *ledger.DB) uint64 {
	seq, _ := db.Head()
	return seq
}
