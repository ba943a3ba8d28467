package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/cases"
	"medgate/engine/money"
	"medgate/engine/wasmgen"
	"medgate/gateway/internal/testenv"
	"medgate/ledger"
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

// togglingPolicy answers a and b in turn on each instance (state kept
// between calls, which ABI.md forbids).
func togglingPolicy(a, b *abi.Output) []byte {
	ea, eb := a.AppendBinary(nil), b.AppendBinary(nil)
	const atA, atB, flag = 1024, 3072, 4000
	body := wasmgen.Concat(
		wasmgen.I32Const(flag),                           // address for the store below
		wasmgen.I32Const(flag), []byte{0x2d, 0x00, 0x00}, // i32.load8_u
		wasmgen.I32Const(1), []byte{0x73}, // i32.xor
		[]byte{0x3a, 0x00, 0x00}, // i32.store8: flag ^= 1
		wasmgen.I32Const(flag), []byte{0x2d, 0x00, 0x00},
		[]byte{0x04, wasmgen.I64}, // if (result i64): the flag is now 1 on odd calls
		wasmgen.Answer(atA, uint32(len(ea))),
		[]byte{0x05},
		wasmgen.Answer(atB, uint32(len(eb))),
		[]byte{wasmgen.OpEnd},
	)
	m := wasmgen.Policy(1, 8192, body)
	m.Data = []wasmgen.Data{{Offset: atA, Bytes: ea}, {Offset: atB, Bytes: eb}}
	return m.Bytes()
}

// fixedAnswerPolicy answers the Output stored at at (1024 or 3072), both
// a and b being stored: two modules that differ only in their code.
func fixedAnswerPolicy(a, b *abi.Output, second bool) []byte {
	ea, eb := a.AppendBinary(nil), b.AppendBinary(nil)
	body := wasmgen.Answer(1024, uint32(len(ea)))
	if second {
		body = wasmgen.Answer(3072, uint32(len(eb)))
	}
	m := wasmgen.Policy(1, 8192, body)
	m.Data = []wasmgen.Data{{Offset: 1024, Bytes: ea}, {Offset: 3072, Bytes: eb}}
	return m.Bytes()
}

// r4ReplayHarness starts a gateway whose region 371600 runs wasm (loaded
// by eng) from 2026-01-01, and settles n chronic bills of EMP1 dated
// 2026-06-01 one after another.
func r4ReplayHarness(t *testing.T, eng *engine.Engine, wasm []byte, n int) *harness {
	t.Helper()
	h := &harness{tb: t, fs: vfs.NewMem(), dir: "ledger", world: refWorld(t, map[string][]string{"371600": {empActive}}), policies: &engine.Policies{}}
	store, err := engine.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h.versions = NewVersions(eng, store, h.policies, zerolog.Nop())
	m, err := eng.Load(context.Background(), "371600", "w1", wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.versions.Adopt(m, wasm, 20260101); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(h.stop)
	for i := range n {
		body := settleBody(fmt.Sprintf("R4E-%d", i), "EMP1", "371600", `{"type":"chronic","visit_date":"2026-06-01"}`, oneLine)
		if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body); status != 200 {
			t.Fatalf("settle %d: %d %s", i, status, out)
		}
	}
	return h
}

