package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
)

// MaxReplayMismatchesListedForTest is the bound a replay's answer lists:
// 1,000, as every list of a region's answers (MaxRejectedListed).
const MaxReplayMismatchesListedForTest = MaxReplayMismatchesListed

// TestR7UnavailableVersionIsListedAndInHealth: a version the world names
// whose module was not found at start, or was refused by the check, is in
// force as unavailable (its dates are 503 policy_unavailable). The
// region's version list did not show it at all (it had no record), so the
// list called the version before it superseded and none in force, and
// /healthz said ok while every bill of those dates was refused.
func TestR7UnavailableVersionIsListedAndInHealth(t *testing.T) {
	for _, c := range []struct {
		name string
		wasm []byte
	}{
		{"module not found", nil},
		{"module refused", []byte("\x00asm damaged")},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
			if status, body := h.do("GET", "/healthz", "", nil); status != 200 || !strings.Contains(string(body), `"ok"`) {
				t.Fatalf("healthz before: %d %s", status, body)
			}
			h.versions.LoadWorld(context.Background(), &World{Policies: []PolicyFile{
				{Region: "371600", Version: "v2026", EffectiveFrom: 20260101, Wasm: c.wasm}}})
			status, body := h.do("GET", "/v1/regions/371600/policies", "tok-region-371600", nil)
			if status != 200 {
				t.Fatalf("list: %d %s", status, body)
			}
			var list struct {
				Versions []struct {
					Version, Status, Source string
					SHA256                  string `json:"module_sha256"`
				}
			}
			if err := json.Unmarshal(body, &list); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, v := range list.Versions {
				got[v.Version] = v.Status
			}
			if got["v2026"] != "unavailable" || got["v2024"] != "superseded" {
				t.Errorf("listed %v, want v2026 unavailable (its bills are refused) and v2024 superseded:\n%s", got, body)
			}
			status, body = h.do("GET", "/healthz", "", nil)
			if status != 200 || !strings.Contains(string(body), `"degraded"`) || !strings.Contains(string(body), "371600/v2026") {
				t.Errorf("healthz with a version unavailable: %d %s, want degraded naming 371600/v2026", status, body)
			}
		})
	}
}

