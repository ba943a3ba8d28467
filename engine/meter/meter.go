// Package meter instruments a WebAssembly module with a step budget ("fuel")
// so that the host can bound a call's work without interrupting it from
// outside.
//
// Instrument adds one mutable i64 global, exported as Global, and at the
// entry of every defined function and at the head of every loop inserts a
// check of that point's cost c:
//
//	global.get $fuel; i64.const c; i64.lt_u; if; (zero the fuel) unreachable; end
//	global.get $fuel; i64.const c; i64.sub; global.set $fuel
//
// Every unbounded execution passes through loop heads (the only backward
// jumps) or function entries (recursion), so a call whose budget runs out
// traps with `unreachable`, and the host, seeing the global at 0, knows the
// trap was the budget. A point's cost is the instructions that can run
// before the next point (see scopeCosts) plus PointCost, so the budget
// bounds the instructions a call runs, however long a loop's body is.
// The count is static, so it is an upper bound: code compiled into one big
// dispatch loop (the Go toolchain's) is charged its whole body an
// iteration, some hundred times what runs.
//
// It also adds an i32 global, exported as StackGlobal, that bounds the
// call stack (see stackEntry): wazero grows a call's stack as deep as the
// call recurses, up to about 100 MiB, and an instance keeps it for its
// later calls.
//
// Why not wazero's WithCloseOnContextDone: it makes every loop iteration
// leave the compiled code for a Go check and spawns a goroutine per call,
// which made the reference policies about 8× slower (bench/RESULTS.md); a
// global decrement costs a few instructions.
//
// The rewriter understands the instruction set that the standard Go
// toolchain (GOOS=wasip1) and similar compilers emit: MVP, sign extension,
// saturating conversions, bulk memory, reference types, multi-value, tail
// calls. A module using anything else (SIMD, exceptions, threads, multiple
// memories) is refused with an error naming the opcode.
package meter

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Global is the export name of the fuel global.
const Global = "medgate.fuel"

// StackGlobal is the export name of the stack global: the bytes of call
// stack the frames running may use (see stackEntry), which the host sets to
// 0 before each call; StackExceeded when a call trapped for going past the
// limit.
const StackGlobal = "medgate.stack"

// StackExceeded is the stack global's value after a call trapped for
// going past the stack limit.
const StackExceeded = 0xFFFF_FFFF

// DefaultStackLimit is the call stack a call may use unless told
// otherwise, in bytes as frameSize counts them: 16 MiB, some 27 times what
// the reference policies need at their deepest (605 KiB: the Go runtime's
// initialisation, 28 frames; a settle call goes 24 deep). frameSize counts
// twice the 8-byte slot a value takes, so the frames use at most about
// half the limit, and wazero, doubling the stack as it grows, holds at
// most about the limit for a call that stayed within it (a small frame is
// counted some twenty times what it takes).
const DefaultStackLimit = 16 << 20

// ErrMalformed is returned for bytes that are not a module the rewriter
// can instrument.
var ErrMalformed = errors.New("meter: malformed module")

const (
	secType     = 1
	secFunction = 3
	secImport   = 2
	secGlobal   = 6
	secExport   = 7
	secCode     = 10
	kindGlobal  = 3
	valI64      = 0x7E
	valI32      = 0x7F
	opI32Const  = 0x41
	opEnd       = 0x0B
	opLoop      = 0x03
	opI64Const  = 0x42
	opGlobalGet = 0x23
)

type section struct {
	id      byte
	content []byte
}

// Instrument returns wasm with the fuel global (initialised to initFuel,
// which budgets instantiation: start function and _initialize), the stack
// global (limit DefaultStackLimit) and the checks inserted. It never
// modifies wasm.
func Instrument(wasm []byte, initFuel int64) ([]byte, error) {
	return InstrumentStack(wasm, initFuel, DefaultStackLimit)
}

