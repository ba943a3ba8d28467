package gateway

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"medgate/ledger"
)

// Settings is what an operator sets for `medgate serve`. Every setting has
// one name, used three ways:
//
//	flag          --policy-memory-pages 512
//	environment   MEDGATE_POLICY_MEMORY_PAGES=512
//	config file   policy-memory-pages: 512     (YAML or JSON; --config FILE or MEDGATE_CONFIG)
//
// Precedence: flags > environment > file > defaults. The defaults run a
// demo on one machine.
type Settings struct {
	ConfigFile  string // --config: the file itself (flag or environment only)
	PrintConfig bool   // --print-config: print the resolved settings and exit (flag only)

	Listen      string
	AdminListen string
	MaxInflight int
	// MaxConns and MaxConnsPerIP bound the connections open at once, in
	// all and from one IP address (see ServerConfig). MaxConns is also
	// kept below the file descriptors the process may open, less those
	// the ledger needs (fitConns).
	MaxConns      int
	MaxConnsPerIP int
	// Procs, if set, is the GOMAXPROCS the server sets; 0 leaves it to
	// the Go runtime (GOMAXPROCS from the environment, or the CPUs it
	// may use). Why a setting and not a fixed rule: with more Ps than
	// CPUs a woken goroutine gets a P at once and the kernel shares the
	// CPUs with its shorter time slices, instead of the goroutine waiting
	// up to 10 ms for Go to take a P from a long-running one (a
	// compaction, a flush). On this project's 2-CPU machine, 4 Ps cut the
	// open-loop p99 at 3,000 settlements a second from 14–46 ms to
	// 12–20 ms in six alternating standalone pairs, but in three `make
	// bench` runs the p99 at half max did not move, so the default stays
	// Go's (bench/RESULTS.md).
	Procs           int
	ShutdownTimeout time.Duration

	DB            string
	LedgerCacheMB int64
	LedgerMinFree int64 // MiB
	// WALSync is how the ledger syncs its write-ahead log: "direct",
	// "scheduler", or "auto" (direct with two or more Go processors);
	// see ledger.Options.DirectWALSync.
	WALSync       string
	World         string
	Modules       string
	CheckpointKey string

	PolicyFuel        int64
	PolicyDeadline    bool
	PolicyTimeout     time.Duration
	PolicyMemoryPages uint
	PolicyInstances   int
	NativePolicies    bool

	LogLevel       string
	LogFormat      string
	AccessLogBurst int
	AccessLogEvery int

	// Source says where each setting's value came from: "default",
	// "file", "env" or "flag".
	Source map[string]string
	// invalid names the settings whose last value given did not parse:
	// LoadSettings reported it, and Validate does not check the value it
	// would have overridden.
	invalid map[string]bool
}

// rawFlag takes any value of a setting on the command line, so that one
// that does not parse stops neither the parse nor the report: every value
// is set (and checked) with the environment's and the file's.
type rawFlag struct {
	value  string
	isBool bool
}

func (r *rawFlag) String() string     { return r.value }
func (r *rawFlag) Set(v string) error { r.value = v; return nil }
func (r *rawFlag) IsBoolFlag() bool   { return r.isBool }

// settingGroups orders the settings for --help; every flag is in one.
var settingGroups = []struct {
	title string
	names []string
}{
	{"Settings", []string{"config", "print-config"}},
	{"Listening", []string{"listen", "admin-listen", "max-inflight", "max-conns", "max-conns-per-ip", "procs", "shutdown-timeout"}},
	{"Data", []string{"db", "ledger-cache-mb", "ledger-min-free-mb", "wal-sync", "world", "modules", "checkpoint-key"}},
	{"Policies (the regions' WebAssembly modules)", []string{"policy-fuel", "policy-deadline", "policy-timeout", "policy-memory-pages", "policy-instances", "native-policies"}},
	{"Logs", []string{"log-level", "log-format", "access-log-burst", "access-log-every"}},
}

// commandLineOnly settings are not read from the file (nor, for
// print-config, from the environment).
func commandLineOnly(name string) bool { return name == "config" || name == "print-config" }

// EnvPrefix prefixes a setting's environment variable.
const EnvPrefix = "MEDGATE_"

