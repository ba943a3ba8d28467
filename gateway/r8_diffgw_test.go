package gateway

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/cases"
)

// TestR8RestoreAfterWithdrawalKeepsItWithdrawn: the same upload of a
// version unavailable since start restores it, but its region may
// withdraw the version while the upload's check runs (seconds: every
// example case is run), the upload having seen it unavailable before.
// The restore then put the withdrawn version back in the schedule: its
// dates settled under a version the store records withdrawn, and the
// next start (which does not load it) settles them under the one before.
// Now the restore is refused as an upload of a withdrawn version is.
func TestR8RestoreAfterWithdrawalKeepsItWithdrawn(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	wasm := referenceWasm(t, "371600", "v2024")
	raw := readCases(t, "371600-v2024.json")
	cs, err := cases.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	body := upload("371600", "v2026", "2026-01-01", wasm, raw, demoKey("371600"))
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", body); status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	// As LoadStored schedules it at a start that finds its module gone.
	ver, _ := h.policies.Lookup("371600", 20260601)
	h.policies.Put("371600", engine.Version{Name: "v2026", EffectiveFrom: 20260101,
		Module: &engine.Unavailable{Region: "371600", Version: "v2026", SHA256: ver.Module.Sum(), Cause: os.ErrNotExist}})

	// The same upload again has seen the version unavailable and checked
	// its module (uploadPolicy) when the region's withdrawal lands.
	if !h.versions.isUnavailable("371600", "v2026") {
		t.Fatal("v2026 is not scheduled as unavailable")
	}
	m, rep := CheckVersion(context.Background(), h.versions.eng, "371600", "v2026", wasm, cs)
	if !rep.OK {
		t.Fatalf("check: %+v", rep)
	}
	if status, out := h.do("POST", "/v1/regions/371600/policies/v2026/withdraw", "tok-region-371600", nil); status != 200 {
		t.Fatalf("withdraw: %d %s", status, out)
	}
	err = h.versions.restore(m, wasm, 20260101)
	if err == nil {
		m.Close(context.Background())
	}
	now, _ := h.policies.Lookup("371600", 20260601)
	if now.Name != "v2024" {
		t.Errorf("restore after the withdrawal: err %v, 2026-06-01 under %s %T; want v2024 (v2026 is recorded withdrawn)", err, now.Name, now.Module)
	}
	if err == nil || !strings.Contains(err.Error(), "withdrawn") {
		t.Errorf("restore after the withdrawal answered %v, want a refusal saying it was withdrawn", err)
	}
}

// TestR8SameAPIAndAdminAddressWritesNothing: a start refused for a taken
// address writes nothing first (TestR6FailedStartWritesNothing), but the
// addresses were tried one at a time, each closed before the next: an
// --admin-listen mistyped as --listen's address passed both tries, the
// ledger was created and the world applied, and only then was the start
// refused for the address in use.
func TestR8SameAPIAndAdminAddressWritesNothing(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	world := fstest.MapFS{
		"hospitals.json":  {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}]`)},
		"principals.json": {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "hospital", "id": "H1"}]`)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{Listen: addr, AdminListen: addr, World: world, DBDir: filepath.Join(t.TempDir(), "ledger"), Logger: zerolog.Nop(),
		Ready: func(net.Addr) { cancel() }}
	err = Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Run with --listen and --admin-listen both %s: %v, want an error saying the address is in use", addr, err)
	}
	if _, err := os.Stat(cfg.DBDir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(cfg.DBDir)
		t.Errorf("the failed start left %s behind (%v; %d files)", cfg.DBDir, err, len(entries))
	}
}