// InstrumentStack is Instrument with a stack limit of stackLimit bytes (at
// most 1 GiB).
func InstrumentStack(wasm []byte, initFuel int64, stackLimit uint32) ([]byte, error) {
	if stackLimit > 1<<30 {
		return nil, fmt.Errorf("meter: stack limit %d exceeds 1 GiB", stackLimit)
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, fmt.Errorf("%w: not a WebAssembly 1.0 binary", ErrMalformed)
	}
	var secs []section
	r := reader{b: wasm[8:]}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		content := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		secs = append(secs, section{id, content})
	}
	importedFuncs, importedGlobals, hostFns, err := countImports(secs)
	if err != nil {
		return nil, err
	}
	definedGlobals := 0
	for _, s := range secs {
		if s.id == secGlobal {
			gr := reader{b: s.content}
			definedGlobals = int(gr.u32())
			if gr.err != nil {
				return nil, fmt.Errorf("%w: global section: %v", ErrMalformed, gr.err)
			}
		}
	}
	fuel := uint32(importedGlobals + definedGlobals)
	m := &metering{host: checkSequence(fuel, HostCallCost), grow: checkSequence(fuel, GrowCost), importedFuncs: importedFuncs,
		stack: fuel + 1, stackLimit: stackLimit}
	if err := m.readSignatures(secs, hostFns); err != nil {
		return nil, err
	}
	// The bulk helper (see bulkHelper) is appended after the module's own
	// types and functions, so that no existing index changes.
	var types, funcs uint32
	haveTypes, haveFuncs, haveCode := false, false, false
	for _, s := range secs {
		haveCode = haveCode || s.id == secCode
		if s.id != secType && s.id != secFunction {
			continue
		}
		vr := reader{b: s.content}
		n := vr.u32()
		if vr.err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, s.id, vr.err)
		}
		if s.id == secType {
			types, haveTypes = n, true
		} else {
			funcs, haveFuncs = n, true
		}
	}
	withHelper := haveTypes && haveFuncs && haveCode
	m.globals, m.funcs = fuel, importedFuncs+funcs
	var chargeTypes, chargeBodies [][]byte
	if withHelper {
		m.bulk = append([]byte{0x10}, appendU32(nil, importedFuncs+funcs)...) // call $bulk
		// A charge helper for each host function whose work grows with
		// an argument, called before it (see hostCharges).
		var sigs [][]byte
		for _, s := range secs {
			if s.id == secType {
				if sigs, err = funcTypes(s.content); err != nil {
					return nil, err
				}
			}
		}
		for i, h := range hostFns {
			c, ok := hostCharges[h.module+"."+h.name]
			if !ok || int(h.typ) >= len(sigs) {
				continue
			}
			params, ok := paramTypes(sigs[h.typ])
			if !ok || c.param >= len(params) || params[c.param] != 0x7F {
				continue // not the WASI signature: wazero refuses it at instantiation
			}
			if m.charge == nil {
				m.charge = map[uint32][]byte{}
			}
			idx := importedFuncs + funcs + 1 + uint32(len(chargeBodies))
			m.charge[uint32(i)] = append([]byte{0x10}, appendU32(nil, idx)...)
			chargeTypes = append(chargeTypes, passThroughType(params))
			chargeBodies = append(chargeBodies, chargeHelper(fuel, len(params), c))
		}
	}

	newGlobal := []byte{valI64, 1, opI64Const}
	newGlobal = appendS64(newGlobal, initFuel)
	newGlobal = append(newGlobal, opEnd)
	newExport := appendName(nil, Global)
	newExport = append(newExport, kindGlobal)
	newExport = appendU32(newExport, fuel)
	stackGlobal := []byte{valI32, 1, opI32Const, 0, opEnd}
	stackExport := appendName(nil, StackGlobal)
	stackExport = append(stackExport, kindGlobal)
	stackExport = appendU32(stackExport, m.stack)

	var out []section
	haveGlobal, haveExport := false, false
	addGlobal := func() {
		if !haveGlobal {
			out = append(out, section{secGlobal, append(append(appendU32(nil, 2), newGlobal...), stackGlobal...)})
			haveGlobal = true
		}
	}
	addExport := func() {
		addGlobal()
		if !haveExport {
			out = append(out, section{secExport, append(append(appendU32(nil, 2), newExport...), stackExport...)})
			haveExport = true
		}
	}
	for _, s := range secs {
		var err error
		switch s.id {
		case secType:
			if withHelper {
				s.content, err = appendToVec(s.content, bulkHelperType)
				for _, t := range chargeTypes {
					if err == nil {
						s.content, err = appendToVec(s.content, t)
					}
				}
			}
		case secFunction:
			if withHelper {
				s.content, err = appendToVec(s.content, appendU32(nil, types))
				for j := range chargeTypes {
					if err == nil {
						s.content, err = appendToVec(s.content, appendU32(nil, types+1+uint32(j)))
					}
				}
			}
		case secGlobal:
			if err = m.checkConstRefs(s.id, s.content); err == nil {
				s.content, err = appendToVec(s.content, newGlobal)
			}
			if err == nil {
				s.content, err = appendToVec(s.content, stackGlobal)
			}
			haveGlobal = true
		case 4: // tables: an initializer may name a function
			err = m.checkConstRefs(s.id, s.content)
		case secExport:
			addGlobal()
			s.content, err = appendToVec(s.content, newExport)
			if err == nil {
				s.content, err = appendToVec(s.content, stackExport)
			}
			haveExport = true
		case secCode:
			addExport()
			s.content, err = m.instrumentCode(s.content)
			if err == nil && withHelper {
				body := bulkHelper(fuel)
				s.content, err = appendToVec(s.content, append(appendU32(nil, uint32(len(body))), body...))
				for _, body := range chargeBodies {
					if err == nil {
						s.content, err = appendToVec(s.content, append(appendU32(nil, uint32(len(body))), body...))
					}
				}
			}
		case 9: // elements come after export
			addExport()
			err = m.checkElements(s.content)
		case 8, 12, 11: // start, datacount, data come after export
			addExport()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	addExport()
	b := append([]byte(nil), wasm[:8]...)
	for _, s := range out {
		b = append(b, s.id)
		b = appendU32(b, uint32(len(s.content)))
		b = append(b, s.content...)
	}
	return b, nil
}

// What leaving the compiled code costs, in steps: a call of an imported
// (host) function costs as much time as many loop iterations, and growing
// memory may copy all of it.
const (
	HostCallCost = 1000
	GrowCost     = 100_000
)

// A hostCharge charges a host function by one of its arguments: argument
// param (an i32) shifted left by shl, in steps, on top of HostCallCost.
type hostCharge struct{ param, shl int }

// hostCharges are the WASI functions whose work grows with an argument:
// random_get fills len bytes (about a step's time a byte: 64 MiB took 88
// ms), the fd calls walk iovs_len buffers, poll_oneoff nsubscriptions
// events. The rest take constant time or fail at once (no files, no
// sockets). Without this a loop of random_get(buf, 64 MiB) ran for hours
// on its budget.
var hostCharges = map[string]hostCharge{
	"wasi_snapshot_preview1.random_get":  {param: 1, shl: 0},
	"wasi_snapshot_preview1.fd_write":    {param: 2, shl: 5},
	"wasi_snapshot_preview1.fd_read":     {param: 2, shl: 5},
	"wasi_snapshot_preview1.fd_pwrite":   {param: 2, shl: 5},
	"wasi_snapshot_preview1.fd_pread":    {param: 2, shl: 5},
	"wasi_snapshot_preview1.poll_oneoff": {param: 2, shl: 6},
}

// funcTypes returns each type of a type section as its encoding after the
// 0x60 form byte (params vector, results vector); nil for other forms.
func funcTypes(content []byte) ([][]byte, error) {
	r := reader{b: content}
	n := r.u32()
	var out [][]byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		if form := r.byte(); form != 0x60 {
			return nil, fmt.Errorf("%w: type %d: form 0x%02X", ErrMalformed, i, form)
		}
		start := r.b
		r.bytes(int(r.u32())) // params
		r.bytes(int(r.u32())) // results
		out = append(out, start[:len(start)-len(r.b)])
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: type section: %v", ErrMalformed, r.err)
	}
	return out, nil
}

