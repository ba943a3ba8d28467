package killtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"medgate/gateway/internal/testenv"
)

// TestR10UpgradeFromOldBinary writes a ledger with an older gateway's
// binary (MEDGATE_OLD_BINARY, its reference modules in MEDGATE_OLD_MODULES,
// e.g. a checkout of commit 02075fb after `make policies` and `go build
// ./cmd/medgate`), then starts this one on it: everything written must be
// found as it was (settlements with their amounts and modules, retries
// answered as replays of the same ids, the reversal, the credit, the keyed
// catalog write, the uploaded version in its place, the closed month),
// region replay must find no mismatch, new settlements must work, and the
// ledger must audit and verify. Skipped without MEDGATE_OLD_BINARY.
func TestR10UpgradeFromOldBinary(t *testing.T) {
	oldBin, oldMods := os.Getenv("MEDGATE_OLD_BINARY"), os.Getenv("MEDGATE_OLD_MODULES")
	if oldBin == "" || oldMods == "" {
		t.Skip("set MEDGATE_OLD_BINARY and MEDGATE_OLD_MODULES to an older gateway's binary and its build/policies")
	}
	root := testenv.RepoRoot()
	db := filepath.Join(t.TempDir(), "db")
	c := &http.Client{Timeout: 30 * time.Second}
	ctx := context.Background()

	// The region's upload, signed by the old binary's CLI: of the date of
	// the world's v2024, so that it applies over it, before and after.
	upFile := filepath.Join(t.TempDir(), "up.json")
	if out, err := exec.Command(oldBin, "policy", "sign", "--region", "371600", "--version", "v2024r",
		"--effective", "2024-01-01", "--demo-key", "--module", filepath.Join(oldMods, "371600", "v2024.wasm"),
		"--cases", filepath.Join(root, "testdata", "cases", "371600-v2024.json"), "-o", upFile).CombinedOutput(); err != nil {
		t.Fatalf("old policy sign: %v\n%s", err, out)
	}
	upload, err := os.ReadFile(upFile)
	if err != nil {
		t.Fatal(err)
	}

	type req struct {
		method, path, token, key string
		body                     []byte
	}
	settle := func(hosp, rid, person, region, date, items string) req {
		return req{"POST", "/v1/settlements", "demo-hospital-" + hosp, "", []byte(`{"request_id":"` + rid +
			`","person":{"id":"` + person + `","insured_region":"` + region + `"},"visit":{"type":"inpatient","admitted_on":"` +
			date + `","discharged_on":"` + date + `","emergency":false,"diagnoses":["I10"]},"use_personal_account":true,"items":[` + items + `]}`)}
	}
	items := `{"code":"XA01","unit_price":"12.50","quantity":"2","amount":"25.00"},{"code":"XB01","unit_price":"3000","quantity":"1","amount":"3000.00"}`
	do := func(p *proc, r req) (int, map[string]any) {
		t.Helper()
		hr, err := http.NewRequestWithContext(ctx, r.method, p.base+r.path, bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Authorization", "Bearer "+r.token)
		if r.key != "" {
			hr.Header.Set("Idempotency-Key", r.key)
		}
		resp, err := c.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %d %s", r.method, r.path, resp.StatusCode, b)
		}
		return resp.StatusCode, m
	}
	must := func(p *proc, r req) map[string]any {
		t.Helper()
		code, m := do(p, r)
		if code != 200 && code != 201 {
			t.Fatalf("%s %s: %d %v", r.method, r.path, code, m)
		}
		return m
	}

	// The old gateway.
	old := startBin(t, oldBin, oldMods, db)
	old.ready(t, time.Minute)
	writes := []req{
		settle("H3701020001", "u-1", "152500198001011234", "152500", "2026-11-09", items),
		settle("H3701020001", "u-2", "370000198501011401", "370000", "2026-11-10", items),
		settle("H3716020001", "u-3", "371600198501010101", "371600", "2026-11-11", items),
		settle("H3716020001", "u-4", "371600198501010201", "371600", "2023-06-11", items),
		settle("H1525020001", "u-5", "152500198501011001", "152500", "2026-11-12", items),
	}
	var first []map[string]any
	for _, w := range writes {
		first = append(first, must(old, w))
	}
	rev := req{"POST", "/v1/settlements/" + first[4]["settlement_id"].(string) + "/reversal", "demo-hospital-H1525020001", "",
		[]byte(`{"request_id":"u-rev","reason":"upgrade"}`)}
	credit := req{"POST", "/v1/regions/371600/persons/371600198501010202/credits", "demo-region-371600", "", []byte(`{"reference":"u-cr","amount":"100.00"}`)}
	catalog := req{"POST", "/v1/regions/371600/catalog", "demo-region-371600", "u-cat", []byte(`{"code": "XZ99", "class": "B", "price_cap": "50.00", "selfpay_prop": "0.10"}` + "\n")}
	policy := req{"POST", "/v1/regions/371600/policies", "demo-region-371600", "", upload}
	for _, r := range []req{rev, credit, catalog, policy} {
		writes = append(writes, r)
		first = append(first, must(old, r))
	}
	for _, r := range []req{
		settle("H3716020001", "u-6", "371600198501010201", "371600", "2024-04-01", items),
		settle("H3716020002", "u-7", "371600198501010101", "371600", "2026-11-13", `{"code":"XZ99","unit_price":"40","quantity":"1","amount":"40.00"}`),
	} {
		writes = append(writes, r)
		first = append(first, must(old, r))
	}
	if v := first[len(first)-2]["policy"].(map[string]any)["version"]; v != "v2024r" {
		t.Fatalf("old gateway settled 2024-04-01 under %v, want v2024r (uploaded after the world's v2024)", v)
	}
	month := time.Now().In(time.FixedZone("UTC+8", 8*3600)).AddDate(0, -1, 0).Format("2006-01")
	closed := must(old, req{"POST", "/v1/clearing/months/" + month + "/close", "demo-clearing", "", nil})
	list := must(old, req{"GET", "/v1/regions/371600/policies", "demo-region-371600", "", nil})
	if code := old.term(t, time.Minute); code != 0 {
		t.Fatalf("old gateway exited %d\n%s", code, tail(old.log.String(), 20))
	}

	// This gateway on the same ledger.
	p := start(t, db)
	p.ready(t, time.Minute)
	for i, w := range writes {
		again := must(p, w)
		if again["replayed"] != true {
			t.Errorf("retry of %s %s: not a replay: %v", w.method, w.path, again)
		}
		for _, k := range []string{"settlement_id", "amounts", "policy", "reverses", "balance", "version", "module_sha256", "written"} {
			if a, b := jsonOf(first[i][k]), jsonOf(again[k]); k != "policy" || first[i][k] != nil {
				if a != b {
					t.Errorf("retry of %s %s: %s %s, was %s", w.method, w.path, k, b, a)
				}
			}
		}
		if id, ok := first[i]["settlement_id"].(string); ok {
			got := must(p, req{"GET", "/v1/settlements/" + id, w.token, "", nil})
			for _, k := range []string{"amounts", "policy", "lines"} {
				if a, b := jsonOf(first[i][k]), jsonOf(got[k]); a != b {
					t.Errorf("GET %s: %s %s, was %s", id, k, b, a)
				}
			}
		}
	}
	if code, m := do(p, req{"POST", rev.path, rev.token, "", []byte(`{"request_id":"u-rev2","reason":"again"}`)}); code != 409 {
		t.Errorf("a second reversal after the upgrade: %d %v, want 409", code, m)
	}
	if a, b := jsonOf(list["versions"]), jsonOf(must(p, req{"GET", "/v1/regions/371600/policies", "demo-region-371600", "", nil})["versions"]); !strings.Contains(b, `"v2024r"`) {
		t.Errorf("versions after the upgrade %s, were %s", b, a)
	}
	if a, b := jsonOf(closed), jsonOf(must(p, req{"GET", "/v1/clearing/months/" + month, "demo-clearing", "", nil})); a != b {
		t.Errorf("closed month %s after the upgrade: %s, was %s", month, b, a)
	}
	for _, r := range []string{"152500", "370000", "371600"} {
		m := must(p, req{"POST", "/v1/regions/" + r + "/replay", "demo-region-" + r, "", nil})
		if m["identical"] != true {
			t.Errorf("region %s replay after the upgrade: %v", r, m)
		}
	}
	if m := must(p, settle("H3716020001", "u-new", "371600198501010201", "371600", "2024-05-01", items)); jsonOf(m["policy"].(map[string]any)["version"]) != `"v2024r"` {
		t.Errorf("new settlement of 2024-05-01 under %v, want v2024r as before the upgrade", m["policy"])
	}
	if code := p.term(t, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, args := range [][]string{{"audit", "--db", db}, {"verify", "ledger", "--db", db}} {
		if out, err := exec.Command(binary(t), args...).CombinedOutput(); err != nil {
			t.Errorf("medgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
