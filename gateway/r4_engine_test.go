package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/gateway/internal/testenv"
)

// TestR4StoredModuleMustMatchItsHash: the policy store keeps modules by
// the sha256 of their bytes, and the ledger records that sha256 as the
// module that computed a settlement. A module file whose bytes are not
// those (swapped for another valid policy, or altered on disk) must not
// be run under the version, nor for a replay of entries recorded with
// the real one: the version is unavailable (its bills refused) until the
// right bytes are back.
func TestR4StoredModuleMustMatchItsHash(t *testing.T) {
	eng, _ := testenv.Engine(t)
	dir := t.TempDir()
	store, err := engine.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := store.PutModule(referenceWasm(t, "371600", "v2024"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Update("371600", func(recs []engine.Record) ([]engine.Record, error) {
		return append(recs, engine.Record{Region: "371600", Version: "u1", EffectiveFrom: 20240101, SHA256: sum, State: engine.StateActive, Source: "upload"}), nil
	}); err != nil {
		t.Fatal(err)
	}
	// Another valid policy's bytes under v2024's name.
	path := filepath.Join(dir, "modules", sum+".wasm")
	if err := os.WriteFile(path, referenceWasm(t, "371600", "v2023"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Module(sum); err == nil {
		t.Error("Store.Module returned bytes whose sha256 is not the one asked for")
	}

	policies := &engine.Policies{}
	v := NewVersions(eng, store, policies, zerolog.Nop())
	if err := v.LoadStored(context.Background()); err != nil {
		t.Fatal(err)
	}
	ver, ok := policies.Lookup("371600", 20250101)
	if !ok {
		t.Fatal("the version is gone from the schedule; want it in force and unavailable")
	}
	if got := ver.Module.Sum(); hex.EncodeToString(got[:]) != sum {
		t.Errorf("the version runs module %x, recorded %s", got, sum)
	}
	var in abi.Input
	var out abi.Output
	var ce *engine.CallError
	if err := ver.Module.Call(context.Background(), &in, nil, &out); !errors.As(err, &ce) || ce.Kind != engine.FailUnavailable {
		t.Errorf("a call under the version with a swapped module file: %v, want it unavailable", err)
	}
	var key [32]byte
	hex.Decode(key[:], []byte(sum))
	v2 := NewVersions(eng, store, &engine.Policies{}, zerolog.Nop())
	if r, err := v2.Runner(context.Background(), "371600", key); err == nil {
		got := r.Sum()
		t.Errorf("a replay of entries recorded with %s runs the module in the swapped file (sha256 %x)", sum, got)
	}
	// The right bytes stored again (the world's file, a re-upload) repair it.
	if _, err := store.PutModule(referenceWasm(t, "371600", "v2024")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Module(sum); err != nil {
		t.Errorf("after storing the right bytes again: %v", err)
	}
}
