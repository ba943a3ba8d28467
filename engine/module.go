package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"medgate/engine/abi"
	"medgate/engine/meter"
)

// allowedImportModule is the only module a policy may import from.
const allowedImportModule = "wasi_snapshot_preview1"

// Module is one compiled, checked version of a region's policy with its pool
// of instances. It is safe for concurrent use.
type Module struct {
	Region  string
	Version string
	SHA256  [32]byte
	Size    int

	e        *Engine
	rt       wazero.Runtime // the runtime compiled belongs to
	compiled wazero.CompiledModule
	hasInit  bool

	slots chan struct{} // one token per live instance allowed
	// Idle instances: a stack, so that a call gets the instance used last,
	// whose memory is still in a CPU's cache (a queue would cycle through
	// every instance the pool ever grew to). handoff takes an instance
	// straight to a caller waiting for one (all live, none idle).
	mu      sync.Mutex
	stack   []*instance // guarded by mu
	waiting int         // callers in get's slow path; guarded by mu
	// used: an instance came back since the last TrimUnused (or Trim);
	// guarded by mu.
	used    bool
	handoff chan *instance
	live    atomic.Int64
	// Failures counts calls that trapped, timed out or broke a host check.
	Failures atomic.Int64
	closed   atomic.Bool
	// slowUntil (unix ns, 0: never): for a while after a call ran out of
	// time, the module's calls run one at a time (serial). Compiled wasm is
	// not preemptible, so a module looping on every call would otherwise
	// hold as many CPUs as it has instances; serialized, it holds one and
	// other regions keep the rest.
	slowUntil atomic.Int64
	serial    sync.Mutex
	// serialQueue counts calls running or waiting serially: beyond
	// MaxInstances a call is refused at once instead of queueing, so that
	// a looping module's region cannot make its settlements wait without
	// bound, nor pile up requests that take every region's in-flight slots.
	serialQueue atomic.Int64
}

// slowPenalty is how long a module that ran out of time runs serially.
const slowPenalty = 10 * time.Second

// SHA256Hex is the module's hash in hex.
func (m *Module) SHA256Hex() string { return hex.EncodeToString(m.SHA256[:]) }

// Closed reports whether Close was called: the module is withdrawn and
// nothing may call it again.
func (m *Module) Closed() bool { return m.closed.Load() }

// Live is the number of instances currently alive (idle or in use).
func (m *Module) Live() int { return int(m.live.Load()) }

type instance struct {
	mod         api.Module
	mem         api.Memory
	fuel        api.MutableGlobal // nil in Deadline mode
	stackUsed   api.MutableGlobal // the stack global (meter.StackGlobal); nil in Deadline mode
	inputBuffer api.Function
	settle      api.Function
	stack       [1]uint64
	// inPtr and inCap are the input buffer input_buffer last returned and
	// the size asked for: valid until input_buffer is called again (ABI
	// v1), so an input that fits is written there without a call.
	inPtr, inCap uint32
	// keep is the most memory (bytes) the instance may have to be pooled
	// again (poolMemory).
	keep uint64
	// stderr holds the start of what the module wrote to stderr during
	// its current call, quoted in the call's error (guestStderr).
	stderr *guestStderr
}

// maxGuestStderr bounds what of a module's stderr a failed call quotes.
const maxGuestStderr = 512

// guestStderr keeps the first maxGuestStderr bytes a module writes to
// stderr and drops the rest. Go's wasip1 runtime writes a panic's value
// ("panic: assignment to entry in nil map", "fatal error: out of
// memory") there before it traps, and without it a region's author sees
// only "wasm error: unreachable". It does not change an answer: the same
// input writes the same bytes. Its storage is allocated once per instance.
type guestStderr struct{ b []byte }