// paramTypes returns sig's parameter types, if they are all numbers.
func paramTypes(sig []byte) ([]byte, bool) {
	r := reader{b: sig}
	params := r.bytes(int(r.u32()))
	if r.err != nil {
		return nil, false
	}
	for _, p := range params {
		if p < 0x7C || p > 0x7F { // f64, f32, i64, i32
			return nil, false
		}
	}
	return params, true
}

// passThroughType is the type (params) -> (params).
func passThroughType(params []byte) []byte {
	b := append([]byte{0x60}, appendU32(nil, uint32(len(params)))...)
	b = append(b, params...)
	b = append(b, appendU32(nil, uint32(len(params)))...)
	return append(b, params...)
}

// chargeHelper is the body of a function called before a host function of
// n parameters: it charges c's argument (an i32) as bulkHelper charges a
// length and gives the arguments back unchanged.
func chargeHelper(fuel uint32, n int, c hostCharge) []byte {
	cost := []byte{0x20, byte(c.param), 0xAD /* i64.extend_i32_u */, opI64Const, byte(c.shl), 0x86 /* i64.shl */}
	b := chargeBy(fuel, cost)
	for i := range n {
		b = append(b, 0x20, byte(i))
	}
	return append(b, opEnd)
}

// chargeBy is the start of a helper's body (no locals) that charges the
// steps the code cost leaves on the stack, trapping as checkSequence does
// when fewer are left.
func chargeBy(fuel uint32, cost []byte) []byte {
	g := appendU32(nil, fuel)
	b := []byte{0} // no locals
	b = append(append(b, opGlobalGet), g...)
	b = append(b, cost...)
	b = append(b, 0x54 /* i64.lt_u */, 0x04 /* if */, 0x40, opI64Const, 0, 0x24 /* global.set */)
	b = append(b, g...)
	b = append(b, 0x00 /* unreachable */, opEnd)
	b = append(append(b, opGlobalGet), g...)
	b = append(b, cost...)
	b = append(b, 0x7D /* i64.sub */, 0x24 /* global.set */)
	return append(b, g...)
}

// PointCost is what a metered point charges for its own check, on top of
// its scope's instructions: the check is a dozen instructions, and a tight
// loop is mostly its check.
const PointCost = 10