// TestR4ReplayCatchesAModuleKeepingState: "the same input gives the same
// output, always, so any ledger entry can be re-executed and compared"
// (abi.md). A module answering two amounts in turn settled four bills
// (a, b, a, b on one pooled instance); a replay that goes on calling that
// same instance gets a, b, a, b again and calls the ledger identical.
// Each entry is replayed on an instance of its own that has not served
// the live settlements, and twice: a module whose answer to the same
// input changes is named.
func TestR4ReplayCatchesAModuleKeepingState(t *testing.T) {
	eng, _ := testenv.Engine(t)
	a, b := &abi.Output{Basic: 100}, &abi.Output{Basic: 200}
	h := r4ReplayHarness(t, eng, togglingPolicy(a, b), 4)
	checked, _, mm, err := h.srv.Replay(t.Context(), "371600", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if checked != 4 || len(mm) == 0 {
		t.Fatalf("replay of a module keeping state: %d checked, mismatches %+v; want it caught", checked, mm)
	}
}

// TestR4ReplayDoesNotTrustTheCompilationCache: the compiled code cached
// on disk is keyed by the module's hash but carries only a CRC of its
// code: a cache file holding another module's code (swapped, or
// written by someone who could write the data directory) is run for the
// module whose sha256 the ledger records. Settlements then record
// answers no run of that module gives; a replay that runs the same
// cached code calls them identical. A replay compiles the stored module
// itself (not from the cache), so it names them.
func TestR4ReplayDoesNotTrustTheCompilationCache(t *testing.T) {
	ctx := context.Background()
	a, b := &abi.Output{Basic: 100}, &abi.Output{Basic: 200}
	wasmA, wasmB := fixedAnswerPolicy(a, b, false), fixedAnswerPolicy(a, b, true)
	cacheFile := func(dir string, wasm []byte) string {
		e, err := engine.New(ctx, engine.Config{CacheDir: dir, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Load(ctx, "371600", "x", wasm); err != nil {
			t.Fatal(err)
		}
		e.Close(ctx)
		var found []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				found = append(found, p)
			}
			return err
		})
		if len(found) != 1 {
			t.Fatalf("cache files: %v", found)
		}
		return found[0]
	}
	fileA := cacheFile(t.TempDir(), wasmA)
	dirB := t.TempDir()
	fileB := cacheFile(dirB, wasmB)
	codeA, err := os.ReadFile(fileA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fileB, codeA, 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(ctx, engine.Config{CacheDir: dirB, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(ctx) })
	h := r4ReplayHarness(t, eng, wasmB, 1)
	var got answer
	_, out := h.do("GET", "/v1/settlements/"+firstSettlementID(t, h), "tok-H3716020001", nil)
	got = decodeAnswer(t, out)
	if got.Amounts["basic_fund"] != "1.00" {
		t.Skipf("the swapped cache file was not run (basic_fund %s): nothing to replay", got.Amounts["basic_fund"])
	}
	_, _, mm, err := h.srv.Replay(ctx, "371600", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(mm) == 0 {
		t.Fatal("a settlement computed by code other than its recorded module's replays as identical")
	}
}

func firstSettlementID(t *testing.T, h *harness) string {
	t.Helper()
	var id string
	h.db.Scan(1, func(e *ledger.Entry) error {
		if e.Kind == ledger.KindSettlement && id == "" {
			id = e.SettlementID
		}
		return nil
	})
	if id == "" {
		t.Fatal("no settlement in the ledger")
	}
	return id
}

// TestR4WithdrawReleasesTheModule: a withdrawn version never applies
// again, and a replay of its entries compiles its stored module afresh
// (Versions.ReplayRunner), so nothing needs the loaded module any more;
// yet its compiled code and pooled instances (each up to the memory
// limit) were kept for the gateway's life. A region uploading and
// withdrawing versions in turn pinned more memory with every cycle.
func TestR4WithdrawReleasesTheModule(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	wasm := referenceWasm(t, "371600", "v2023")
	cs := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	for i, version := range []string{"v2031", "v2032", "v2033"} {
		eff := fmt.Sprintf("%d-01-01", 2031+i)
		if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", version, eff, wasm, cs, key)); status != 201 {
			t.Fatalf("upload %s: %d %s", version, status, out)
		}
		d, _ := ParseDate([]byte(eff))
		ver, ok := h.policies.Lookup("371600", d)
		m, isModule := ver.Module.(*engine.Module)
		if !ok || ver.Name != version || !isModule {
			t.Fatalf("%s not scheduled as a loaded module: %+v", version, ver)
		}
		// Called (an instance pooled), as a version in force would be.
		parsed, err := cases.Parse(cs)
		if err != nil {
			t.Fatal(err)
		}
		in, err := parsed[0].ABI()
		if err != nil {
			t.Fatal(err)
		}
		var out abi.Output
		if err := m.Call(context.Background(), in, in.AppendBinary(nil), &out); err != nil || m.Live() != 1 {
			t.Fatalf("%s: %v, %d live", version, err, m.Live())
		}
		if status, out := h.do("POST", "/v1/regions/371600/policies/"+version+"/withdraw", "tok-region-371600", nil); status != 200 {
			t.Fatalf("withdraw %s: %d %s", version, status, out)
		}
		if n := m.Live(); n != 0 {
			t.Errorf("withdrawn %s keeps %d instances", version, n)
		}
		h.versions.mu.Lock()
		kept := h.versions.modules[m.SHA256] == engine.Runner(m)
		h.versions.mu.Unlock()
		if kept {
			t.Errorf("withdrawn %s stays loaded", version)
		}
	}
}

// TestR4PublishedVersionNotInForceHoldsNoInstance: a version's check
// leaves its probing instance in the pool, with whatever memory its
// start function and the region's cases grew (up to the 64 MiB limit).
// For a version not in force today (scheduled, or superseded the day it
// is published) that instance was pinned until the gateway stopped
// though nothing may call it: a region publishing versions pinned up to
// 64 MiB each. It is released; the version's first settlement, if any,
// instantiates one.
func TestR4PublishedVersionNotInForceHoldsNoInstance(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	wasm := referenceWasm(t, "371600", "v2023")
	cs := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	for _, tc := range []struct {
		version, eff string
		date         abi.Date
	}{{"v2031", "2031-01-01", 20310101}, {"v2020", "2020-01-01", 20200101}} {
		if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", tc.version, tc.eff, wasm, cs, key)); status != 201 {
			t.Fatalf("upload %s: %d %s", tc.version, status, out)
		}
		ver, _ := h.policies.Lookup("371600", tc.date)
		m, ok := ver.Module.(*engine.Module)
		if !ok || ver.Name != tc.version {
			t.Fatalf("%s not scheduled: %+v", tc.version, ver)
		}
		if n := m.Live(); n != 0 {
			t.Errorf("%s, not in force today, keeps %d instances", tc.version, n)
		}
	}
	// At a start, the versions loaded from the store likewise.
	again := &engine.Policies{}
	v := NewVersions(h.versions.eng, h.versions.store, again, zerolog.Nop())
	if err := v.LoadStored(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []abi.Date{20310101, 20200101} {
		if ver, _ := again.Lookup("371600", d); ver.Module.(*engine.Module).Live() != 0 {
			t.Errorf("after a start, %s, not in force today, keeps an instance", ver.Name)
		}
	}
	// A version in force is still settled: an old-dated bill under v2020.
	h2 := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	if status, out := h2.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2020", "2020-01-01", wasm, cs, key)); status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	body := settleBody("R4-OLD", "EMP1", "371600", `{"type":"chronic","visit_date":"2020-06-01"}`, oneLine)
	if status, out := h2.do("POST", "/v1/settlements", "tok-H3716020001", body); status != 200 || !strings.Contains(string(out), `"v2020"`) {
		t.Fatalf("a bill of 2020 after the upload: %d %s", status, out)
	}
}

// TestR4SupersededVersionReleasesItsInstances: a version superseded by a
// new one serves only bills dated before the new one's date; the
// instances it pooled while in force are released when it is superseded.
func TestR4SupersededVersionReleasesItsInstances(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	wasm := referenceWasm(t, "371600", "v2023")
	cs := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2025", "2025-01-01", wasm, cs, key)); status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	body := settleBody("R4-SUP", "EMP1", "371600", `{"type":"chronic","visit_date":"2025-06-01"}`, oneLine)
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body); status != 200 || !strings.Contains(string(out), `"v2025"`) {
		t.Fatalf("settle under v2025: %d %s", status, out)
	}
	ver, _ := h.policies.Lookup("371600", 20250601)
	m := ver.Module.(*engine.Module)
	if m.Live() == 0 {
		t.Fatal("v2025 pooled no instance")
	}
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2026", "2026-01-01", wasm, cs, key)); status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	if n := m.Live(); n != 0 {
		t.Errorf("superseded v2025 keeps %d instances", n)
	}
	// It still settles the bills of its dates.
	body = settleBody("R4-SUP2", "EMP1", "371600", `{"type":"chronic","visit_date":"2025-07-01"}`, oneLine)
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body); status != 200 || !strings.Contains(string(out), `"v2025"`) {
		t.Fatalf("settle under superseded v2025: %d %s", status, out)
	}
}