// EnvName is the environment variable of setting name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flags defines every setting as a flag bound to s, with its default.
func (s *Settings) flags(name string) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.StringVar(&s.ConfigFile, "config", "", "read settings from this `file` (YAML or JSON, keys named as the flags)")
	fl.BoolVar(&s.PrintConfig, "print-config", false, "print the resolved settings as a config file, each with where its value came from, and exit")

	fl.StringVar(&s.Listen, "listen", "127.0.0.1:8080", "`address` of the API (hospitals, regions, clearing; also /healthz, /metrics, /openapi.yaml)")
	fl.StringVar(&s.AdminListen, "admin-listen", "", "`address` of the admin listener: /debug/pprof/, /debug/ledger and /metrics, without authentication (empty: off)")
	fl.IntVar(&s.MaxInflight, "max-inflight", 4096, "requests worked on at once; beyond, 503 with Retry-After")
	fl.IntVar(&s.MaxConns, "max-conns", DefaultMaxConns, "connections open at once, idle keep-alive ones included (about 30 KiB each idle); beyond, 503 too_many_connections and closed. Lowered at start to fit the file descriptor limit (ulimit -n) less 1,536 for the ledger")
	fl.IntVar(&s.MaxConnsPerIP, "max-conns-per-ip", 512, "connections open at once from one IP address; beyond, 429 too_many_connections and closed (0: no bound; set 0 behind a proxy or load balancer whose address every connection shares)")
	fl.IntVar(&s.Procs, "procs", 0, "Go schedulers (GOMAXPROCS) for the server (0: Go's default, the CPUs it may use, or GOMAXPROCS from the environment)")
	fl.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests may take to finish")

	fl.StringVar(&s.DB, "db", "medgate-data", "the ledger's Pebble `directory` (also holds the policy store and the compiled-module cache)")
	fl.Int64Var(&s.LedgerMinFree, "ledger-min-free-mb", 1024, "`MiB` of free disk below which the ledger refuses writes (503 ledger_disk_full) until space is freed, rather than stall when the disk fills; 0: never")
	fl.Int64Var(&s.LedgerCacheMB, "ledger-cache-mb", ledger.DefaultCacheSize>>20, "`MiB` of the ledger's block cache (Pebble's), taken as blocks are read; big ledgers want their tables' bloom filters to fit")
	fl.StringVar(&s.WALSync, "wal-sync", "auto", "how the ledger syncs its write-ahead log: direct (a system call that keeps its Go processor: less CPU a settlement at moderate load, but a disk whose sync hangs stops the whole process), scheduler (Go's ordinary system call), auto (direct with two or more processors, on Linux)")
	fl.StringVar(&s.World, "world", "", "world `directory` to load at start (empty: the embedded reference world)")
	fl.StringVar(&s.Modules, "modules", defaultModules, "`directory` of <region>/<version>.wasm for policies whose module is not in the world")
	fl.StringVar(&s.CheckpointKey, "checkpoint-key", "", "`file` holding the ed25519 seed (64 hex digits) that signs ledger checkpoints (empty: a public demo key, never for production)")

	fl.Int64Var(&s.PolicyFuel, "policy-fuel", 100_000_000, "step budget of one policy call (instructions, counted statically per loop iteration and function entry)")
	fl.BoolVar(&s.PolicyDeadline, "policy-deadline", false, "bound policy calls by wall-clock deadlines instead of step budgets")
	fl.DurationVar(&s.PolicyTimeout, "policy-timeout", 200*time.Millisecond, "time limit of one policy call with --policy-deadline")
	fl.UintVar(&s.PolicyMemoryPages, "policy-memory-pages", 1024, "memory limit of one policy instance, in 64 KiB `pages`")
	fl.IntVar(&s.PolicyInstances, "policy-instances", 0, "instances per policy version at most (0: 2 × GOMAXPROCS)")
	fl.BoolVar(&s.NativePolicies, "native-policies", false, "benchmark mode: run the reference policies compiled into the binary, outside the sandbox")

	fl.StringVar(&s.LogLevel, "log-level", "info", "`level` of the logs: debug, info, warn, error")
	fl.StringVar(&s.LogFormat, "log-format", "json", "`format` of the logs: json (one object a line), or console (for a terminal)")
	fl.IntVar(&s.AccessLogBurst, "access-log-burst", 100, "successful requests logged in full each second before sampling (failures are always logged)")
	fl.IntVar(&s.AccessLogEvery, "access-log-every", 100, "beyond the burst, log one successful request in `N` (1: all)")
	return fl
}

// defaultModules is --modules' default, where `make policies` builds.
const defaultModules = "build/policies"

