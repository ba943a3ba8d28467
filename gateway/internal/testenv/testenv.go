// Package testenv builds what gateway tests need: the reference policy
// modules (built once per test binary when `make policies` has not run),
// one shared engine with them loaded, and a gateway on an in-memory
// listener over a fresh ledger.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
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
		if fresh(root, dir) {
			buildDir = dir
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "medgate-policies-")
		if buildErr != nil {
			return
		}
		var wg sync.WaitGroup
		errs := make([]error, len(Reference))
		for i, p := range Reference {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out := filepath.Join(buildDir, p.Region, p.Version+".wasm")
				cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./plugins/regions/"+p.Region+"/"+p.Version)
				cmd.Dir = root
				cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
				if b, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("build %s/%s: %v\n%s", p.Region, p.Version, err, b)
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && buildErr == nil {
				buildErr = err
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildDir
}

// fresh reports whether dir has every reference module, each newer than
// every Go source under plugins/ and engine/abi.
func fresh(root, dir string) bool {
	var oldest int64 = 1<<63 - 1
	for _, p := range Reference {
		st, err := os.Stat(filepath.Join(dir, p.Region, p.Version+".wasm"))
		if err != nil {
			return false
		}
		oldest = min(oldest, st.ModTime().UnixNano())
	}
	stale := false
	for _, sub := range []string{"plugins", "engine/abi"} {
		filepath.Walk(filepath.Join(root, sub), func(path string, info os.FileInfo, err error) error {
			if err == nil && strings.HasSuffix(path, ".go") && info.ModTime().UnixNano() > oldest {
				stale = true
			}
			return nil
		})
	}
	return !stale
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
		cache, err := os.MkdirTemp("", "medgate-wasm-cache-")
		if err != nil {
			engErr = err
			return
		}
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
