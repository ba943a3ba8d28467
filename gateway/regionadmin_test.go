package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
)

// TestRegionNDJSONWithBOM: a region's NDJSON file as a Windows tool saves
// it (a UTF-8 byte order mark, CRLF line ends, an empty last line) is read
// like any other: the mark is not part of the first line's JSON, so the
// first person or code is not refused.
func TestRegionNDJSONWithBOM(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	body := "\ufeff" + strings.Replace(resident, "RES1", "BOM1", 1) + "\r\n" +
		strings.Replace(resident, "RES1", "BOM2", 1) + "\r\n\r\n"
	status, out := h.do("POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(body))
	var res struct {
		Written, Created, Updated int
		Rejected                  []LineError
	}
	json.Unmarshal(out, &res)
	if status != 200 || res.Written != 2 || res.Created != 2 || len(res.Rejected) != 0 {
		t.Fatalf("persons with a BOM and CRLF: %d %s", status, out)
	}
	status, out = h.do("POST", "/v1/regions/371602/catalog", "tok-region-371600", []byte("\ufeff{\"code\":\"XBOM\",\"class\":\"A\"}\r\n"))
	if status != 200 || !strings.Contains(string(out), `"written":1`) {
		t.Fatalf("catalog with a BOM: %d %s", status, out)
	}
	// A mark anywhere but at the start of the body is not one.
	status, out = h.do("POST", "/v1/regions/371600/persons", "tok-region-371600",
		[]byte(strings.Replace(resident, "RES1", "BOM3", 1)+"\n\ufeff"+strings.Replace(resident, "RES1", "BOM4", 1)))
	if status != 200 || !strings.Contains(string(out), `"line":2`) {
		t.Fatalf("a BOM inside the body: %d %s", status, out)
	}
	// The world's NDJSON files likewise.
	w, err := ReadWorld(fstest.MapFS{
		"catalogs/371600.ndjson": {Data: []byte("\ufeff{\"code\": \"XA01\", \"class\": \"A\"}\r\n")},
		"persons/371600.ndjson":  {Data: []byte("\ufeff" + empActive + "\r\n")},
	})
	if err != nil {
		t.Fatalf("world files with a BOM: %v", err)
	}
	if len(w.Catalogs["371600"]) != 1 || len(w.Persons) != 1 {
		t.Fatalf("world files with a BOM: %d codes, %d persons", len(w.Catalogs["371600"]), len(w.Persons))
	}
}

// TestWithdrawLastVersionRefused: rolling back a region's only version
// has nothing to roll back to; it would leave every bill of the region's
// insured, anywhere in the country, refused as no_policy. It is refused
// (409), and nothing changes; with another version it is a rollback.
func TestWithdrawLastVersionRefused(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"152500": {strings.Replace(resident, "RES1", "X1", 1)}})))
	quote := func() int {
		status, _ := h.do("POST", "/v1/settlements/quote", "tok-H3716210001", settleBody("Q", "X1", "152500",
			`{"type":"outpatient","visit_date":"2025-05-31"}`, `[{"code":"XA01","unit_price":"100.00","quantity":"1","amount":"100.00"}]`))
		return status
	}
	status, out := h.do("POST", "/v1/regions/152500/policies/v1/withdraw", "tok-region-152500", nil)
	if status != 409 || !strings.Contains(string(out), `"code":"last_version"`) {
		t.Fatalf("withdrawing the only version: %d %s", status, out)
	}
	if quote() != 200 {
		t.Fatalf("the refused withdrawal took the version away")
	}
	if list, _ := h.versions.List("152500", 20261123); len(list) != 1 || list[0].Status != "in_force" {
		t.Fatalf("versions after a refused withdrawal: %+v", list)
	}
	// With a later version, the earlier is withdrawn and the later one, the
	// last left, is not.
	status, out = h.do("POST", "/v1/regions/152500/policies", "tok-region-152500",
		upload("152500", "v2", "2023-01-01", referenceWasm(t, "152500", "v1"), readCases(t, "152500-v1.json"), demoKey("152500")))
	if status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	if status, out := h.do("POST", "/v1/regions/152500/policies/v1/withdraw", "tok-region-152500", nil); status != 200 || !strings.Contains(string(out), `"in_force_today":"v2"`) {
		t.Fatalf("withdrawing v1 with v2 there: %d %s", status, out)
	}
	if status, out := h.do("POST", "/v1/regions/152500/policies/v2/withdraw", "tok-region-152500", nil); status != 409 {
		t.Fatalf("withdrawing the last one left: %d %s", status, out)
	}
	if quote() != 200 {
		t.Fatalf("no version in force after the refusal")
	}
}