// DefaultSettings are the settings when nothing is set.
func DefaultSettings() *Settings {
	s := &Settings{}
	fl := s.flags("defaults")
	s.Source = map[string]string{}
	fl.VisitAll(func(f *flag.Flag) { s.Source[f.Name] = "default" })
	return s
}

// LoadSettings resolves the settings from the command line args, the
// environment (lookupEnv, as os.LookupEnv) and the config file named by
// --config or MEDGATE_CONFIG, in that order of precedence over the
// defaults. It returns flag.ErrHelp for -h or --help. It does not call
// Validate.
func LoadSettings(args []string, lookupEnv func(string) (string, bool)) (*Settings, error) {
	// The command line first, to find --config and what it sets.
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	(&Settings{}).flags("serve").VisitAll(func(f *flag.Flag) {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		fl.Var(&rawFlag{value: f.DefValue, isBool: ok && b.IsBoolFlag()}, f.Name, f.Usage)
	})
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if fl.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (settings are flags: --name value)", fl.Arg(0))
	}
	onCommandLine := map[string]string{}
	fl.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = f.Value.String() })

	s := DefaultSettings()
	out := s.flags("serve")
	var errs []error
	set := func(name, value, source string) {
		if err := out.Set(name, value); err != nil {
			// flag's own errors ("parse error") name neither the value nor
			// its form: say both (the default shows the form, e.g. 30s).
			hint := ""
			if f := out.Lookup(name); f != nil && f.DefValue != "" {
				hint = fmt.Sprintf(" (a value like %q)", f.DefValue)
			}
			errs = append(errs, fmt.Errorf("%s: %q is not valid%s: %v", source, value, hint, err))
			if s.invalid == nil {
				s.invalid = map[string]bool{}
			}
			s.invalid[name] = true
			return
		}
		delete(s.invalid, name)
		s.Source[name] = strings.Fields(source)[0]
	}

	file := onCommandLine["config"]
	if file == "" {
		file, _ = lookupEnv(EnvName("config"))
	}
	if file != "" {
		values, err := readSettingsFile(file)
		if err != nil {
			errs = append(errs, err)
		}
		names := make([]string, 0, len(values))
		for k := range values {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			name := strings.ReplaceAll(k, "_", "-")
			switch {
			case commandLineOnly(name):
				errs = append(errs, fmt.Errorf("file %s: %q cannot be set in the file itself", file, k))
			case out.Lookup(name) == nil:
				errs = append(errs, fmt.Errorf("file %s: unknown setting %q", file, k))
			default:
				set(name, values[k], "file "+file+": "+k)
			}
		}
		s.ConfigFile = file
	}
	out.VisitAll(func(f *flag.Flag) {
		if f.Name == "print-config" {
			return
		}
		if v, ok := lookupEnv(EnvName(f.Name)); ok && v != "" {
			set(f.Name, v, "env "+EnvName(f.Name))
		}
	})
	// By name (Visit's order), so that the errors come in one order.
	fl.Visit(func(f *flag.Flag) { set(f.Name, onCommandLine[f.Name], "flag --"+f.Name) })
	return s, errors.Join(errs...)
}

// readSettingsFile reads a YAML (or JSON) mapping of setting names to
// scalar values, each returned as the string a flag would take.
func readSettingsFile(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil && err != io.EOF {
		return nil, fmt.Errorf("config file %s: %v", file, err)
	}
	// A second document ("---") would be ignored by a plain decode, and
	// with it every setting below it: refuse it instead.
	var more any
	if err := dec.Decode(&more); err != io.EOF {
		return nil, fmt.Errorf("config file %s: more than one YAML document (a \"---\" line): put every setting in one", file)
	}
	out := map[string]string{}
	var errs []error
	// max_inflight and max-inflight are one setting: given both, the file
	// says two things (as a key given twice, which YAML refuses).
	spelled := map[string]string{}
	for k := range raw {
		canon := strings.ReplaceAll(k, "_", "-")
		if other, dup := spelled[canon]; dup {
			a, b := other, k
			if a > b {
				a, b = b, a
			}
			errs = append(errs, fmt.Errorf("config file %s: %q and %q are the same setting", file, a, b))
		}
		spelled[canon] = k
	}
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case bool:
			out[k] = strconv.FormatBool(v)
		case int:
			out[k] = strconv.Itoa(v)
		case int64:
			out[k] = strconv.FormatInt(v, 10)
		case uint64:
			out[k] = strconv.FormatUint(v, 10)
		case float64:
			out[k] = strconv.FormatFloat(v, 'f', -1, 64)
		case nil:
			out[k] = ""
		default:
			errs = append(errs, fmt.Errorf("config file %s: %s must be a single value, not %T", file, k, v))
		}
	}
	return out, errors.Join(errs...)
}