// BulkShift sets what the bulk instructions (memory.copy, memory.fill,
// memory.init, table.copy, table.init) cost: one step per 2^BulkShift
// bytes (elements) they touch. They run inside the compiled code without a
// metered point, so at one step each, a loop copying 64 MiB an iteration
// would run its budget for hours; charged by length, a step's worth of
// copying costs about what a loop iteration does.
const BulkShift = 6

// bulkHelperType is the helper's signature: (i32 i32 i32) -> (i32 i32 i32).
var bulkHelperType = []byte{0x60, 3, 0x7F, 0x7F, 0x7F, 3, 0x7F, 0x7F, 0x7F}

// bulkHelper is the body of the function called before every bulk
// instruction: it takes the instruction's three operands, charges
// len >> BulkShift steps (trapping as checkSequence does when less is
// left) and gives the operands back unchanged.
//
//	global.get $fuel; local.get 2; i64.extend_i32_u; i64.const s; i64.shr_u; i64.lt_u
//	if; i64.const 0; global.set $fuel; unreachable; end
//	global.get $fuel; local.get 2; i64.extend_i32_u; i64.const s; i64.shr_u; i64.sub; global.set $fuel
//	local.get 0; local.get 1; local.get 2
func bulkHelper(fuel uint32) []byte {
	cost := []byte{0x20, 2, 0xAD /* i64.extend_i32_u */, opI64Const, BulkShift, 0x88 /* i64.shr_u */}
	return append(chargeBy(fuel, cost), 0x20, 0, 0x20, 1, 0x20, 2, opEnd)
}

// checkSequence is the metering inserted at a metered point of the given
// cost: when less than cost is left, the fuel is zeroed and the call traps;
// otherwise cost is taken.
//
//	global.get $fuel; i64.const cost; i64.lt_u
//	if; i64.const 0; global.set $fuel; unreachable; end
//	global.get $fuel; i64.const cost; i64.sub; global.set $fuel
func checkSequence(fuel uint32, cost int64) []byte {
	g := appendU32(nil, fuel)
	c := appendS64(nil, cost)
	var b []byte
	b = append(append(b, opGlobalGet), g...)
	b = append(append(b, opI64Const), c...)
	b = append(b, 0x54 /* i64.lt_u */, 0x04 /* if */, 0x40, opI64Const, 0, 0x24 /* global.set */)
	b = append(b, g...)
	b = append(b, 0x00 /* unreachable */, opEnd)
	b = append(append(b, opGlobalGet), g...)
	b = append(append(b, opI64Const), c...)
	b = append(b, 0x7D /* i64.sub */, 0x24 /* global.set */)
	return append(b, g...)
}

// metering holds what is inserted where.
type metering struct {
	costs  []int64           // scopeCosts' buffer, reused across functions
	charge map[uint32][]byte // call of the charge helper of a host function, by its index
	host   []byte            // check of cost HostCallCost
	grow   []byte            // check of cost GrowCost
	bulk   []byte            // call of the bulk helper; nil: the module has no functions
	// The module's own globals and functions: the fuel global and the
	// bulk helper come after them, so code naming an index past them,
	// invalid as uploaded, would reach those (and set its own budget).
	globals, funcs uint32
	importedFuncs  uint32 // calls of a function index below this call the host
	stack          uint32 // the stack global's index
	stackLimit     uint32
	mergeWork      uint64 // merges × locals of the functions instrumented so far
	locals         uint64 // locals (parameters included) of the functions instrumented so far
	// The params of each type and the values its signature holds
	// (params + results), by type index; each function's type index,
	// imported ones first.
	sigParams, sigValues []uint64
	funcType             []uint32
}

// readSignatures reads the types and each function's type, which the
// stack's accounting needs (frameSize).
func (m *metering) readSignatures(secs []section, hostFns []hostImport) error {
	for _, h := range hostFns {
		m.funcType = append(m.funcType, h.typ)
	}
	for _, s := range secs {
		switch s.id {
		case secType:
			sigs, err := funcTypes(s.content)
			if err != nil {
				return err
			}
			for _, sig := range sigs {
				r := reader{b: sig}
				params := r.u32()
				r.bytes(int(params))
				m.sigParams = append(m.sigParams, uint64(params))
				m.sigValues = append(m.sigValues, uint64(params)+uint64(r.u32()))
			}
		case secFunction:
			r := reader{b: s.content}
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				m.funcType = append(m.funcType, r.u32())
			}
			if r.err != nil {
				return fmt.Errorf("%w: function section: %v", ErrMalformed, r.err)
			}
		}
	}
	for i, t := range m.funcType {
		if int(t) >= len(m.sigValues) {
			return fmt.Errorf("%w: function %d has type %d (the module has %d)", ErrMalformed, i, t, len(m.sigValues))
		}
	}
	return nil
}

