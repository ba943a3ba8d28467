package gateway

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"medgate/ledger"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSettingsDefaults(t *testing.T) {
	s, err := LoadSettings(nil, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if s.Listen != "127.0.0.1:8080" || s.DB != "medgate-data" || s.PolicyTimeout != 200*time.Millisecond || s.AdminListen != "" ||
		s.LogLevel != "info" || s.PolicyMemoryPages != 1024 || s.Source["listen"] != "default" ||
		s.LedgerCacheMB<<20 != ledger.DefaultCacheSize || s.Config(zerolog.Nop()).LedgerCache != ledger.DefaultCacheSize {
		t.Fatalf("defaults: %+v", s)
	}
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "medgate.yaml")
	os.WriteFile(file, []byte("listen: 0.0.0.0:9000\nlog-level: debug\npolicy_timeout: 300ms\npolicy-memory-pages: 512\nnative-policies: true\nadmin-listen: 127.0.0.1:9100\n"), 0o644)
	env := envOf(map[string]string{"MEDGATE_CONFIG": file, "MEDGATE_LOG_LEVEL": "warn", "MEDGATE_LISTEN": "127.0.0.1:9001", "MEDGATE_DB": "", "MEDGATE_LEDGER_CACHE_MB": "64"})
	s, err := LoadSettings([]string{"--listen", "127.0.0.1:9002", "-max-inflight=10"}, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want, source string }{
		{"listen", s.Listen, "127.0.0.1:9002", "flag"},                // flag > env > file
		{"log-level", s.LogLevel, "warn", "env"},                      // env > file
		{"policy-timeout", s.PolicyTimeout.String(), "300ms", "file"}, // file > default; '_' for '-'
		{"db", s.DB, "medgate-data", "default"},                       // an empty variable is unset
		{"admin-listen", s.AdminListen, "127.0.0.1:9100", "file"},
	} {
		if c.got != c.want || s.Source[c.name] != c.source {
			t.Errorf("%s = %q from %s, want %q from %s", c.name, c.got, s.Source[c.name], c.want, c.source)
		}
	}
	if s.PolicyMemoryPages != 512 || !s.NativePolicies || s.MaxInflight != 10 || s.ConfigFile != file {
		t.Errorf("settings: %+v", s)
	}
	cfg := s.Config(s.Logger(io.Discard))
	if cfg.Listen != "127.0.0.1:9002" || cfg.AdminListen != "127.0.0.1:9100" || cfg.Engine.CallTimeout != 300*time.Millisecond ||
		cfg.Engine.MemoryLimitPages != 512 || cfg.MaxInflight != 10 || cfg.World != nil || cfg.LedgerCache != 64<<20 {
		t.Errorf("config: %+v", cfg)
	}

	// --print-config writes a file that reads back to the same settings.
	var out bytes.Buffer
	s.WriteConfig(&out)
	if !strings.Contains(out.String(), `listen: "127.0.0.1:9002"  # flag`) {
		t.Errorf("print-config:\n%s", out.String())
	}
	again := filepath.Join(dir, "again.yaml")
	os.WriteFile(again, out.Bytes(), 0o644)
	s2, err := LoadSettings([]string{"--config", again}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	s2.Source, s.Source, s2.ConfigFile, s.ConfigFile = nil, nil, "", ""
	if !reflect.DeepEqual(s2, s) {
		t.Errorf("print-config does not read back:\n%+v\n%+v", s2, s)
	}
}

func TestSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	os.WriteFile(file, []byte("lisen: x\nconfig: other.yaml\nlog-level: [a]\n"), 0o644)
	_, err := LoadSettings([]string{"--config", file}, envOf(map[string]string{"MEDGATE_POLICY_TIMEOUT": "fast"}))
	for _, want := range []string{`unknown setting "lisen"`, `"config" cannot be set in the file`, "log-level must be a single value", "env MEDGATE_POLICY_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// A second YAML document would be ignored, two spellings of one
	// setting would let one win silently, and a bad value names itself.
	for body, want := range map[string]string{
		"listen: 127.0.0.1:18081\n---\nbogus: 1\n": "more than one YAML document",
		"max_inflight: 10\nmax-inflight: 20\n":     `"max-inflight" and "max_inflight" are the same setting`,
		"shutdown-timeout: 30\n":                   `"30" is not valid (a value like`,
	} {
		os.WriteFile(file, []byte(body), 0o644)
		if _, err := LoadSettings([]string{"--config", file}, envOf(nil)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one saying %s", body, err, want)
		}
	}
	if _, err := LoadSettings([]string{"--help"}, envOf(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if _, err := LoadSettings([]string{"extra"}, envOf(nil)); err == nil {
		t.Error("a stray argument is accepted")
	}

	// Validate names every problem at once.
	s := DefaultSettings()
	s.Listen, s.AdminListen, s.MaxInflight, s.LogLevel, s.LogFormat = "nohost", "nohost", 0, "loud", "xml"
	s.PolicyMemoryPages, s.AccessLogEvery, s.World, s.CheckpointKey = 70000, 0, filepath.Join(dir, "none"), filepath.Join(dir, "none.key")
	s.LedgerCacheMB, s.WALSync = 0, "fast"
	err = s.Validate()
	for _, name := range []string{"listen", "admin-listen", "max-inflight", "log-level", "log-format", "policy-memory-pages", "access-log-every", "world", "checkpoint-key", "ledger-cache-mb", "wal-sync"} {
		if err == nil || !strings.Contains(err.Error(), "--"+name+":") {
			t.Errorf("Validate does not name --%s: %v", name, err)
		}
	}
}

// --help lists every setting once, in a group, with its default and
// environment variable.
func TestSettingsUsage(t *testing.T) {
	var b bytes.Buffer
	WriteUsage(&b)
	usage := b.String()
	seen := map[string]bool{}
	for _, g := range settingGroups {
		for _, n := range g.names {
			if seen[n] {
				t.Errorf("%s is in two groups", n)
			}
			seen[n] = true
		}
	}
	(&Settings{}).flags("x").VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			t.Errorf("--%s is in no group of --help", f.Name)
		}
		if strings.Count(usage, "  --"+f.Name+" ")+strings.Count(usage, "  --"+f.Name+"\n") != 1 {
			t.Errorf("--%s is not listed once:\n%s", f.Name, usage)
		}
		if !commandLineOnly(f.Name) && !strings.Contains(usage, "env "+EnvName(f.Name)+")") {
			t.Errorf("--%s: no environment variable in --help", f.Name)
		}
	})
	if !strings.Contains(usage, "--listen address\n") || !strings.Contains(usage, "(default 127.0.0.1:8080; env MEDGATE_LISTEN)") {
		t.Errorf("usage:\n%s", usage)
	}
}

