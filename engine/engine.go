// Package engine runs regions' policy modules (WebAssembly, ABI v1 in
// engine/abi) in wazero, sandboxed: no capability beyond what a
// deterministic guest needs, a memory limit per instance, a time limit per
// call, and every answer checked before the caller may write anything.
//
// An Engine owns one wazero runtime. Load checks and compiles a module into a
// Module, which keeps a pool of ready instances: a settlement borrows one,
// calls it, and returns it; an instance that trapped or ran out of time is
// discarded and never reused. Compiled code is cached on disk (Config.CacheDir)
// so a restart does not compile again.
package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"medgate/engine/meter"
)

// Config holds the engine's limits. The zero value works: EnsureDefaults
// fills in every unset field.
type Config struct {
	// CacheDir is where compiled modules are cached across restarts;
	// "" disables the on-disk cache.
	CacheDir string
	// MemoryLimitPages caps every instance's memory, in 64 KiB pages.
	// Default 1024 (64 MiB).
	MemoryLimitPages uint32
	// CallFuel bounds one settle call in metered steps: the instructions
	// it may run, counted statically per loop iteration and function entry
	// (engine/meter), an upper bound. Default 100,000,000: a reference
	// policy call is charged about 700,000 for a one-line bill and 14
	// million for a bill of 1,000 lines (MaxItems), because the Go
	// toolchain compiles a function into one dispatch loop charged whole;
	// a module looping forever is stopped after it in a few hundred
	// milliseconds, however long its loop's body.
	CallFuel int64
	// StackLimit bounds the call stack of one call (settle, input_buffer,
	// instantiation), in bytes as engine/meter counts a frame (a bound on
	// what wazero gives it): wazero grows a call's stack as the call needs,
	// up to about 100 MiB, and an instance keeps it for its later calls.
	// Default 16 MiB (meter.DefaultStackLimit); the reference policies need
	// 605 KiB at their deepest (instantiation). At most 1 GiB. Not bounded
	// in Deadline mode, which runs the module as uploaded.
	StackLimit uint32
	// InitFuel bounds instantiation (start function, _initialize) likewise.
	// Default 500,000,000 (the Go runtime's initialisation is charged
	// about 15 million).
	InitFuel int64
	// Deadline switches the time bound from metering to wall-clock
	// deadlines (wazero's WithCloseOnContextDone, CallTimeout and
	// InitTimeout): the same hard bound, measured in time rather than
	// steps, at several times the cost per call. Kept to compare the two.
	Deadline bool
	// CallTimeout bounds one settle call in Deadline mode. Default 200ms.
	CallTimeout time.Duration
	// InitTimeout bounds instantiation in Deadline mode. Default 2s.
	InitTimeout time.Duration
	// MaxModuleSize bounds a module's bytes. Default 16 MiB.
	MaxModuleSize int
	// MaxInstances bounds the live instances of one module version; callers
	// beyond it wait for one to come back. Default 2 × GOMAXPROCS.
	MaxInstances int
	Logger       zerolog.Logger
}

// EnsureDefaults sets every zero field to its default.
func (c *Config) EnsureDefaults() {
	if c.MemoryLimitPages == 0 {
		c.MemoryLimitPages = 1024
	}
	if c.CallFuel == 0 {
		c.CallFuel = 100_000_000
	}
	if c.StackLimit == 0 {
		c.StackLimit = meter.DefaultStackLimit
	}
	if c.InitFuel == 0 {
		c.InitFuel = 500_000_000
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 200 * time.Millisecond
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = 2 * time.Second
	}
	if c.MaxModuleSize == 0 {
		c.MaxModuleSize = 16 << 20
	}
	if c.MaxInstances == 0 {
		c.MaxInstances = 2 * runtime.GOMAXPROCS(0)
	}
}

// Validate reports every invalid field at once.
func (c *Config) Validate() error {
	var errs []error
	if c.MemoryLimitPages > 65536 {
		errs = append(errs, fmt.Errorf("engine: memory limit %d pages exceeds 65536 (4 GiB)", c.MemoryLimitPages))
	}
	if c.CallTimeout < 0 || c.InitTimeout < 0 || c.CallFuel < 0 || c.InitFuel < 0 {
		errs = append(errs, errors.New("engine: time and fuel limits must not be negative"))
	}
	if c.StackLimit > 1<<30 {
		errs = append(errs, fmt.Errorf("engine: stack limit %d exceeds 1 GiB", c.StackLimit))
	}
	if c.MaxModuleSize < 0 || c.MaxInstances < 0 {
		errs = append(errs, errors.New("engine: sizes must not be negative"))
	}
	return errors.Join(errs...)
}

// Engine compiles and runs policy modules. It is safe for concurrent use.
// The caller must Close it after every Module is done.
type Engine struct {
	cfg     Config
	log     zerolog.Logger
	runtime wazero.Runtime
	cache   wazero.CompilationCache
	// scratch compiles candidates (LoadCandidate) without the on-disk
	// cache; it is runtime itself when there is no cache.
	scratch wazero.Runtime
}

// New starts an engine with cfg (defaults applied).
func New(ctx context.Context, cfg Config) (*Engine, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(cfg.MemoryLimitPages).
		// The hard time bound is the fuel metering of engine/meter, or in
		// Deadline mode wazero's own: a call whose context expires is
		// stopped even inside a loop, and its instance is closed.
		WithCloseOnContextDone(cfg.Deadline)
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		var err error
		cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("engine: compilation cache %s: %w", cfg.CacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	r, err := newRuntime(ctx, rc)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, runtime: r, cache: cache, scratch: r}
	if cache != nil {
		if e.scratch, err = newRuntime(ctx, rc.WithCompilationCache(nil)); err != nil {
			r.Close(ctx)
			return nil, err
		}
	}
	return e, nil
}

func newRuntime(ctx context.Context, rc wazero.RuntimeConfig) (wazero.Runtime, error) {
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	// WASI is the only host module. wazero's defaults give a guest no files,
	// no args, no environment, a fake clock and a fixed random source.
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("engine: instantiate wasi: %w", err)
	}
	return r, nil
}

// Config returns the engine's effective configuration.
func (e *Engine) Config() Config { return e.cfg }

// Close releases the runtime and every module compiled by it.
func (e *Engine) Close(ctx context.Context) error {
	err := e.runtime.Close(ctx)
	if e.scratch != e.runtime {
		if serr := e.scratch.Close(ctx); err == nil {
			err = serr
		}
	}
	if e.cache != nil {
		if cerr := e.cache.Close(ctx); err == nil {
			err = cerr
		}
	}
	return err
}