// values is what type t's signature holds, 0 for an index out of range
// (wazero refuses the module).
func (m *metering) values(t uint64) uint64 {
	if t >= uint64(len(m.sigValues)) {
		return 0
	}
	return m.sigValues[t]
}

// FrameBase and FrameValue make up a frame's size (frameSize).
const (
	FrameBase  = 1024
	FrameValue = 16
)

// MaxFunctionMerges bounds a function's merges (see merges): its SSA form
// gives a block a value for each local it merges, and a branch to it an
// argument for each, about 100 bytes of the compiler's memory each, so a
// 48 KB function of 1,000 nested loops around 5,000 locals took 533 MiB to
// compile and a 256 KB one (MaxFunctionBody) could ask for tens of GiB.
// MaxMergeWork bounds a module's merges × locals, summed over its
// functions: compiling takes about 3 ns for each (a 16 KB function
// branching 2,000 times out of a block and then reading 2,000 locals took
// 32 s; a 256 KB one would take days). Neither grows with the module's
// size alone. The reference policies, built by the Go toolchain, have at
// most 15,267 merges in a function (18 locals at most) and about 10 million of
// that work in all.
const (
	MaxFunctionMerges = 1 << 18
	MaxMergeWork      = 1 << 30
)

// MaxModuleLocals bounds the locals (parameters included) of a module's
// functions in all: compiling a function takes time for each (about 120
// ns), and a local group declares up to MaxLocals of them in a few bytes,
// so a 10 KB module of 1,000 functions of 50,000 locals took 6 s to
// compile, and 16 MiB of them would take hours. The reference policies
// have about 8,000 in all.
const MaxModuleLocals = 1 << 20

// merges is a function's locals times its blocks (block, loop, if, else)
// and branch targets (br, br_if, each of br_table's): a bound on the
// values the compiler's SSA form merges.
func (m *metering) merges(code []byte, locals uint64) uint64 {
	var points uint64
	r := reader{b: code}
	for !r.done() {
		op := r.byte()
		switch {
		case op >= 0x02 && op <= 0x05, op == 0x0C, op == 0x0D:
			points++
		case op == 0x0E:
			points += uint64((&reader{b: r.b}).u32()) + 1
		}
		if r.skipImmediates(op) != nil {
			break // instrumentBody reports it
		}
	}
	return points * locals
}

// frameSize is a bound on the stack wazero's compiler gives a frame of a
// function with these locals (params included) and code, in bytes:
// FrameBase (return address, frame pointer, saved registers), and
// FrameValue for each local, each value its signature returns, and each
// value its instructions make, counted as one an instruction, plus what
// the signature of a call or of a typed block holds (its arguments and
// results), plus 16 for each loop (the fuel check) and 64 for the checks at
// entry, plus its locals again for each block, loop, if and else: the
// compiler's SSA form gives a block a parameter for each local it merges.
// The compiler spills a value live across a call to a slot of its
// own (8 bytes), never reused within the frame, so the frame grows with
// the values a function makes, not only with its locals: a function
// keeping 4,000 sums across a recursive call has a frame of 32 KiB, one of
// 100 locals changed inside 100 nested loops 85 KiB. A
// FrameValue of twice a slot leaves room for the temporaries a value's
// lowering makes. It saturates at limit+1 (a frame over the limit traps
// on entry whatever its size).
func (m *metering) frameSize(code []byte, locals, results uint64, limit uint32) (uint32, error) {
	values := locals + results + 64
	r := reader{b: code}
	for !r.done() {
		op := r.byte()
		values++
		if op >= 0x02 && op <= 0x05 { // block, loop, if, else: a block of SSA
			values += locals
		}
		switch op {
		case 0x02, 0x03, 0x04: // block, loop, if
			if op == opLoop {
				values += 16
			}
			if len(r.b) > 0 {
				switch r.b[0] {
				case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
				default:
					if t := (&reader{b: r.b}).s64(); t >= 0 {
						values += m.values(uint64(t))
					}
				}
			}
		case 0x10, 0x12: // call, return_call
			if idx := (&reader{b: r.b}).u32(); int(idx) < len(m.funcType) {
				values += m.values(uint64(m.funcType[idx]))
			}
		case 0x11, 0x13: // call_indirect, return_call_indirect
			values += m.values(uint64((&reader{b: r.b}).u32()))
		}
		if err := r.skipImmediates(op); err != nil {
			return 0, err
		}
	}
	if r.err != nil {
		return 0, r.err
	}
	// A signature's values are at most the bytes of the type section, so
	// values is below the module's length squared: capped, the product
	// cannot overflow.
	if size := FrameBase + min(values, 1<<40)*FrameValue; size <= uint64(limit) {
		return uint32(size), nil
	}
	return limit + 1, nil
}

