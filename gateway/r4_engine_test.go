package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/cases"
	"medgate/engine/money"
	"medgate/engine/wasmgen"
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

// statefulPolicy is a module that answers first on an instance's first
// settle call and later on every call after it: state kept between calls
// (a byte of its memory), which ABI.md forbids.
func statefulPolicy(first, later *abi.Output) []byte {
	a, b := first.AppendBinary(nil), later.AppendBinary(nil)
	const atA, atB, flag = 1024, 3072, 4000
	body := wasmgen.Concat(
		wasmgen.I32Const(flag), []byte{0x2d, 0x00, 0x00}, // i32.load8_u
		[]byte{0x04, wasmgen.I64}, // if (result i64)
		wasmgen.Answer(atB, uint32(len(b))),
		[]byte{0x05}, // else
		wasmgen.Answer(atA, uint32(len(a))),
		[]byte{wasmgen.OpEnd},
		wasmgen.I32Const(flag), wasmgen.I32Const(1), []byte{0x3a, 0x00, 0x00}, // i32.store8
	)
	m := wasmgen.Policy(1, 8192, body)
	m.Data = []wasmgen.Data{{Offset: atA, Bytes: a}, {Offset: atB, Bytes: b}}
	return m.Bytes()
}

// referenceCase is 371600's first reference case for v2024, expecting out.
func referenceCase(t *testing.T, out *abi.Output) []cases.Case {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "cases", "371600-v2024.json"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := cases.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	c := cs[0]
	c.Expect = cases.Expect{BasicFund: money.FormatFen(out.Basic)}
	return []cases.Case{c}
}

// TestR4CheckRefusesAModuleKeepingState: a version whose module answers a
// case differently once it has answered it before fails its check.
func TestR4CheckRefusesAModuleKeepingState(t *testing.T) {
	eng, _ := testenv.Engine(t)
	first, later := &abi.Output{Basic: 1}, &abi.Output{Basic: 2}
	cs := referenceCase(t, first)
	// The same module without state passes: the case itself is right.
	if m, rep := CheckVersion(context.Background(), eng, "371600", "s0", statefulPolicy(first, first), cs); !rep.OK {
		t.Fatalf("a stateless module fails its check: %+v", rep)
	} else {
		m.Close(context.Background())
	}
	m, rep := CheckVersion(context.Background(), eng, "371600", "s1", statefulPolicy(first, later), cs)
	if rep.OK {
		m.Close(context.Background())
		t.Fatalf("a module keeping state between calls passes its check: %+v", rep)
	}
	if len(rep.Cases) != 1 || !strings.Contains(rep.Cases[0].Error, "state") || rep.Passed != 0 {
		t.Errorf("report %+v: want the case named, saying the module keeps state", rep)
	}
}
