package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestR6InvalidSettingsAllReportedAtOnce: README ("Configuration"):
// "Invalid settings are all reported at once (exit 2), each with the
// value given". A value that did not parse as its setting's type (a
// flag's, or an environment variable's) was reported alone: the settings
// after it, and every value check, were skipped, so an operator fixed
// one and met the next; and a flag's was Go's "invalid value "abc" for
// flag -procs: parse error", without the form a value takes. A setting
// whose value did not parse is not checked again under the value it
// would have overridden (the file's max-inflight 0 below).
func TestR6InvalidSettingsAllReportedAtOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "medgate.yaml")
	if err := os.WriteFile(file, []byte("max-inflight: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		args  []string
		env   map[string]string
		want  []string
		never []string
	}{
		{"flags", []string{"--procs", "abc", "--shutdown-timeout", "5", "--max-inflight", "0", "--log-level", "x"}, nil,
			[]string{`flag --procs: "abc" is not valid (a value like "0")`, `flag --shutdown-timeout: "5" is not valid (a value like "30s")`,
				"--max-inflight: must be at least 1, not 0", `--log-level: "x" is not one of`}, nil},
		{"environment", []string{"--max-inflight", "0"}, map[string]string{"MEDGATE_PROCS": "abc"},
			[]string{`env MEDGATE_PROCS: "abc" is not valid`, "--max-inflight: must be at least 1, not 0"}, nil},
		{"a flag over the file", []string{"--config", file, "--max-inflight", "many", "--log-format", "xml"}, nil,
			[]string{`flag --max-inflight: "many" is not valid`, `--log-format: "xml" is not json or console`}, []string{"not 0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
			var out, errb bytes.Buffer
			code := serveContext(context.Background(), c.args, env, &out, &errb, nil)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			for _, w := range c.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			for _, w := range c.never {
				if strings.Contains(errb.String(), w) {
					t.Errorf("stderr has %q:\n%s", w, errb.String())
				}
			}
		})
	}
}