// TestRetroactiveVersion: a version published with an effective date
// already past settles the bills of those dates settled from then on; the
// settlements already made keep the version (and module) that computed
// them, and the upload's answer says so, since a region may have meant a
// future date.
func TestRetroactiveVersion(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {resident}})))
	settle := func(id, date string) answer {
		t.Helper()
		status, out := h.do("POST", "/v1/settlements", "tok-H3716210001", settleBody(id, "RES1", "371600",
			`{"type":"two_disease","visit_date":"`+date+`"}`, `[{"code":"XA01","unit_price":"50.00","quantity":"1","amount":"50.00"}]`))
		if status != 200 {
			t.Fatalf("settle %s: %d %s", id, status, out)
		}
		return decodeAnswer(t, out)
	}
	first := settle("RETRO-1", "2024-07-01")
	if first.Policy["version"] != "v2024" {
		t.Fatalf("before the upload: %v", first.Policy)
	}
	wasm := referenceWasm(t, "371600", "v2023")
	status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600",
		upload("371600", "retro", "2024-06-01", wasm, readCases(t, "371600-v2023.json"), demoKey("371600")))
	if status != 201 || !strings.Contains(string(out), `"note":"effective_from 2024-06-01 is already past`) {
		t.Fatalf("retroactive upload: %d %s", status, out)
	}
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600",
		upload("371600", "future", "2030-01-01", wasm, readCases(t, "371600-v2023.json"), demoKey("371600"))); status != 201 || strings.Contains(string(out), `"note"`) {
		t.Fatalf("future upload: %d %s", status, out)
	}
	sum := sha256.Sum256(wasm)
	if a := settle("RETRO-2", "2024-07-01"); a.Policy["version"] != "retro" || a.Policy["module_sha256"] != hex.EncodeToString(sum[:]) || a.Amounts["basic_fund"] != "30.00" {
		t.Fatalf("a bill dated after the effective date: %v %v", a.Policy, a.Amounts)
	}
	if a := settle("RETRO-3", "2024-05-31"); a.Policy["version"] != "v2024" || a.Amounts["basic_fund"] != "35.00" {
		t.Fatalf("a bill dated before the effective date: %v %v", a.Policy, a.Amounts)
	}
	_, out = h.do("GET", "/v1/settlements/"+first.SettlementID, "tok-H3716210001", nil)
	if a := decodeAnswer(t, out); a.Policy["version"] != "v2024" || a.Amounts["basic_fund"] != first.Amounts["basic_fund"] {
		t.Fatalf("a settlement made before the upload changed: %s", out)
	}
	if _, _, mm, err := h.srv.Replay(t.Context(), "371600", 0, 0); err != nil || len(mm) != 0 {
		t.Fatalf("replay: %v %v", mm, err)
	}
}

// TestRestartKeepsVersionsInForce: after uploads (one tying a world
// version's date, one tying another upload's) and the withdrawal of a
// world version, a restart with the same world has the same version in
// force on every date, and so has the restart after it.
func TestRestartKeepsVersionsInForce(t *testing.T) {
	ctx := context.Background()
	eng, store := versionsStore(t)
	files := fstest.MapFS{
		"policies/371600/v1.json": {Data: []byte(`{"effective_from": "2023-01-01"}`)},
		"policies/371600/v1.wasm": {Data: answerModule(abi.Output{Basic: 1})},
		"policies/371600/v2.json": {Data: []byte(`{"effective_from": "2024-01-01"}`)},
		"policies/371600/v2.wasm": {Data: answerModule(abi.Output{Basic: 2})},
		"policies/371600/v3.json": {Data: []byte(`{"effective_from": "2026-01-01"}`)},
		"policies/371600/v3.wasm": {Data: answerModule(abi.Output{Basic: 3})},
	}
	start := func() (*Versions, *engine.Policies) {
		w, err := ReadWorld(files)
		if err != nil {
			t.Fatal(err)
		}
		pol := &engine.Policies{}
		v := NewVersions(eng, store, pol, zerolog.Nop())
		v.LoadWorld(ctx, w)
		if err := v.LoadStored(ctx); err != nil {
			t.Fatal(err)
		}
		return v, pol
	}
	inForce := func(pol *engine.Policies) string {
		var b strings.Builder
		for _, d := range []abi.Date{20230601, 20240101, 20240601, 20250101, 20250601, 20260101, 20260601} {
			ver, _ := pol.Lookup("371600", d)
			fmt.Fprintf(&b, "%d:%s/%x ", d, ver.Name, ver.Module.Sum())
		}
		return b.String()
	}
	v, pol := start()
	publish := func(name string, basic int64, eff abi.Date) {
		wasm := answerModule(abi.Output{Basic: basic})
		m, err := eng.Load(ctx, "371600", name, wasm)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Publish(ctx, m, wasm, eff); err != nil {
			t.Fatal(err)
		}
	}
	publish("u1", 11, 20250101)
	publish("u2", 12, 20240101) // the date of world v2
	publish("u3", 13, 20250101) // the date of u1
	if _, err := v.Withdraw("371600", "v3"); err != nil {
		t.Fatal(err)
	}
	live := inForce(pol)
	if !strings.Contains(live, "20240601:u2/") || !strings.Contains(live, "20250601:u3/") || !strings.Contains(live, "20260601:u3/") {
		t.Fatalf("in force live: %s", live)
	}
	for i := 1; i <= 2; i++ {
		if _, pol := start(); inForce(pol) != live {
			t.Fatalf("restart %d:\n%s\nwant\n%s", i, inForce(pol), live)
		}
	}
}

