// Package modbuild builds policy modules from their Go source with the
// standard toolchain (GOOS=wasip1, -buildmode=c-shared), as `make policies`
// does, for the tools and tests that need modules without make: the region
// CLI, the gateway tests and the load generator.
package modbuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Module names a module by its region and version; its source is the
// package ./plugins/regions/<region>/<version>.
type Module struct{ Region, Version string }

// Command is the build of the Go package pkg (relative to root) into out.
func Command(root, pkg, out string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	return cmd
}

// Build builds every module into dir/<region>/<version>.wasm, concurrently.
func Build(root, dir string, mods []Module) error {
	var wg sync.WaitGroup
	errs := make([]error, len(mods))
	for i, m := range mods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(dir, m.Region, m.Version+".wasm")
			if b, err := Command(root, "./plugins/regions/"+m.Region+"/"+m.Version, out).CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("modbuild: %s/%s: %v\n%s", m.Region, m.Version, err, b)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Fresh reports whether dir holds every module, each newer than every Go
// source of the guest (plugins/ and engine/abi under root).
func Fresh(root, dir string, mods []Module) bool {
	if dir == "" {
		return false
	}
	var oldest int64 = 1<<63 - 1
	for _, m := range mods {
		st, err := os.Stat(filepath.Join(dir, m.Region, m.Version+".wasm"))
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
