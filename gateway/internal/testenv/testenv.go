// Package testenv builds what gateway tests need: the reference policy
// modules (built once per test binary when `make policies` has not run),
// one shared engine with them loaded, and a gateway on an in-memory
// listener over a fresh ledger.
package testenv

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/plugins/modbuild"
)

// Policy is a reference policy version and its effective date.
type Policy struct {
	Region, Version, EffectiveFrom string
}

// Reference lists the reference policies (policies.md) and their dates.
var Reference = []Policy{
	{"371600", "v2023", "2023-01-01"},
	{"371600", "v2024", "2024-01-01"},
	{"152500", "v1", "2023-01-01"},
	{"370000", "v1", "2023-01-01"},
}

// RepoRoot is the repository root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// ModuleDir returns a directory holding <region>/<version>.wasm for every
// reference policy: build/policies when make built them and they are newer
// than the plugin sources, else a fresh build in a temporary directory.
func ModuleDir(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		root := RepoRoot()
		dir := filepath.Join(root, "build", "policies")
		if modbuild.Fresh(root, dir, modules()) {
			buildDir = dir
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "medgate-policies-")
		if buildErr == nil {
			buildErr = modbuild.Build(root, buildDir, modules())
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildDir
}

func modules() []modbuild.Module {
	mods := make([]modbuild.Module, len(Reference))
	for i, p := range Reference {
		mods[i] = modbuild.Module{Region: p.Region, Version: p.Version}
	}
	return mods
}

var (
	engOnce sync.Once
	eng     *engine.Engine
	pols    map[string]engine.Version
	engErr  error
)

// Engine returns a process-wide engine with every reference policy loaded,
// keyed "region/version". Tests must not close it.
func Engine(tb testing.TB) (*engine.Engine, map[string]engine.Version) {
	tb.Helper()
	dir := ModuleDir(tb)
	engOnce.Do(func() {
		// One cache for every test process, not a temporary directory per
		// process: a process-wide engine has no moment to remove its
		// directory, and each run left 34 MB behind. Sharing is safe:
		// wazero names an entry by the module's hash and its own version
		// and writes it atomically (a temporary file, then a rename).
		cache := filepath.Join(os.TempDir(), "medgate-test-wasm-cache")
		eng, engErr = engine.New(context.Background(), engine.Config{CacheDir: cache, Logger: zerolog.Nop()})
		if engErr != nil {
			return
		}
		pols = map[string]engine.Version{}
		for _, p := range Reference {
			b, err := os.ReadFile(filepath.Join(dir, p.Region, p.Version+".wasm"))
			if err != nil {
				engErr = err
				return
			}
			m, err := eng.Load(context.Background(), p.Region, p.Version, b)
			if err != nil {
				engErr = err
				return
			}
			pols[p.Region+"/"+p.Version] = engine.Version{Name: p.Version, Module: m}
		}
	})
	if engErr != nil {
		tb.Fatal(engErr)
	}
	return eng, pols
}