func (w *guestStderr) Write(p []byte) (int, error) {
	if room := cap(w.b) - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

// quote adds what the module wrote to stderr to ce's error, unless ce is
// a cancellation (FailUnavailable): not the module's failure, and its
// error is quoted in the hospital's 503 answer (gateway policyError),
// which must not carry what a policy may have made of the visit.
func (w *guestStderr) quote(ce *CallError) *CallError {
	if w == nil || len(w.b) == 0 || ce.Kind == FailUnavailable {
		return ce
	}
	ce.Err = fmt.Errorf("the module wrote to stderr %q; %w", w.b, ce.Err)
	return ce
}

// poolMemory is the most memory an instance may have grown to and still
// go back to the pool: what it had once instantiated plus a quarter of
// the limit. wasm memory never shrinks, and a pooled instance lives until
// its module is closed: without a bound a module growing to the limit
// once per instance would pin MaxInstances × the limit per version for
// good. An instance above it is discarded after its call. (The reference
// policies have 2.8 MiB once instantiated and 3.5 MiB after 1,000-line
// bills: well within.)
func (m *Module) poolMemory(inst *instance) uint64 {
	return uint64(inst.mem.Size()) + uint64(m.e.cfg.MemoryLimitPages)<<16/4
}

// minInputBuffer is the least input buffer asked for: most bills fit, so
// input_buffer is called about once per instance.
const minInputBuffer = 16 << 10

// Load checks wasm as a policy module of region and version and compiles it:
// size, validity, imports, memory, exports, that it instantiates within the
// time limit and declares a supported ABI version. The probing instance is
// kept as the first pooled instance. The error is a *LoadError naming the
// failed check.
func (e *Engine) Load(ctx context.Context, region, version string, wasm []byte) (*Module, error) {
	return e.load(ctx, e.runtime, region, version, wasm)
}

// LoadCandidate is Load for a module that is only checked or tried (an
// upload's check, a what-if run): its compiled code is not written to the
// on-disk cache, so that modules sent again and again, refused or never
// published, leave nothing on the disk the ledger shares. A candidate that
// is then published runs as loaded; a restart compiles it into the cache.
func (e *Engine) LoadCandidate(ctx context.Context, region, version string, wasm []byte) (*Module, error) {
	return e.load(ctx, e.scratch, region, version, wasm)
}

func (e *Engine) load(ctx context.Context, rt wazero.Runtime, region, version string, wasm []byte) (*Module, error) {
	fail := func(check string, err error) (*Module, error) {
		return nil, &LoadError{Region: region, Version: version, Check: check, Err: err,
			All: []CheckFailure{{Check: check, Message: err.Error()}}}
	}
	if len(wasm) > e.cfg.MaxModuleSize {
		return fail("size", fmt.Errorf("module is %d bytes, limit %d", len(wasm), e.cfg.MaxModuleSize))
	}
	// Before any decoder: wazero allocates vectors by their declared
	// counts, so a few bytes claiming billions of entries would exhaust
	// memory (meter.CheckBounds).
	if err := meter.CheckBounds(wasm); err != nil {
		return fail("compile", err)
	}
	// Only functions may be imported (ABI.md): an imported global, table
	// or memory is named here rather than failing instantiation.
	imports, err := meter.Imports(wasm)
	if err != nil {
		return fail("compile", err)
	}
	var bad []CheckFailure
	for _, im := range imports {
		if im.Kind != 0 {
			bad = append(bad, CheckFailure{Check: "imports", Message: fmt.Sprintf("imported %s %s.%s is not allowed (%s functions only)",
				meter.KindName(im.Kind), im.Module, im.Name, allowedImportModule)})
		}
	}
	if len(bad) > 0 {
		return nil, &LoadError{Region: region, Version: version, Check: "imports", Err: errors.New(bad[0].Message), All: bad}
	}
	// Instrumenting also refuses what no limit would bound (table.grow):
	// in Deadline mode too, where its output is not used.
	instrumented, err := meter.InstrumentStack(wasm, e.cfg.InitFuel, e.cfg.StackLimit)
	if err != nil {
		return fail("compile", err)
	}
	code := wasm
	if !e.cfg.Deadline {
		code = instrumented
	}
	compiled, err := compileModule(ctx, rt, code)
	if err != nil && rt == e.runtime && e.scratch != e.runtime && strings.Contains(err.Error(), "compilationcache") {
		// A damaged file of the on-disk cache, which wazero reports but
		// neither discards nor recompiles: the cache must not cost the
		// region its policy. Compile without it, as a candidate is.
		e.log.Warn().Str("region", region).Str("version", version).Str("cache_dir", e.cfg.CacheDir).Str("error", err.Error()).
			Msg("engine: compiled-module cache file damaged; compiled without the cache (delete the directory to rebuild it)")
		rt = e.scratch
		compiled, err = compileModule(ctx, rt, code)
	}
	if err != nil {
		if strings.Contains(err.Error(), "section memory") {
			return fail("memory", err) // e.g. a minimum over the limit
		}
		return fail("compile", err)
	}
	m := &Module{
		Region:   region,
		Version:  version,
		SHA256:   sha256.Sum256(wasm),
		Size:     len(wasm),
		e:        e,
		rt:       rt,
		compiled: compiled,
		slots:    make(chan struct{}, e.cfg.MaxInstances),
		handoff:  make(chan *instance, e.cfg.MaxInstances),
	}
	if fails := m.checkShape(); len(fails) > 0 {
		compiled.Close(ctx)
		return nil, &LoadError{Region: region, Version: version, Check: fails[0].Check, Err: errors.New(fails[0].Message), All: fails}
	}
	m.slots <- struct{}{}
	inst, err := m.instantiate(ctx)
	if err != nil {
		compiled.Close(ctx)
		var ce *CallError
		if errors.As(err, &ce) {
			err = fmt.Errorf("%s: %w", ce.Kind, ce.Err)
		}
		return fail("instantiate", err)
	}
	v, err := m.abiVersion(ctx, inst)
	if err != nil {
		inst.mod.Close(ctx)
		var ce *CallError
		if errors.As(err, &ce) {
			err = fmt.Errorf("%s: %w", ce.Kind, ce.Err)
		}
		if _, command := compiled.ExportedFunctions()["_start"]; command && !m.hasInit {
			// Go's default for GOOS=wasip1: its runtime starts only with
			// _start (main), so every export traps in notInitialized.
			err = fmt.Errorf("the module exports _start and no _initialize: it was built as a WASI command, whose runtime the host never starts; build it as a reactor (with Go: go build -buildmode=c-shared, ABI.md): %w", err)
		}
		compiled.Close(ctx)
		return fail("abi_version", err)
	}
	if v != abi.Version {
		inst.mod.Close(ctx)
		compiled.Close(ctx)
		return fail("abi_version", fmt.Errorf("module declares ABI version %d; supported: %d", v, abi.Version))
	}
	m.put(inst)
	return m, nil
}

// compileModule is rt.CompileModule, with a panic inside wazero turned
// into an error. wazero's validator (v1.12.0) panics on some malformed
// code (an index out of range in func_validation.go, found by
// FuzzInstrumentValid): a module uploaded by a region must cost that
// region its upload, not the gateway its process. The panic happens while
// validating the new module, before it is compiled or cached.
func compileModule(ctx context.Context, rt wazero.Runtime, code []byte) (cm wazero.CompiledModule, err error) {
	defer func() {
		if r := recover(); r != nil {
			cm, err = nil, fmt.Errorf("the module is malformed (the validator failed on it: %v)", r)
		}
	}()
	return rt.CompileModule(ctx, code)
}

// checkShape verifies imports, memory and exports without running
// anything, and reports every failure, not just the first.
func (m *Module) checkShape() []CheckFailure {
	var fails []CheckFailure
	fail := func(check, format string, args ...any) {
		fails = append(fails, CheckFailure{Check: check, Message: fmt.Sprintf(format, args...)})
	}
	c := m.compiled
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != allowedImportModule {
			fail("imports", "import %s.%s is outside the allowed set (%s functions only)", mod, name, allowedImportModule)
		}
	}
	for _, mem := range c.ImportedMemories() {
		mod, name, _ := mem.Import()
		fail("imports", "imported memory %s.%s is not allowed", mod, name)
	}
	if mem, ok := c.ExportedMemories()["memory"]; !ok {
		fail("exports", `module exports no memory named "memory"`)
	} else if mem.Min() > m.e.cfg.MemoryLimitPages {
		fail("memory", "declared minimum memory %d pages exceeds the limit of %d", mem.Min(), m.e.cfg.MemoryLimitPages)
	}
	funcs := c.ExportedFunctions()
	for _, want := range []struct {
		name            string
		params, results []api.ValueType
	}{
		{"abi_version", nil, []api.ValueType{api.ValueTypeI32}},
		{"input_buffer", []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
		{"settle", []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}},
	} {
		f, ok := funcs[want.name]
		if !ok {
			fail("exports", "module does not export function %q", want.name)
		} else if !sameTypes(f.ParamTypes(), want.params) || !sameTypes(f.ResultTypes(), want.results) {
			fail("exports", "export %q has the wrong signature %s, want %s (ABI.md)", want.name,
				signature(f.ParamTypes(), f.ResultTypes()), signature(want.params, want.results))
		}
	}
	if f, ok := funcs["_initialize"]; ok {
		if len(f.ParamTypes()) != 0 || len(f.ResultTypes()) != 0 {
			fail("exports", "export \"_initialize\" has the wrong signature %s, want () -> () (ABI.md)", signature(f.ParamTypes(), f.ResultTypes()))
		}
		m.hasInit = true
	}
	return fails
}