// stackEntry is the check at a function's entry that bounds the call
// stack: it adds the function's frame size to the stack global, keeping
// the sum in a local added for it ($base), and traps when the sum passes
// the limit, with the global at StackExceeded so the host can tell:
//
//	global.get $stack; i32.const size; i32.add; local.tee $base; i32.const limit; i32.gt_u
//	if; i32.const -1; global.set $stack; unreachable; end
//	local.get $base; global.set $stack
//
// After each call of a module function the caller sets the global back to
// its $base (stackRestore): however the callee left (return, its end, a
// branch to its outermost label), it resumes in its caller, so no way out
// of a function needs rewriting. Before a tail call, whose callee replaces
// the frame, the global goes back to what it was at entry. A trap ends the
// instance (the host discards it); a host function runs on Go's stack. The
// host sets the global to 0 before each call: an export returning to the
// host leaves its own frame counted.
func (m *metering) stackEntry(size uint32, base uint32) []byte {
	g := appendU32(nil, m.stack)
	l := appendU32(nil, base)
	b := append([]byte{opGlobalGet}, g...)
	b = append(append(b, opI32Const), appendS64(nil, int64(size))...)
	b = append(b, 0x6A /* i32.add */, 0x22 /* local.tee */)
	b = append(b, l...)
	b = append(append(b, opI32Const), appendS64(nil, int64(m.stackLimit))...)
	b = append(b, 0x4B /* i32.gt_u */, 0x04 /* if */, 0x40, opI32Const, 0x7F /* -1 */, 0x24 /* global.set */)
	b = append(b, g...)
	b = append(b, 0x00 /* unreachable */, opEnd, 0x20 /* local.get */)
	b = append(b, l...)
	b = append(b, 0x24 /* global.set */)
	return append(b, g...)
}

// stackRestore sets the stack global to $base (after a call), or, with
// size, to $base - size (before a tail call).
func (m *metering) stackRestore(base, size uint32) []byte {
	b := append([]byte{0x20 /* local.get */}, appendU32(nil, base)...)
	if size != 0 {
		b = append(append(b, opI32Const), appendS64(nil, int64(size))...)
		b = append(b, 0x6B /* i32.sub */)
	}
	b = append(b, 0x24 /* global.set */)
	return append(b, appendU32(nil, m.stack)...)
}

// hostImport is an imported function: its name and type index.
type hostImport struct {
	module, name string
	typ          uint32
}

func countImports(secs []section) (funcs uint32, globals int, fns []hostImport, err error) {
	n := 0
	for _, s := range secs {
		if s.id != secImport {
			continue
		}
		r := reader{b: s.content}
		count := r.u32()
		for i := uint32(0); i < count && r.err == nil; i++ {
			module := string(r.bytes(int(r.u32())))
			name := string(r.bytes(int(r.u32())))
			switch kind := r.byte(); kind {
			case 0: // func
				fns = append(fns, hostImport{module, name, r.u32()})
				funcs++
			case 1: // table
				r.byte()
				r.limits()
			case 2: // memory
				r.limits()
			case kindGlobal:
				r.byte()
				r.byte()
				n++
			default:
				return 0, 0, nil, fmt.Errorf("%w: import kind %d", ErrMalformed, kind)
			}
		}
		if r.err != nil {
			return 0, 0, nil, fmt.Errorf("%w: import section: %v", ErrMalformed, r.err)
		}
	}
	return funcs, n, fns, nil
}

// appendToVec appends one element to a vector-shaped section.
func appendToVec(content, elem []byte) ([]byte, error) {
	r := reader{b: content}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, r.err)
	}
	out := appendU32(nil, n+1)
	out = append(out, r.b...)
	return append(out, elem...), nil
}

func (m *metering) instrumentCode(content []byte) ([]byte, error) {
	r := reader{b: content}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(content)+len(content)/8), n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		fn := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("%w: code section, function %d: %v", ErrMalformed, i, r.err)
		}
		var err error
		body, err = m.instrumentBody(body[:0], fn, m.importedFuncs+i)
		if err != nil {
			return nil, fmt.Errorf("meter: function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if !r.done() {
		return nil, fmt.Errorf("%w: trailing bytes in the code section", ErrMalformed)
	}
	return out, nil
}

