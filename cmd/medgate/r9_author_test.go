package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	r9Module = "../../build/policies/152500/v1.wasm"
	r9Cases  = "../../testdata/cases/152500-v1.json"
)

// TestR9PolicyTestDuplicateCaseNames: two cases of one name, the second
// failing, made `medgate policy test` print FAIL for both (with the
// second's difference) and the report name a case that is two: the
// region's author looked for the fault in the case that passed. Each
// case is now reported under a name no other case has.
func TestR9PolicyTestDuplicateCaseNames(t *testing.T) {
	b, err := os.ReadFile(r9Cases)
	if err != nil {
		t.Fatal(err)
	}
	var cs []map[string]any
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	var wrong map[string]any
	json.Unmarshal(b, &[]any{&wrong})
	wrong["expect"].(map[string]any)["basic_fund"] = "1.00"
	cs = append(cs[:1], wrong)
	name := cs[0]["name"].(string)
	b, _ = json.Marshal(cs)
	file := filepath.Join(t.TempDir(), "cases.json")
	os.WriteFile(file, b, 0o644)

	r := policyRun("test", "--module", r9Module, "--cases", file)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitFailure || len(lines) != 2 || lines[0] != "ok   "+name ||
		!strings.HasPrefix(lines[1], "FAIL "+name+" (case 1): basic_fund: got") {
		t.Fatalf("exit %d, stdout:\n%s\nwant the first case ok, the second FAIL under its own name", r.code, r.stdout)
	}
	r = policyRun("check", "--module", r9Module, "--cases", file)
	if !strings.Contains(r.stdout, `"case": "`+name+` (case 1)"`) {
		t.Fatalf("check report does not name the failed case apart:\n%s", r.stdout)
	}
}

// TestR9CasesFileWithTrailingData: a cases file with anything after its
// array passed `policy test` and `policy check` (the decoder read the
// array and stopped), then `policy sign` failed with "invalid character
// 'x' after top-level value", naming neither the file nor the flag.
// Each command now refuses it naming --cases and what follows.
func TestR9CasesFileWithTrailingData(t *testing.T) {
	b, err := os.ReadFile(r9Cases)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "cases.json")
	os.WriteFile(file, append(b, " xyz\n"...), 0o644)
	for _, args := range [][]string{
		{"test", "--module", r9Module, "--cases", file},
		{"check", "--module", r9Module, "--cases", file},
		{"sign", "--region", "152500", "--version", "v9", "--effective", "2027-01-01", "--demo-key", "--module", r9Module, "--cases", file, "-o", "-"},
	} {
		r := policyRun(args...)
		if r.code == exitOK || !strings.Contains(r.stderr, "--cases") || !strings.Contains(r.stderr, "after the array") {
			t.Errorf("policy %s: exit %d, stderr %q: want a failure naming --cases and the data after the array", args[0], r.code, r.stderr)
		}
	}
}

// TestR9PolicySignRefusesWhatTheGatewayRefuses: `policy sign` signed a
// version name or an effective date the gateway refuses (`v 9`,
// `2026-13-01`), exit 0; the author learnt it only from the upload's 400.
func TestR9PolicySignRefusesWhatTheGatewayRefuses(t *testing.T) {
	for _, tc := range []struct{ version, effective, flag string }{
		{"v 9", "2027-01-01", "--version"},
		{"v9", "2026-13-01", "--effective"},
		{"v9", "2027-1-1", "--effective"},
	} {
		r := policyRun("sign", "--region", "152500", "--version", tc.version, "--effective", tc.effective, "--demo-key",
			"--module", r9Module, "--cases", r9Cases, "-o", "-")
		if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, tc.flag) {
			t.Errorf("sign --version %q --effective %q: exit %d, stderr %q, stdout %.40q: want 2 naming %s and nothing signed",
				tc.version, tc.effective, r.code, r.stderr, r.stdout, tc.flag)
		}
	}
}
