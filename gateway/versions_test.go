package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/gateway/internal/testenv"
)

// TestLoadStoredSkipsAMissingModule: one region's stored version whose
// module file is missing (a disk or operator mistake) costs that region
// its version, logged, not every region its gateway: the start goes on
// and the other regions' uploaded versions are loaded.
func TestLoadStoredSkipsAMissingModule(t *testing.T) {
	eng, _ := testenv.Engine(t)
	store, err := engine.OpenStore(t.TempDir())
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
	var logs syncBuffer
	policies := &engine.Policies{}
	v := NewVersions(eng, store, policies, zerolog.New(&logs))
	if err := v.LoadStored(context.Background()); err != nil {
		t.Fatalf("LoadStored: %v", err)
	}
	if _, ok := policies.Lookup("371600", 20250101); !ok {
		t.Fatal("371600's stored version was not loaded")
	}
	if !strings.Contains(logs.String(), `"region":"152500"`) {
		t.Fatalf("the missing module was not logged:\n%s", logs.String())
	}
}