// TestWithdrawWaitsForSettlementsInFlight: once a rollback is answered, no
// settlement computed with the withdrawn version commits. A settlement
// that looked its version up before the rollback and is still in flight
// (here: waiting for its person's lock) either finishes before the
// rollback answers or is computed with the version in force after it.
func TestWithdrawWaitsForSettlementsInFlight(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {resident}})))
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600",
		upload("371600", "bad", "2024-06-01", referenceWasm(t, "371600", "v2023"), readCases(t, "371600-v2023.json"), demoKey("371600"))); status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	mu := h.srv.svc.lockPerson("371600", "RES1")
	type done struct {
		at     time.Time
		status int
		out    []byte
	}
	settled, withdrawn := make(chan done, 1), make(chan done, 1)
	go func() {
		status, out := h.do("POST", "/v1/settlements", "tok-H3716210001", settleBody("INFLIGHT-1", "RES1", "371600",
			`{"type":"two_disease","visit_date":"2024-07-01"}`, `[{"code":"XA01","unit_price":"50.00","quantity":"1","amount":"50.00"}]`))
		settled <- done{time.Now(), status, out}
	}()
	time.Sleep(300 * time.Millisecond) // the settlement waits for the lock
	go func() {
		status, out := h.do("POST", "/v1/regions/371600/policies/bad/withdraw", "tok-region-371600", nil)
		withdrawn <- done{time.Now(), status, out}
	}()
	select {
	case w := <-withdrawn:
		withdrawn <- w
	case <-time.After(300 * time.Millisecond):
	}
	mu.Unlock()
	s, w := <-settled, <-withdrawn
	if s.status != 200 || w.status != 200 {
		t.Fatalf("settle %d %s; withdraw %d %s", s.status, s.out, w.status, w.out)
	}
	// The promise is about commits: the settlement's answer may still be
	// on its way when the rollback's arrives, but its commit must come
	// before the rollback is answered.
	var c struct {
		CommittedAt time.Time `json:"committed_at"`
	}
	if err := json.Unmarshal(s.out, &c); err != nil || c.CommittedAt.IsZero() {
		t.Fatalf("committed_at of %s: %v", s.out, err)
	}
	if a := decodeAnswer(t, s.out); a.Policy["version"] == "bad" && !c.CommittedAt.Before(w.at) {
		t.Fatalf("a settlement with the withdrawn version was committed after the rollback was answered (%s): %s", w.at.Format(time.RFC3339Nano), s.out)
	}
}

// TestSchemeMoveKeepsCounters: an upsert moving a person from the employee
// to the resident scheme mid-year keeps the year's counters (README), and
// the next bill is computed as a resident's with them.
func TestSchemeMoveKeepsCounters(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	items := `[{"code":"XA01","unit_price":"20000.00","quantity":"1","amount":"20000.00"}]`
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("MOVE-1", "EMP1", "371600",
		`{"type":"inpatient","admitted_on":"2025-03-01","discharged_on":"2025-03-05"}`, items)); status != 200 {
		t.Fatalf("settle: %d %s", status, out)
	}
	before, _ := h.db.Counters("371600", "EMP1", 2025, nil)
	moved := strings.Replace(empActive, `"scheme":"employee"`, `"scheme":"resident"`, 1)
	if status, out := h.do("POST", "/v1/regions/371600/persons", "tok-region-371600", []byte(moved)); status != 200 || !strings.Contains(string(out), `"updated":1`) {
		t.Fatalf("move: %d %s", status, out)
	}
	after, _ := h.db.Counters("371600", "EMP1", 2025, nil)
	if len(before) == 0 || fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("counters before the move %v, after %v", before, after)
	}
	status, out := h.do("POST", "/v1/settlements/quote", "tok-H3716020001", settleBody("MOVE-2", "EMP1", "371600",
		`{"type":"inpatient","admitted_on":"2025-04-01","discharged_on":"2025-04-05"}`, items))
	if status != 200 || !strings.Contains(string(out), "residents have none") {
		t.Fatalf("a bill after the move: %d %s", status, out)
	}
}