func (m *metering) instrumentBody(out, fn []byte, idx uint32) ([]byte, error) {
	if int(idx) >= len(m.funcType) {
		return nil, fmt.Errorf("%w: more bodies than functions", ErrMalformed)
	}
	t := m.funcType[idx]
	locals := m.sigParams[t]
	r := reader{b: fn}
	groups := r.u32()
	declared := r.b
	for i := uint32(0); i < groups && r.err == nil; i++ {
		locals += uint64(r.u32())
		r.byte()
	}
	if r.err != nil {
		return nil, r.err
	}
	if locals >= 1<<32-1 {
		return nil, fmt.Errorf("%w: %d locals", ErrMalformed, locals)
	}
	if m.locals += locals; m.locals > MaxModuleLocals {
		return nil, fmt.Errorf("the functions up to this one have %d locals (parameters included) in all, limit %d (compiling the module would take too long)",
			m.locals, MaxModuleLocals)
	}
	// The locals, with one i32 more: $base (stackEntry).
	base := uint32(locals)
	out = appendU32(out, groups+1)
	out = append(out, declared[:len(declared)-len(r.b)]...)
	out = append(out, 1, valI32)
	size, err := m.frameSize(r.b, locals+1, m.sigValues[t]-m.sigParams[t], m.stackLimit)
	if err != nil {
		return nil, err
	}
	// What compiling the function costs, which the module's size does not
	// bound (see MaxFunctionMerges).
	merges := m.merges(r.b, locals+1)
	if merges > MaxFunctionMerges {
		return nil, fmt.Errorf("%d locals merged at %d blocks and branch targets, limit %d (compiling it would take too much memory)",
			locals+1, merges/(locals+1), MaxFunctionMerges)
	}
	if m.mergeWork += merges * (locals + 1); m.mergeWork > MaxMergeWork {
		return nil, fmt.Errorf("the functions up to this one merge %d locals × locals, limit %d (compiling the module would take too long)",
			m.mergeWork, MaxMergeWork)
	}
	costs, err := scopeCosts(r.b, m.costs[:0])
	m.costs = costs
	if err != nil {
		return nil, err
	}
	out = append(out, m.stackEntry(size, base)...)
	out = append(out, checkSequence(m.globals, costs[0])...)
	scope := 0
	for !r.done() {
		start := len(fn) - len(r.b)
		op := r.byte()
		if op == 0x40 { // memory.grow: charged before it runs
			out = append(out, m.grow...)
		}
		if op == 0xFC { // a bulk instruction: charged by its length
			rest := reader{b: r.b}
			switch sub := rest.u32(); {
			case rest.err != nil:
			case sub == 15 || sub == 17:
				// table.grow and table.fill (reference types, outside
				// ABI v1): a table lives outside the memory limit and
				// filling one would need a helper per reference type.
				return nil, fmt.Errorf("meter: table.grow and table.fill are not supported (tables are bounded)")
			case m.bulk != nil && (sub == 8 || sub == 10 || sub == 11 || sub == 12 || sub == 14):
				out = append(out, m.bulk...)
			}
		}
		host := false
		if op == 0x10 || op == 0x12 { // call, return_call: a host function?
			rest := reader{b: r.b}
			if idx := rest.u32(); rest.err == nil && idx < m.importedFuncs {
				out = append(out, m.host...)
				out = append(out, m.charge[idx]...)
				host = true
			}
		}
		if op == 0x12 || op == 0x13 { // a tail call: this frame leaves
			out = append(out, m.stackRestore(base, size)...)
		}
		if op == 0xD2 { // ref.func: a host function as a reference?
			rest := reader{b: r.b}
			if idx := rest.u32(); rest.err == nil {
				if err := m.hostRef(idx); err != nil {
					return nil, err
				}
			}
		}
		if op == 0x10 || op == 0x12 || op == 0xD2 || op == 0x23 || op == 0x24 {
			rest := reader{b: r.b}
			idx, limit, what := rest.u32(), m.funcs, "function"
			if op == 0x23 || op == 0x24 {
				limit, what = m.globals, "global"
			}
			if rest.err == nil && idx >= limit {
				return nil, fmt.Errorf("%w: %s index %d out of range (the module has %d)", ErrMalformed, what, idx, limit)
			}
		}
		if err := r.skipImmediates(op); err != nil {
			return nil, err
		}
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, fn[start:len(fn)-len(r.b)]...)
		if (op == 0x10 && !host) || op == 0x11 { // back from a module function
			out = append(out, m.stackRestore(base, 0)...)
		}
		if op == opLoop {
			scope++
			out = append(out, checkSequence(m.globals, costs[scope])...)
		}
	}
	return out, nil
}

// errHostRef refuses a reference to an imported function: called through
// a table (call_indirect), a host call would escape the charge a direct
// call pays (HostCallCost), and a module has no need to.
var errHostRef = errors.New("meter: a reference to an imported (host) function, in a table or by ref.func, is not supported (call host functions directly)")

// hostRef refuses a reference to an imported function.
func (m *metering) hostRef(idx uint32) error {
	if idx < m.importedFuncs {
		return errHostRef
	}
	return nil
}

// checkElements refuses element segments holding imported functions.
func (m *metering) checkElements(content []byte) error {
	r := reader{b: content, ref: m.hostRef}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if _, err := r.elementSegment(); errors.Is(err, errHostRef) {
			return err
		} else if err != nil {
			return fmt.Errorf("%w: element segment %d: %v", ErrMalformed, i, err)
		}
	}
	if r.err != nil {
		return fmt.Errorf("%w: element section: %v", ErrMalformed, r.err)
	}
	return nil
}

