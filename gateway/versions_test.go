package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/gateway/internal/testenv"
)

// TestLoadStoredSkipsAMissingModule: one region's stored version whose
// module file is missing (a disk or operator mistake) costs that region
// its version, logged, not every region its gateway: the start goes on
// and the other regions' uploaded versions are loaded.
func TestLoadStoredSkipsAMissingModule(t *testing.T) {
	eng, _ := testenv.Engine(t)
	dir := t.TempDir()
	store, err := engine.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	wasm := referenceWasm(t, "371600", "v2024")
	sum, err := store.PutModule(wasm)
	if err != nil {
		t.Fatal(err)
	}
	for region, sha := range map[string]string{"371600": sum, "152500": strings.Repeat("ab", 32)} {
		if err := store.Update(region, func(recs []engine.Record) ([]engine.Record, error) {
			return append(recs, engine.Record{Region: region, Version: "u1", EffectiveFrom: 20240101, SHA256: sha, State: engine.StateActive, Source: "upload"}), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// 370000's records are unreadable: which versions it has is unknown.
	if err := store.Update("370000", func(recs []engine.Record) ([]engine.Record, error) {
		return append(recs, engine.Record{Region: "370000", Version: "u1", EffectiveFrom: 20240101, SHA256: sum, State: engine.StateActive, Source: "upload"}), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "versions", "370000.json"), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	policies := &engine.Policies{}
	// Older versions, as the world would have put them: they must not
	// take over the dates of the version that cannot be loaded.
	old := &engine.Native{Region: "152500"}
	policies.Put("152500", engine.Version{Name: "w2023", EffectiveFrom: 20230101, Module: old})
	policies.Put("370000", engine.Version{Name: "w2023", EffectiveFrom: 20230101, Module: &engine.Native{Region: "370000"}})
	v := NewVersions(eng, store, policies, zerolog.New(&logs))
	if err := v.LoadStored(context.Background()); err != nil {
		t.Fatalf("LoadStored: %v", err)
	}
	if _, ok := policies.Lookup("371600", 20250101); !ok {
		t.Fatal("371600's stored version was not loaded")
	}
	if !strings.Contains(logs.String(), `"region":"152500"`) || !strings.Contains(logs.String(), `"region":"370000"`) {
		t.Fatalf("the missing module and the unreadable records were not logged:\n%s", logs.String())
	}
	for _, tt := range []struct {
		region string
		date   abi.Date
	}{{"152500", 20250101}, {"370000", 20250101}, {"370000", 20230601}} {
		ver, ok := policies.Lookup(tt.region, tt.date)
		if !ok {
			t.Fatalf("%s on %d: no version", tt.region, tt.date)
		}
		var in abi.Input
		var out abi.Output
		var ce *engine.CallError
		if err := ver.Module.Call(context.Background(), &in, nil, &out); !errors.As(err, &ce) || ce.Kind != engine.FailUnavailable {
			t.Errorf("%s on %d is settled under %s (%v), want it unavailable", tt.region, tt.date, ver.Name, err)
		}
	}
	if ver, _ := policies.Lookup("152500", 20230601); ver.Module != old {
		t.Errorf("152500 in 2023 is under %s, want the older version still", ver.Name)
	}
}

// TestLoadWorldFallsBackToTheStoredModule: a world version whose module
// file is not found (the gateway started from another directory, or
// --modules moved) is loaded from the copy stored when it was recorded,
// not dropped (every settlement would be 422 no_policy).
func TestLoadWorldFallsBackToTheStoredModule(t *testing.T) {
	eng, _ := testenv.Engine(t)
	store, err := engine.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	wasm := referenceWasm(t, "371600", "v2024")
	pf := PolicyFile{Region: "371600", Version: "v2024", EffectiveFrom: 20240101, Wasm: wasm}
	first := &engine.Policies{}
	NewVersions(eng, store, first, zerolog.Nop()).LoadWorld(context.Background(), &World{Policies: []PolicyFile{pf}})
	want, ok := first.Lookup("371600", 20250101)
	if !ok {
		t.Fatal("the world version was not loaded")
	}
	pf.Wasm = nil
	var logs syncBuffer
	again := &engine.Policies{}
	NewVersions(eng, store, again, zerolog.New(&logs)).LoadWorld(context.Background(), &World{Policies: []PolicyFile{pf}})
	got, ok := again.Lookup("371600", 20250101)
	if !ok || got.Name != "v2024" || got.Module.Sum() != want.Module.Sum() {
		t.Fatalf("without its module file: %v %+v, want v2024 from the store\n%s", ok, got, logs.String())
	}
	// A version never recorded has nothing to fall back on: it stays in
	// force as unavailable (TestR6WorldVersionNotLoadedDoesNotHandItsDatesBack).
	pf.Version = "v2099"
	none := &engine.Policies{}
	NewVersions(eng, store, none, zerolog.Nop()).LoadWorld(context.Background(), &World{Policies: []PolicyFile{pf}})
	if v, ok := none.Lookup("371600", 20250101); ok {
		if _, unavailable := v.Module.(*engine.Unavailable); !unavailable {
			t.Fatalf("an unrecorded version without its file was loaded: %s", v.Name)
		}
	}
}