// TestR7ReplayAnswerIsBounded: a replay listed every mismatch it found,
// and a module that cannot be had (its stored copy damaged or gone, or a
// version stored before a check's bound that now refuses it) makes one
// mismatch of every entry it computed: years of a region's settlements,
// millions of entries, became an answer of gigabytes built in the
// settling gateway's memory. Now the first MaxReplayMismatchesListed are
// listed and mismatches_total counts them all.
func TestR7ReplayAnswerIsBounded(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	n := MaxReplayMismatchesListedForTest + 5
	var first string
	for i := 0; i < n; i++ {
		body := settleBody(fmt.Sprintf("R-%d", i), "EMP1", "371600", `{"type":"outpatient","visit_date":"2025-06-01"}`,
			`[{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"}]`)
		if a := decodeAnswer(t, mustDo(t, h, 200, "POST", "/v1/settlements", "tok-H3716020001", body)); i == 0 {
			first = a.SettlementID
		}
	}
	// The module every entry recorded, damaged in the store replays read.
	e, ok, err := h.db.EntryByID(first)
	if err != nil || !ok {
		t.Fatalf("first settlement: %v %v", ok, err)
	}
	dir := t.TempDir()
	store, err := engine.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules", hex.EncodeToString(e.ModuleSHA256[:])+".wasm"), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.versions.store = store
	status, body := h.do("POST", "/v1/regions/371600/replay", "tok-region-371600", nil)
	if status != 200 {
		t.Fatalf("replay: %d %s", status, body)
	}
	var res struct {
		Checked    int               `json:"checked"`
		Identical  bool              `json:"identical"`
		Mismatches []json.RawMessage `json:"mismatches"`
		Total      int               `json:"mismatches_total"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if res.Checked != n || res.Identical || len(res.Mismatches) > MaxReplayMismatchesListedForTest || res.Total != n {
		t.Errorf("replay of %d entries whose module is damaged: checked %d, identical %v, %d mismatches listed, total %d; want at most %d listed and a total of %d (%d bytes)",
			n, res.Checked, res.Identical, len(res.Mismatches), res.Total, MaxReplayMismatchesListedForTest, n, len(body))
	}
}

// TestR7LedgerReplayOneAtATime: a region runs one replay at a time (429
// region_busy), but the clearing house's replay of the whole ledger,
// which compiles a private copy of every module and re-executes every
// entry twice, ran any number of times at once: a client retrying one
// that timed out piled up full-ledger replays, each taking a CPU and the
// modules' memory from settlement. Now one at a time, 429 replay_busy.
func TestR7LedgerReplayOneAtATime(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	for i := 0; i < 50; i++ {
		body := settleBody(fmt.Sprintf("R-%d", i), "EMP1", "371600", chronicVisit, oneLine)
		mustDo(t, h, 200, "POST", "/v1/settlements", "tok-H3716020001", body)
	}
	const n = 4
	statuses := make(chan int, n)
	bodies := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			status, body := h.do("POST", "/v1/ledger/replay", "tok-clearing", nil)
			statuses <- status
			bodies <- string(body)
		}()
	}
	got := map[int]int{}
	for i := 0; i < n; i++ {
		got[<-statuses]++
		if b := <-bodies; strings.Contains(b, `"error"`) && !strings.Contains(b, "replay_busy") {
			t.Errorf("a refused replay: %s, want replay_busy", b)
		}
	}
	if got[200] < 1 || got[429] < 1 || got[200]+got[429] != n {
		t.Errorf("%d ledger replays at once answered %v: want one 200 and the others 429 replay_busy", n, got)
	}
}

// TestR7UnrecordedUnavailableVersionCanBeWithdrawn: a version the world
// names whose module was not found, or was refused, at its first start
// is in force as unavailable (every bill of its dates 503) but was never
// recorded, so its region's rollback answered 404 "no version": the
// region could not return to the version before it, only wait for the
// operator. Now it is withdrawn like any version, and stays withdrawn
// at the next start with the same world.
func TestR7UnrecordedUnavailableVersionCanBeWithdrawn(t *testing.T) {
	for _, c := range []struct {
		name string
		wasm []byte
	}{
		{"module not found", nil},
		{"module refused", []byte("\x00asm damaged")},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
			w := &World{Policies: []PolicyFile{{Region: "371600", Version: "v2026", EffectiveFrom: 20260101, Wasm: c.wasm}}}
			h.versions.LoadWorld(context.Background(), w)
			if ver, _ := h.policies.Lookup("371600", 20260601); ver.Name != "v2026" {
				t.Fatalf("2026-06-01 under %q, want v2026 (unavailable)", ver.Name)
			}
			status, body := h.do("POST", "/v1/regions/371600/policies/v2026/withdraw", "tok-region-371600", nil)
			if status != 200 {
				t.Fatalf("withdraw the unavailable version: %d %s, want 200", status, body)
			}
			if ver, _ := h.policies.Lookup("371600", 20260601); ver.Name != "v2024" {
				t.Errorf("after the withdrawal 2026-06-01 is under %q, want v2024", ver.Name)
			}
			status, body = h.do("POST", "/v1/regions/371600/policies/v2026/withdraw", "tok-region-371600", nil)
			if status != 200 || !strings.Contains(string(body), `"replayed":true`) {
				t.Errorf("the same withdrawal again: %d %s, want 200 replayed", status, body)
			}
			// The next start, the world unchanged: still withdrawn.
			pol := &engine.Policies{}
			v := NewVersions(h.versions.eng, h.versions.store, pol, zerolog.Nop())
			for _, ver := range h.policies.Versions("371600") {
				pol.Put("371600", ver)
			}
			v.LoadWorld(context.Background(), w)
			if err := v.LoadStored(context.Background()); err != nil {
				t.Fatal(err)
			}
			if ver, _ := pol.Lookup("371600", 20260601); ver.Name != "v2024" {
				t.Errorf("restarted with the same world: 2026-06-01 under %q, want v2024 (v2026 withdrawn)", ver.Name)
			}
			status, body = h.do("GET", "/v1/regions/371600/policies", "tok-region-371600", nil)
			if status != 200 || !strings.Contains(string(body), `"version":"v2026"`) || !strings.Contains(string(body), `"withdrawn"`) {
				t.Errorf("list: %d %s, want v2026 withdrawn", status, body)
			}
			// Its module cannot be had for a what-if either: said so.
			status, body = h.do("POST", "/v1/regions/371600/shadow", "tok-region-371600", []byte(`{"version":"v2026","from":"2026-01-01","to":"2026-12-31"}`))
			if status != 503 || !strings.Contains(string(body), "policy_unavailable") {
				t.Errorf("shadow run of v2026: %d %s, want 503 policy_unavailable", status, body)
			}
		})
	}
}

// TestR7UploadAgainRestoresAnUnavailableVersion: an uploaded version
// whose stored module was missing or damaged at start is in force as
// unavailable (its bills 503). Its region sending the same upload again,
// the natural repair, was answered 200 "replayed" and changed nothing:
// the version stayed unavailable while the answer said it was published.
// Now the upload is checked again, its module stored and the version
// runs; the answer says it was restored.
func TestR7UploadAgainRestoresAnUnavailableVersion(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	body := upload("371600", "v2026", "2026-01-01", referenceWasm(t, "371600", "v2024"), readCases(t, "371600-v2024.json"), demoKey("371600"))
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", body); status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	// As LoadStored schedules it at a start that finds its module gone.
	ver, _ := h.policies.Lookup("371600", 20260601)
	h.policies.Put("371600", engine.Version{Name: "v2026", EffectiveFrom: 20260101,
		Module: &engine.Unavailable{Region: "371600", Version: "v2026", SHA256: ver.Module.Sum(), Cause: os.ErrNotExist}})
	status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", body)
	if status != 200 && status != 201 {
		t.Fatalf("the same upload again: %d %s", status, out)
	}
	now, _ := h.policies.Lookup("371600", 20260601)
	if _, ok := now.Module.(*engine.Module); !ok || now.Name != "v2026" {
		t.Errorf("the same upload again answered %d %s, but 2026-06-01 is under %s %T: want v2026 running again", status, out, now.Name, now.Module)
	}
	if !strings.Contains(string(out), "restored") {
		t.Errorf("the answer does not say the version was restored: %s", out)
	}
}