// Validate reports every invalid setting at once.
func (s *Settings) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		if s.invalid[name] {
			return // its value did not parse: reported by LoadSettings
		}
		// Say where the value came from: an operator who never typed
		// --world looks for the variable or the file that set it.
		from := ""
		switch s.Source[name] {
		case "env":
			from = " (set by env " + EnvName(name) + ")"
		case "file":
			from = " (set by file " + s.ConfigFile + ")"
		}
		errs = append(errs, fmt.Errorf("--%s: %s%s", name, fmt.Sprintf(format, args...), from))
	}
	checkAddr := func(name, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(name, "%q is not host:port (%v)", addr, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(name, "%q has no valid port", addr)
		}
	}
	checkAddr("listen", s.Listen)
	if s.AdminListen != "" {
		checkAddr("admin-listen", s.AdminListen)
		if s.AdminListen == s.Listen {
			bad("admin-listen", "must differ from --listen (%s)", s.Listen)
		}
	}
	if s.Procs < 0 {
		bad("procs", "must not be negative, not %d", s.Procs)
	}
	if s.MaxInflight < 1 {
		bad("max-inflight", "must be at least 1, not %d", s.MaxInflight)
	}
	if s.MaxConns < 1 {
		bad("max-conns", "must be at least 1, not %d", s.MaxConns)
	}
	if s.MaxConnsPerIP < 0 {
		bad("max-conns-per-ip", "must not be negative (0: no bound), not %d", s.MaxConnsPerIP)
	}
	if s.ShutdownTimeout <= 0 {
		bad("shutdown-timeout", "must be positive, not %s", s.ShutdownTimeout)
	}
	if s.DB == "" {
		bad("db", "must name a directory")
	} else if fi, err := os.Stat(s.DB); err == nil && !fi.IsDir() {
		bad("db", "%s is not a directory", s.DB)
	}
	if s.LedgerMinFree < 0 || s.LedgerMinFree > 1<<30 {
		bad("ledger-min-free-mb", "must be 0 to 1073741824, not %d", s.LedgerMinFree)
	}
	if s.LedgerCacheMB < 1 || s.LedgerCacheMB > 1<<20 {
		bad("ledger-cache-mb", "must be 1 to 1048576 (1 TiB), not %d", s.LedgerCacheMB)
	}
	switch s.WALSync {
	case "auto", "direct", "scheduler":
	default:
		bad("wal-sync", "must be auto, direct or scheduler, not %q", s.WALSync)
	}
	if s.World != "" {
		if fi, err := os.Stat(s.World); err != nil || !fi.IsDir() {
			bad("world", "%s is not a directory", s.World)
		}
	}
	if s.Modules == "" {
		bad("modules", "must name a directory")
	} else if s.Modules != defaultModules {
		// The default may be missing (the demo says how to build it),
		// also when a file says it (--print-config writes every
		// setting); a directory given on purpose must be there.
		if fi, err := os.Stat(s.Modules); err != nil || !fi.IsDir() {
			bad("modules", "%s is not a directory", s.Modules)
		}
	}
	if s.CheckpointKey != "" {
		if _, err := os.Stat(s.CheckpointKey); err != nil {
			bad("checkpoint-key", "%s: %v", s.CheckpointKey, errors.Unwrap(err))
		}
	}
	if s.PolicyFuel < 1 {
		bad("policy-fuel", "must be positive, not %d", s.PolicyFuel)
	}
	if s.PolicyTimeout <= 0 {
		bad("policy-timeout", "must be positive, not %s", s.PolicyTimeout)
	}
	if s.PolicyMemoryPages < 1 || s.PolicyMemoryPages > 65536 {
		bad("policy-memory-pages", "must be 1 to 65536 (4 GiB), not %d", s.PolicyMemoryPages)
	}
	if s.PolicyInstances < 0 {
		bad("policy-instances", "must not be negative, not %d", s.PolicyInstances)
	}
	// The four levels only: zerolog also parses "fatal", "panic",
	// "disabled" and numbers, each of which would silence every error.
	if lvl, err := zerolog.ParseLevel(s.LogLevel); err != nil || lvl < zerolog.DebugLevel || lvl > zerolog.ErrorLevel || s.LogLevel == "" {
		bad("log-level", "%q is not one of debug, info, warn, error", s.LogLevel)
	}
	if s.LogFormat != "json" && s.LogFormat != "console" {
		bad("log-format", "%q is not json or console", s.LogFormat)
	}
	if s.AccessLogBurst < 0 {
		bad("access-log-burst", "must not be negative, not %d", s.AccessLogBurst)
	}
	if s.AccessLogEvery < 1 {
		bad("access-log-every", "must be at least 1 (1 logs every request), not %d", s.AccessLogEvery)
	}
	return errors.Join(errs...)
}

