package engine

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"medgate/engine/abi"
)

// TestDamagedCompilationCache: the on-disk cache of compiled modules is
// only a cache. A file of it damaged on disk (a bad sector, a partial
// copy of the data directory) must cost a recompilation, not the region
// its policy at every start until an operator finds and deletes the cache.
func TestDamagedCompilationCache(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	want := abi.Output{Deductible: 200_00, Basic: 640_00, Account: 160_00}
	wasm := answering(&want)
	load := func() (*Module, error) {
		e, err := New(ctx, Config{CallFuel: 1_000_000, InitFuel: 200_000_000, MaxInstances: 2, CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(ctx) })
		return e.Load(ctx, "371600", "v1", wasm)
	}
	if _, err := load(); err != nil {
		t.Fatal(err)
	}
	damaged := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 64 {
			return err
		}
		b[len(b)-16] ^= 0xff // in the compiled code, covered by its checksum
		damaged++
		return os.WriteFile(path, b, 0o644)
	})
	if damaged == 0 {
		t.Fatal("nothing was cached")
	}
	m, err := load()
	if err != nil {
		t.Fatalf("a damaged cache file refuses the module: %v", err)
	}
	in, enc := testInput()
	var out abi.Output
	if err := m.Call(ctx, in, enc, &out); err != nil || out.Basic != want.Basic {
		t.Fatalf("call after recompiling: %v %+v", err, out)
	}
	// And at the next start too.
	if _, err := load(); err != nil {
		t.Fatal(err)
	}
}