// TestR4DamagedVersionRecordBlocksTheRegion: a region's version records
// that still parse as JSON but hold a record no writer writes (a state or
// source misspelt by one damaged byte, another region's record, a hash
// that is not one) were read as they were: a version whose state is not
// "active" was skipped without a word, and its dates settled under the
// version before it; a record naming another region was scheduled there.
// Such records make the region's records unreadable, as a file that does
// not parse does: the region's bills are refused until they are repaired.
func TestR4DamagedVersionRecordBlocksTheRegion(t *testing.T) {
	eng, _ := testenv.Engine(t)
	sumOf := func(store *engine.Store) string {
		sum, err := store.PutModule(referenceWasm(t, "371600", "v2024"))
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	for _, tc := range []struct {
		name   string
		damage func(string) string
	}{
		{"state", func(s string) string { return strings.Replace(s, `"active"`, `"activd"`, 1) }},
		{"source", func(s string) string { return strings.Replace(s, `"upload"`, `"uploaf"`, 1) }},
		{"region", func(s string) string { return strings.Replace(s, `"region": "371600"`, `"region": "371601"`, 1) }},
		{"sha256", func(s string) string { return strings.Replace(s, `"sha256": "`, `"sha256": "x`, 1) }},
		{"version", func(s string) string { return strings.Replace(s, `"version": "u1"`, `"version": ""`, 1) }},
		{"effective_from", func(s string) string { return strings.Replace(s, `20250101`, `20251301`, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store, err := engine.OpenStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			sum := sumOf(store)
			if err := store.Update("371600", func(recs []engine.Record) ([]engine.Record, error) {
				return append(recs, engine.Record{Region: "371600", Version: "u1", EffectiveFrom: 20250101, SHA256: sum, State: engine.StateActive, Source: "upload"}), nil
			}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "versions", "371600.json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			damaged := tc.damage(string(b))
			if damaged == string(b) {
				t.Fatalf("nothing damaged in %s", b)
			}
			if err := os.WriteFile(path, []byte(damaged), 0o644); err != nil {
				t.Fatal(err)
			}
			policies := &engine.Policies{}
			old := &engine.Native{Region: "371600"}
			policies.Put("371600", engine.Version{Name: "w2024", EffectiveFrom: 20240101, Module: old})
			if err := NewVersions(eng, store, policies, zerolog.Nop()).LoadStored(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, region := range []string{"371600", "371601"} {
				ver, ok := policies.Lookup(region, 20250601)
				if !ok {
					continue
				}
				var in abi.Input
				var out abi.Output
				var ce *engine.CallError
				if err := ver.Module.Call(context.Background(), &in, nil, &out); !errors.As(err, &ce) || ce.Kind != engine.FailUnavailable {
					t.Errorf("%s on 2025-06-01 is settled under %s (%v); want the region's bills refused", region, ver.Name, err)
				}
			}
		})
	}
}