// signature writes a function type as ABI.md does: (i32) -> (i64).
func signature(params, results []api.ValueType) string {
	list := func(ts []api.ValueType) string {
		names := make([]string, len(ts))
		for i, t := range ts {
			names[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(names, ", ") + ")"
	}
	return list(params) + " -> " + list(results)
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// instantiate creates an instance; the caller holds a slot for it.
func (m *Module) instantiate(ctx context.Context) (*instance, error) {
	ctx, cancel := context.WithTimeout(ctx, m.e.cfg.InitTimeout)
	defer cancel()
	stderr := &guestStderr{b: make([]byte, 0, maxGuestStderr)}
	cfg := wazero.NewModuleConfig().WithName("").WithStderr(stderr)
	if m.hasInit {
		cfg = cfg.WithStartFunctions("_initialize")
	} else {
		cfg = cfg.WithStartFunctions()
	}
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, cfg)
	if err != nil {
		<-m.slots
		ce := classify(ctx, err, "instantiate")
		if !m.e.cfg.Deadline && ce.Kind == FailTrap && strings.Contains(err.Error(), "unreachable") {
			// The module is closed on a failed start, so its fuel cannot
			// be read; a trap in the start functions of a module whose
			// budget was spent is most likely that.
			ce.Err = fmt.Errorf("instantiate: trapped (step budget of %d exhausted, call stack past its limit of %d bytes, or the start function trapped): %w", m.e.cfg.InitFuel, m.e.cfg.StackLimit, err)
		}
		return nil, stderr.quote(ce)
	}
	m.live.Add(1)
	inst := &instance{
		mod:         mod,
		mem:         mod.Memory(),
		inputBuffer: mod.ExportedFunction("input_buffer"),
		settle:      mod.ExportedFunction("settle"),
		stderr:      stderr,
	}
	inst.keep = m.poolMemory(inst)
	if !m.e.cfg.Deadline {
		g, ok := mod.ExportedGlobal(meter.Global).(api.MutableGlobal)
		if !ok {
			m.discard(inst)
			return nil, &CallError{Kind: FailMalformed, Err: errors.New("instantiate: fuel global missing")}
		}
		inst.fuel = g
		if inst.stackUsed, ok = mod.ExportedGlobal(meter.StackGlobal).(api.MutableGlobal); !ok {
			m.discard(inst)
			return nil, &CallError{Kind: FailMalformed, Err: errors.New("instantiate: stack global missing")}
		}
	}
	return inst, nil
}

func (m *Module) abiVersion(ctx context.Context, inst *instance) (uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, m.e.cfg.InitTimeout)
	defer cancel()
	inst.stderr.b = inst.stderr.b[:0]
	res, err := inst.mod.ExportedFunction("abi_version").Call(ctx)
	if err != nil {
		return 0, inst.stderr.quote(classify(ctx, err, "abi_version"))
	}
	return uint32(res[0]), nil
}

// get borrows an instance, creating one when none is idle and the limit
// allows; otherwise it waits for one to come back.
func (m *Module) get(ctx context.Context) (*instance, error) {
	m.mu.Lock()
	if n := len(m.stack); n > 0 {
		inst := m.stack[n-1]
		m.stack[n-1] = nil
		m.stack = m.stack[:n-1]
		m.mu.Unlock()
		return inst, nil
	}
	m.waiting++
	m.mu.Unlock()
	// An instance may have been handed off to a waiter that took a fresh
	// slot instead: it waits in handoff, so look there first.
	var inst *instance
	var err error
	fresh := false
	select {
	case inst = <-m.handoff:
	default:
		select {
		case inst = <-m.handoff:
		case m.slots <- struct{}{}:
			fresh = true
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	// No longer waiting: while this one instantiates, returned instances
	// go back on the stack.
	m.mu.Lock()
	m.waiting--
	m.mu.Unlock()
	if fresh {
		return m.instantiate(ctx)
	}
	return inst, err
}

// put returns a healthy instance to the pool.
func (m *Module) put(inst *instance) {
	m.mu.Lock()
	if m.closed.Load() {
		m.mu.Unlock()
		m.discard(inst)
		return
	}
	m.used = true
	if m.waiting == 0 {
		m.stack = append(m.stack, inst)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.handoff <- inst // never blocks: handoff has room for every slot
	if m.closed.Load() {
		// Close may have emptied handoff before the send.
		select {
		case inst := <-m.handoff:
			m.discard(inst)
		default:
		}
	}
}

// Trim closes the module's idle instances, keeping its compiled code: for
// a module that may not be called for a long time, whose instances would
// otherwise keep their memory. A later call instantiates afresh.
func (m *Module) Trim() { m.trim(false) }

// TrimUnused is Trim if no call ended since the last TrimUnused or Trim;
// otherwise it only starts a new period. Called periodically, it releases
// the instances of a module that is no longer called, however seldom, and
// leaves those of one still called.
func (m *Module) TrimUnused() { m.trim(true) }

// trim is Trim, or TrimUnused when unused: the check and the take are
// under one hold of mu, so that an instance returned between them is not
// closed as though the module were unused.
func (m *Module) trim(unused bool) {
	m.mu.Lock()
	if unused && m.used {
		m.used = false
		m.mu.Unlock()
		return
	}
	idle := m.stack
	m.stack = nil
	m.used = false
	if m.waiting == 0 {
		// An instance handed off to a waiter that took a fresh slot
		// instead waits in handoff until a call finds the stack empty:
		// with no one waiting, it is as idle as the stack's.
	drain:
		for {
			select {
			case inst := <-m.handoff:
				idle = append(idle, inst)
			default:
				break drain
			}
		}
	}
	m.mu.Unlock()
	for _, inst := range idle {
		m.discard(inst)
	}
}

// discard closes an instance for good and frees its slot.
func (m *Module) discard(inst *instance) {
	_ = inst.mod.Close(context.Background())
	m.live.Add(-1)
	<-m.slots
}

// Call runs the policy on in, whose ABI encoding is encoded, and decodes
// its answer into out after checking it (see Check). A failure is a
// *CallError; the instance that failed is discarded. Call never writes
// anything; the caller may write once it returns nil.
func (m *Module) Call(ctx context.Context, in *abi.Input, encoded []byte, out *abi.Output) error {
	if u := m.slowUntil.Load(); u != 0 && u > time.Now().UnixNano() {
		defer m.serialQueue.Add(-1)
		if m.serialQueue.Add(1) > int64(m.e.cfg.MaxInstances) {
			return &CallError{Region: m.Region, Version: m.Version, Kind: FailUnavailable,
				Err: errors.New("the policy ran out of time recently and runs one call at a time; too many calls are waiting for it")}
		}
		m.serial.Lock()
		defer m.serial.Unlock()
	}
	inst, err := m.get(ctx)
	if err != nil {
		var ce *CallError
		if errors.As(err, &ce) {
			ce.Region, ce.Version = m.Region, m.Version
			m.Failures.Add(1)
			return ce
		}
		return &CallError{Region: m.Region, Version: m.Version, Kind: FailUnavailable, Err: err}
	}
	if err := m.call(ctx, inst, encoded, out); err != nil {
		if err.Kind == FailTimeout {
			m.slowUntil.Store(time.Now().Add(slowPenalty).UnixNano())
		}
		m.discard(inst)
		m.Failures.Add(1)
		err.Region, err.Version = m.Region, m.Version
		return err
	}
	if out.Refusal != "" {
		m.release(inst)
		return &CallError{Region: m.Region, Version: m.Version, Kind: FailRefused, Err: errors.New(out.Refusal)}
	}
	if err := Check(in, out); err != nil {
		// An answer that breaks a host check is a failure like a trap
		// (ABI.md): the instance is discarded, not lent again.
		m.discard(inst)
		m.Failures.Add(1)
		return &CallError{Region: m.Region, Version: m.Version, Kind: FailCheck, Rule: err.Rule, Err: err}
	}
	m.release(inst)
	return nil
}

// release returns an instance after a call that succeeded: to the pool,
// unless its memory grew past what a pooled instance may keep.
func (m *Module) release(inst *instance) {
	if uint64(inst.mem.Size()) > inst.keep {
		m.discard(inst)
		return
	}
	m.put(inst)
}

func (m *Module) call(ctx context.Context, inst *instance, encoded []byte, out *abi.Output) *CallError {
	inst.stderr.b = inst.stderr.b[:0] // what this call writes
	if inst.fuel != nil {
		inst.fuel.Set(uint64(m.e.cfg.CallFuel))
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.e.cfg.CallTimeout)
		defer cancel()
	}
	if uint64(len(encoded)) > uint64(inst.inCap) {
		size := max(len(encoded), minInputBuffer)
		inst.stack[0] = uint64(size)
		inst.resetStack()
		if err := inst.inputBuffer.CallWithStack(ctx, inst.stack[:]); err != nil {
			return m.classifyCall(ctx, inst, err, "input_buffer")
		}
		inst.inPtr, inst.inCap = uint32(inst.stack[0]), uint32(size)
	}
	ptr := inst.inPtr
	if !inst.mem.Write(ptr, encoded) {
		return &CallError{Kind: FailMalformed, Err: fmt.Errorf("input_buffer returned %#x, outside memory for %d bytes", ptr, len(encoded))}
	}
	inst.stack[0] = uint64(len(encoded))
	inst.resetStack()
	if err := inst.settle.CallWithStack(ctx, inst.stack[:]); err != nil {
		return m.classifyCall(ctx, inst, err, "settle")
	}
	packed := inst.stack[0]
	optr, olen := uint32(packed>>32), uint32(packed)
	buf, ok := inst.mem.Read(optr, olen)
	if !ok {
		return &CallError{Kind: FailMalformed, Err: fmt.Errorf("settle answered %d bytes at %#x, outside memory", olen, optr)}
	}
	out.Reset()
	if err := out.Decode(buf); err != nil {
		return answerUndecodable(err)
	}
	return nil
}

// resetStack sets the stack an export's call starts with to none: each
// call has the whole limit, whichever calls the instance ran before (an
// export returning to the host leaves its own frame counted).
func (inst *instance) resetStack() {
	if inst.stackUsed != nil {
		inst.stackUsed.Set(0)
	}
}

// classifyCall is classify, knowing that a trap with the fuel at 0 is the
// step budget running out: a time limit, not a broken module; and one with
// the stack global at meter.StackExceeded the stack limit.
func (m *Module) classifyCall(ctx context.Context, inst *instance, err error, fn string) *CallError {
	return inst.stderr.quote(m.classifyCallKind(ctx, inst, err, fn))
}

func (m *Module) classifyCallKind(ctx context.Context, inst *instance, err error, fn string) *CallError {
	if inst.fuel != nil && inst.fuel.Get() == 0 {
		return &CallError{Kind: FailTimeout, Err: fmt.Errorf("%s: step budget of %d exhausted", fn, m.e.cfg.CallFuel)}
	}
	if inst.stackUsed != nil && inst.stackUsed.Get() == meter.StackExceeded {
		return &CallError{Kind: FailStack, Err: fmt.Errorf("%s: call stack limit of %d bytes exceeded (recursion too deep)", fn, m.e.cfg.StackLimit)}
	}
	return classify(ctx, err, fn)
}

// classify turns a wazero error into a CallError: an expired deadline is a
// timeout, anything else (trap, proc_exit, closed module) a trap.
//
// wazero reports its own deadline and cancellation as exit codes a guest
// can also pass to proc_exit, so those codes mean a timeout or a
// cancellation only when ctx, the call's context, did end: a module must
// not make its own failure read as "retry later" (503) or as a timeout.
func classify(ctx context.Context, err error, fn string) *CallError {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch code := exit.ExitCode(); {
		case code == sys.ExitCodeDeadlineExceeded && ctx.Err() != nil:
			return &CallError{Kind: FailTimeout, Err: fmt.Errorf("%s: time limit exceeded", fn)}
		case code == sys.ExitCodeContextCanceled && ctx.Err() != nil:
			return &CallError{Kind: FailUnavailable, Err: fmt.Errorf("%s: canceled", fn)}
		}
		return &CallError{Kind: FailTrap, Err: fmt.Errorf("%s: module exited with code %d", fn, exit.ExitCode())}
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return &CallError{Kind: FailTimeout, Err: fmt.Errorf("%s: time limit exceeded", fn)}
	}
	return &CallError{Kind: FailTrap, Err: fmt.Errorf("%s: %w", fn, err)}
}

// Close withdraws the module: idle instances are closed now, borrowed ones
// when they come back, then the compiled code is released.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock() // put checks closed under mu: nothing is pushed after the drain
	if m.closed.Swap(true) {
		m.mu.Unlock()
		return nil
	}
	idle := m.stack
	m.stack = nil
	m.mu.Unlock()
	for _, inst := range idle {
		m.discard(inst)
	}
	for {
		select {
		case inst := <-m.handoff:
			m.discard(inst)
		default:
			return m.compiled.Close(ctx)
		}
	}
}
