package gateway

import (
	"context"
	"encoding/base64"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
)

// TestCandidatesLeaveNoCompiledCode: a module that is only checked (the
// dry run, a refused upload) or tried (a shadow run with a module) must
// not be written to the compiled-code cache, which is kept across
// restarts: a region sending module after module could otherwise fill the
// disk that every region's ledger writes to.
func TestCandidatesLeaveNoCompiledCode(t *testing.T) {
	cache := t.TempDir()
	eng, err := engine.New(context.Background(), engine.Config{CacheDir: cache, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	store, err := engine.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{tb: t, fs: vfs.NewMem(), dir: "ledger", world: withRegionKeys(refWorld(t, nil)), policies: &engine.Policies{}}
	h.versions = NewVersions(eng, store, h.policies, zerolog.Nop())
	h.start()
	t.Cleanup(h.stop)

	files := func() int {
		n := 0
		filepath.WalkDir(cache, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	before := files()
	cases := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	for i := int64(1); i <= 3; i++ {
		wasm := answerModule(abi.Output{Basic: i}) // answers no case right
		status, out := h.do("POST", "/v1/regions/371600/policies/check", "tok-region-371600", upload("371600", "c", "2030-01-01", wasm, cases, key))
		if status != 422 {
			t.Fatalf("check: %d %s", status, out)
		}
		status, out = h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "u", "2030-01-01", wasm, cases, key))
		if status != 422 {
			t.Fatalf("upload: %d %s", status, out)
		}
		status, out = h.do("POST", "/v1/regions/371600/shadow", "tok-region-371600",
			[]byte(`{"module":"`+base64.StdEncoding.EncodeToString(wasm)+`","from":"2025-01-01","to":"2025-12-31"}`))
		if status != 200 {
			t.Fatalf("shadow: %d %s", status, out)
		}
	}
	if after := files(); after != before {
		t.Fatalf("checked and tried modules left %d files in the compiled-code cache", after-before)
	}
}