// checkConstRefs refuses a ref.func of an imported function in the
// constant expressions of a table section (initializers) or a global
// section: a funcref global or table holding one would let call_indirect
// call the host unmetered as an element segment would.
func (m *metering) checkConstRefs(id byte, content []byte) error {
	r := reader{b: content, ref: m.hostRef}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		var err error
		if id == 4 {
			_, err = r.table()
		} else if err = r.valType(); err == nil { // a global: type, mutability, initializer
			r.byte()
			err = r.constExpr()
		}
		if errors.Is(err, errHostRef) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, err)
		}
	}
	if r.err != nil {
		return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
	}
	return nil
}

// scopeCosts returns what each metered point of a function body charges:
// [0] for the function's entry, then one for each loop in the order the
// loops appear. A point charges the instructions of its scope (the body,
// or the loop's body) outside the loops nested in it.
//
// Why that bounds the work: between two metered points execution only
// moves forward (the one backward jump is to a loop head, itself metered),
// so on one entry of a function, or one iteration of a loop, each
// instruction of that scope's own code runs at most once; code of a nested
// loop runs under that loop's own charge, and code after a loop, reached by
// falling out of it or by a branch past it, is the enclosing scope's own,
// charged at that scope's last head. Charging one step a point instead let
// a loop body of thousands of instructions run thousands of times longer
// than its budget said.
func scopeCosts(code []byte, costs []int64) ([]int64, error) {
	r := reader{b: code}
	costs = append(costs, PointCost)
	var open []int // the scope each open block, if or loop returns to at its end
	cur := 0
	for !r.done() {
		op := r.byte()
		costs[cur]++
		switch op {
		case 0x02, 0x04: // block, if: part of the scope they are in
			open = append(open, cur)
		case opLoop:
			open = append(open, cur)
			costs = append(costs, PointCost)
			cur = len(costs) - 1
		case opEnd:
			if n := len(open); n > 0 {
				cur, open = open[n-1], open[:n-1]
			}
		}
		if err := r.skipImmediates(op); err != nil {
			return costs, err
		}
	}
	return costs, r.err
}

// skipImmediates consumes the immediates of op.
func (r *reader) skipImmediates(op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0B || op == 0x0F || op == 0x1A || op == 0x1B || op == 0xD1:
	case op == 0x02 || op == 0x03 || op == 0x04:
		r.blockType()
	case op == 0x0C || op == 0x0D || op == 0x10 || op == 0x12 || op == 0xD2:
		r.u32()
	case op == 0x0E:
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13:
		r.u32()
		r.u32()
	case op == 0x1C:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.byte()
		}
	case op >= 0x20 && op <= 0x26:
		r.u32()
	case op >= 0x28 && op <= 0x3E:
		align := r.u32()
		if align&0x40 != 0 {
			return fmt.Errorf("meter: multiple memories are not supported")
		}
		r.u32()
	case op == 0x3F || op == 0x40:
		r.u32()
	case op == 0x41:
		r.s64()
	case op == 0x42:
		r.s64()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op >= 0x45 && op <= 0xC4:
	case op == 0xD0:
		r.byte()
	case op == 0xFC:
		switch sub := r.u32(); {
		case sub <= 7:
		case sub == 8:
			r.u32()
			r.u32()
		case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
			r.u32()
		case sub == 10 || sub == 12 || sub == 14:
			r.u32()
			r.u32()
		case sub == 11:
			r.u32()
		default:
			return fmt.Errorf("meter: unsupported instruction 0xFC %d", sub)
		}
	default:
		return fmt.Errorf("meter: unsupported instruction 0x%02X", op)
	}
	return nil
}

type reader struct {
	b   []byte
	err error
	// ref, if set, sees every function index that a constant expression
	// or an element segment names (funcRef).
	ref func(idx uint32) error
}

func (r *reader) done() bool { return len(r.b) == 0 || r.err != nil }

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("unexpected end of data")
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("LEB128 too long")
	return 0
}

func (r *reader) s64() int64 {
	var v int64
	var shift uint
	for i := 0; i < 10; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	r.err = errors.New("LEB128 too long")
	return 0
}

func (r *reader) blockType() {
	if len(r.b) == 0 {
		r.fail()
		return
	}
	switch r.b[0] {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		r.b = r.b[1:]
	default:
		r.s64() // a type index, as s33
	}
}

func (r *reader) name() { r.bytes(int(r.u32())) }

func (r *reader) limits() {
	switch flag := r.byte(); flag {
	case 0:
		r.u32()
	case 1:
		r.u32()
		r.u32()
	default:
		r.err = fmt.Errorf("limits flag %d", flag)
	}
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
