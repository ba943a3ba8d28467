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
	"medgate/engine/abi"
	"medgate/gateway/internal/testenv"
)

// TestR6WorldVersionNotLoadedDoesNotHandItsDatesBack: a world whose later
// version cannot be loaded — its module file not found on a first start
// (--modules without it), or refused by the check (a damaged file) — left
// the earlier version in force over the later one's dates, so 2024's
// bills were settled under 2023's ratios and caps with /healthz "ok" and
// the list calling 2023 in force. Like a stored upload that no longer
// loads (LoadStored), the version stays in force as unavailable: its
// dates are refused (503 policy_unavailable) until the world is fixed,
// and the dates before it keep the earlier version.
func TestR6WorldVersionNotLoadedDoesNotHandItsDatesBack(t *testing.T) {
	eng, _ := testenv.Engine(t)
	for _, c := range []struct {
		name string
		wasm []byte
	}{
		{"module not found", nil},
		{"module refused", []byte("\x00asm damaged")},
	} {
		t.Run(c.name, func(t *testing.T) {
			store, err := engine.OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			w := &World{Policies: []PolicyFile{
				{Region: "371600", Version: "v2023", EffectiveFrom: 20230101, Wasm: referenceWasm(t, "371600", "v2023")},
				{Region: "371600", Version: "v2024", EffectiveFrom: 20240101, Wasm: c.wasm},
			}}
			policies := &engine.Policies{}
			NewVersions(eng, store, policies, zerolog.Nop()).LoadWorld(context.Background(), w)
			if ver, ok := policies.Lookup("371600", 20230601); !ok || ver.Name != "v2023" {
				t.Fatalf("2023-06-01: %v %q, want v2023", ok, ver.Name)
			}
			ver, ok := policies.Lookup("371600", 20251109)
			if !ok {
				t.Fatal("2025-11-09: no version at all, want v2024 unavailable")
			}
			var in abi.Input
			var out abi.Output
			var ce *engine.CallError
			if err := ver.Module.Call(context.Background(), &in, nil, &out); ver.Name != "v2024" || !errors.As(err, &ce) || ce.Kind != engine.FailUnavailable {
				t.Errorf("2025-11-09 is settled under %s (%v), want v2024 unavailable", ver.Name, err)
			}
		})
	}
}

// TestR6FailedStartWritesNothing: a start that cannot serve — its API or
// admin address already taken (a second gateway, a mistyped port), or a
// world file that does not read — exits with the error, and writes
// nothing first. It used to create the --db directory, a Pebble store
// and the compiled-module cache, and (for a taken address) apply the
// world: hospitals, catalogs, persons and their opening balances as
// ledger entries, in a directory the operator may have mistyped.
func TestR6FailedStartWritesNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	world := fstest.MapFS{
		"hospitals.json":        {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}]`)},
		"principals.json":       {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "hospital", "id": "H1"}]`)},
		"persons/371600.ndjson": {Data: []byte(`{"id": "P1", "scheme": "employee", "employment": "active", "account_balance": "100.00"}` + "\n")},
	}
	badWorld := fstest.MapFS{
		"principals.json": world["principals.json"],
		"hospitals.json":  {Data: []byte(`[{"id": "H1", "region": "371602", "level": "3"}]`)},
	}
	for _, c := range []struct {
		name  string
		cfg   Config
		error string
	}{
		{"API address taken", Config{Listen: taken.Addr().String(), World: world}, "address already in use"},
		{"admin address taken", Config{Listen: "127.0.0.1:0", AdminListen: taken.Addr().String(), World: world}, "address already in use"},
		{"bad world file", Config{Listen: "127.0.0.1:0", World: badWorld}, "hospitals.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c.cfg.DBDir = filepath.Join(t.TempDir(), "ledger")
			c.cfg.Logger = zerolog.Nop()
			c.cfg.Ready = func(net.Addr) { cancel() }
			err := Run(ctx, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Fatalf("Run: %v, want an error saying %q", err, c.error)
			}
			if _, err := os.Stat(c.cfg.DBDir); !errors.Is(err, os.ErrNotExist) {
				entries, _ := os.ReadDir(c.cfg.DBDir)
				t.Errorf("the failed start left %s behind (%v; %d files)", c.cfg.DBDir, err, len(entries))
			}
		})
	}
}

// TestR6PrintedConfigStarts: `medgate serve --print-config > medgate.yaml`
// then `medgate serve --config medgate.yaml` (README, "Configuration")
// was refused unless run from the repository's root: the file sets
// every setting, --modules to its default build/policies among them, and
// a --modules set in the file had to exist, whereas the default itself
// may be missing (the demo says how to build it). The default value is
// now held to the default's rule wherever it was set; a directory given
// on purpose must still be there.
func TestR6PrintedConfigStarts(t *testing.T) {
	if _, err := os.Stat("build/policies"); err == nil {
		t.Skip("build/policies exists here")
	}
	s, err := LoadSettings(nil, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	s.WriteConfig(&out)
	file := filepath.Join(t.TempDir(), "medgate.yaml")
	if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := LoadSettings([]string{"--config", file}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Validate(); err != nil {
		t.Errorf("the printed config is refused:\n%v\n%s", err, out.String())
	}
	typo, err := LoadSettings([]string{"--modules", "build/policys"}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := typo.Validate(); err == nil || !strings.Contains(err.Error(), "--modules: build/policys is not a directory") {
		t.Errorf("a mistyped --modules: %v", err)
	}
}

// TestR6EveryInvalidSettingNamesItsValue: README ("Configuration"):
// invalid settings are reported "each with the value given". A negative
// --max-conns-per-ip or --access-log-burst was not (round 4 fixed
// --procs and --policy-instances only); an operator whose value came
// from a variable or a file could not tell which value was read.
func TestR6EveryInvalidSettingNamesItsValue(t *testing.T) {
	s := DefaultSettings()
	s.MaxConnsPerIP, s.AccessLogBurst = -7, -9
	err := s.Validate()
	for _, want := range []string{"--max-conns-per-ip: must not be negative (0: no bound), not -7", "--access-log-burst: must not be negative, not -9"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not say %q: %v", want, err)
		}
	}
}

// TestR6LogLevelIsOneOfTheFour: --log-level is "debug, info, warn, error"
// (its help, README "Logs", and its own error message), but anything
// zerolog parses was taken: "fatal", "panic", "disabled" or a number such
// as 7 silenced every error line — a failed ledger write, a policy module
// refused at start, each 5xx of the access log — without a word.
func TestR6LogLevelIsOneOfTheFour(t *testing.T) {
	for _, l := range []string{"debug", "info", "warn", "error", "INFO"} {
		s := DefaultSettings()
		s.LogLevel = l
		if err := s.Validate(); err != nil {
			t.Errorf("--log-level %s: %v", l, err)
		}
	}
	for _, l := range []string{"fatal", "panic", "disabled", "7", "-5", "trace", ""} {
		s := DefaultSettings()
		s.LogLevel = l
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--log-level: ") {
			t.Errorf("--log-level %q accepted (%v)", l, err)
		}
	}
}