func TestAdminHandler(t *testing.T) {
	m := NewMetrics()
	srv := httptest.NewServer(adminHandler(m))
	defer srv.Close()
	for path, want := range map[string]string{"/metrics": "go_goroutines", "/debug/pprof/": "goroutine", "/debug/pprof/cmdline": ""} {
		if code, body := httpGet(t, srv.URL+path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %.200s", path, code, body)
		}
	}
	// Not bound to a server with a ledger: /debug/ledger has nothing to say.
	if code, body := httpGet(t, srv.URL+"/debug/ledger"); code != http.StatusNotFound {
		t.Errorf("/debug/ledger unbound: %d %.200s, want 404", code, body)
	}
}

// TestAdminLedgerReport: bound to a server with a ledger, /debug/ledger is
// Pebble's per-level report of that ledger's store.
func TestAdminLedgerReport(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	srv := httptest.NewServer(adminHandler(h.srv.metrics))
	defer srv.Close()
	code, body := httpGet(t, srv.URL+"/debug/ledger")
	if code != 200 || !strings.Contains(body, "level") || !strings.Contains(body, "WAL") {
		t.Errorf("/debug/ledger: %d %.300s, want Pebble's metrics table", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProcsSetting(t *testing.T) {
	s, err := LoadSettings([]string{"--procs", "3"}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if s.Procs != 3 || s.Source["procs"] != "flag" {
		t.Errorf("--procs 3: Procs = %d from %q", s.Procs, s.Source["procs"])
	}
	if d := DefaultSettings(); d.Procs != 0 {
		t.Errorf("default Procs = %d, want 0 (Go's own)", d.Procs)
	}
	s.Procs = -1
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--procs") {
		t.Errorf("Validate with --procs -1 = %v, want an error naming --procs", err)
	}
}

// TestWALSyncSetting: --wal-sync=auto makes the ledger's WAL syncs direct
// only with two or more Go processors; direct and scheduler are what they
// say whatever the processors.
func TestWALSyncSetting(t *testing.T) {
	if d := DefaultSettings(); d.WALSync != "auto" {
		t.Fatalf("default --wal-sync = %q, want auto", d.WALSync)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		value string
		procs int
		want  bool
	}{
		{"auto", 1, false}, {"auto", 2, true}, {"auto", 4, true},
		{"direct", 1, true}, {"scheduler", 2, false},
	} {
		s, err := LoadSettings([]string{"--wal-sync", c.value}, envOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		runtime.GOMAXPROCS(c.procs)
		if got := s.Config(zerolog.Nop()).DirectWALSync; got != c.want {
			t.Errorf("--wal-sync %s with %d processors: DirectWALSync = %v, want %v", c.value, c.procs, got, c.want)
		}
	}
}

// TestValidateNamesTheSource: a setting refused by Validate says where its
// value came from, so that an operator who never typed --world finds the
// MEDGATE_WORLD or the config file line that set it.
func TestValidateNamesTheSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "medgate.yaml")
	os.WriteFile(file, []byte("max-inflight: 0\n"), 0o644)
	s, err := LoadSettings([]string{"--log-level", "loud"}, envOf(map[string]string{"MEDGATE_CONFIG": file, "MEDGATE_WORLD": filepath.Join(dir, "none")}))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Validate()
	for _, want := range []string{"--world:", "env MEDGATE_WORLD", "--max-inflight:", "file " + file, "--log-level:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not say %q: %v", want, err)
		}
	}
}

// TestModulesDirChecked: a --modules directory that is not there would
// start a gateway whose world policies all fail to load ("module file not
// found", every settlement 422 no_policy); one given explicitly is checked
// like --world. The default (build/policies) may be missing: the embedded
// demo then says how to build it.
func TestModulesDirChecked(t *testing.T) {
	s, err := LoadSettings([]string{"--modules", filepath.Join(t.TempDir(), "none")}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--modules:") {
		t.Errorf("Validate with a missing --modules = %v", err)
	}
	d, err := LoadSettings([]string{"--db", t.TempDir()}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	// The default's value, wherever it was set: --print-config writes it
	// into the file (TestR6PrintedConfigStarts).
	d.Modules = defaultModules
	d.Source["modules"] = "file"
	if _, err := os.Stat(defaultModules); err == nil {
		t.Skip("build/policies exists here")
	}
	if err := d.Validate(); err != nil {
		t.Errorf("a missing default modules directory: %v", err)
	}
}