// Logger is the logger the settings ask for, writing to w.
func (s *Settings) Logger(w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(s.LogLevel)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	if s.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// Config turns the settings into the gateway's Config. What the gateway
// cannot do alone is left to the caller: World stays nil when no --world
// is set (the binary embeds a default), Native and CheckpointKey unset.
func (s *Settings) Config(log zerolog.Logger) Config {
	cfg := Config{
		Listen:          s.Listen,
		AdminListen:     s.AdminListen,
		DBDir:           s.DB,
		LedgerCache:     s.LedgerCacheMB << 20,
		LedgerMinFree:   uint64(s.LedgerMinFree) << 20,
		DirectWALSync:   s.WALSync == "direct" || s.WALSync == "auto" && runtime.GOMAXPROCS(0) >= 2,
		ModuleDirs:      []fs.FS{os.DirFS(s.Modules)},
		Logger:          log,
		ShutdownTimeout: s.ShutdownTimeout,
		MaxInflight:     s.MaxInflight,
		MaxConns:        s.MaxConns,
		MaxConnsPerIP:   s.MaxConnsPerIP,
		AccessLog:       AccessLogSampling{Burst: s.AccessLogBurst, Every: s.AccessLogEvery},
	}
	if s.AccessLogBurst == 0 {
		cfg.AccessLog.Burst = -1 // 0 set on purpose: no burst
	}
	if s.World != "" {
		cfg.World = os.DirFS(s.World)
	}
	cfg.Engine.CallFuel = s.PolicyFuel
	cfg.Engine.Deadline = s.PolicyDeadline
	cfg.Engine.CallTimeout = s.PolicyTimeout
	cfg.Engine.MemoryLimitPages = uint32(s.PolicyMemoryPages)
	cfg.Engine.MaxInstances = s.PolicyInstances
	return cfg
}

// WriteUsage writes the help of `medgate serve`: the settings by group,
// each with its default and environment variable.
func WriteUsage(w io.Writer) {
	s := &Settings{}
	fl := s.flags("serve")
	fmt.Fprint(w, `Usage: medgate serve [flags]

Runs the gateway until SIGINT or SIGTERM, then finishes the requests in flight
and closes the ledger. With no flags: a demo on the embedded reference world
at 127.0.0.1:8080, ledger in ./medgate-data.

Every setting is a flag --NAME, an environment variable MEDGATE_NAME (upper
case, '-' as '_') and a key NAME in the config file (--config FILE, YAML or
JSON). Precedence: flags > environment > file > defaults.
`)
	for _, g := range settingGroups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fl.Lookup(name)
			typ, usage := flag.UnquoteUsage(f)
			head := "  --" + name
			if typ != "" {
				head += " " + typ
			}
			fmt.Fprintf(w, "%s\n      %s\n", head, usage)
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			switch env := EnvName(name); name {
			case "print-config":
			case "config":
				fmt.Fprintf(w, "      (env %s)\n", env)
			default:
				fmt.Fprintf(w, "      (default %s; env %s)\n", def, env)
			}
		}
	}
}

// WriteConfig writes the settings as a config file, each line commented
// with where its value came from.
func (s *Settings) WriteConfig(w io.Writer) {
	c := *s
	resolved := c
	fl := c.flags("print") // binds to c, resetting it to the defaults
	c = resolved
	fmt.Fprintf(w, "# medgate serve settings; config file: %s\n", orNone(s.ConfigFile))
	for _, g := range settingGroups {
		fmt.Fprintf(w, "\n# %s\n", g.title)
		for _, name := range g.names {
			if commandLineOnly(name) {
				continue
			}
			src := s.Source[name]
			if src == "" {
				src = "default"
			}
			fmt.Fprintf(w, "%s: %q  # %s\n", name, fl.Lookup(name).Value.String(), src)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
