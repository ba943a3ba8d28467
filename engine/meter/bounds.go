package meter

import (
	"encoding/binary"
	"fmt"
)

// MaxTableElements bounds the references a module's tables declare in
// all. A reference takes eight bytes outside the memory limit, and wazero
// allows 2^27 a table. The standard Go toolchain declares one table of a
// few thousand.
const MaxTableElements = 1 << 20

// MaxGlobals bounds the globals a module defines: each lives outside the
// memory limit (3,000,000 globals took 126 MiB an instance). The standard
// Go toolchain defines about ten.
const MaxGlobals = 1 << 16

// MaxElements bounds the references a module's element segments hold in
// all, passive ones included: like a table's, each lives outside the
// memory limit, in every instance, and is built at every instantiation
// (15,000,000 took 292 MiB and 3.2 s an instance).
const MaxElements = MaxTableElements

// MaxFunctionBody bounds one function's code. Compiling a function takes
// memory in proportion to its size, about 650 bytes a byte for straight-line
// code (a module of one 2.4 MB function took 1.7 GiB and 6 s to compile, a
// 2.4 MB module of Go's 1,654 functions 47 MiB and 0.9 s), so this bounds
// what checking an upload costs at about 170 MiB for such code; a function
// made only of calls costs more (one of 256 KiB peaked at 264 MiB). The
// standard Go toolchain's largest function is about 29 KB.
const MaxFunctionBody = 256 << 10

// MaxLocals bounds the locals of one function (as browsers do: V8 allows
// 50,000). The standard Go toolchain's functions declare a few dozen.
const MaxLocals = 50_000

// MaxFunctions bounds the functions a module defines: each costs the
// compiled module about 800 bytes and the check about 30 µs, whatever its
// size, and an empty one takes 4 bytes (a 4 MB module of a million took
// 32 s and 820 MiB to check). The reference policies, built by the Go
// toolchain, define 1,654.
const MaxFunctions = 1 << 16

// MaxDataSegments bounds a module's data segments: like an element, each
// costs every instance a slot (24 bytes) outside the memory limit, and an
// empty one takes 3 bytes (2,000,000 held 46 MiB an instance). The
// reference policies, built by the Go toolchain, declare 28,451.
const MaxDataSegments = 1 << 18

// MaxTypes and MaxImports bound the types a module declares and the
// functions it imports. Compiling each function walks every type (100,000
// types made 1,000 empty functions take 2.8 s to compile), and Instrument
// adds a type and a function for each charged import (10,000 imports of
// random_get took 4.8 s to check, 100,000 more than 5 minutes). The
// reference policies declare 14 types and import 16 functions; WASI has
// 46.
const (
	MaxTypes   = 1 << 10
	MaxImports = 1 << 10
)

// MaxParams bounds the parameters of a function type (as browsers do: V8
// allows 1,000). Compiling a function takes time growing with the square
// of its parameters: one of 100,000 i32s took 23 s, one of 1,000,000 (a 1
// MB module) would take most of an hour. The standard Go toolchain's
// functions take a few.
const MaxParams = 1_000

// MaxResults bounds the results of a function type likewise (V8 allows
// 1,000): compiling a function takes time growing with the square of its
// results too (one returning 80,000 i32s, a 240 KB module, took 10 s; one
// of 120,000, its body still within MaxFunctionBody, 23 s). The standard
// Go toolchain's functions return one value at most.
const MaxResults = 1_000

// CheckBounds refuses a module whose declared counts cannot be true: a
// vector claiming more entries than the bytes that follow could hold
// (every entry of every vector takes at least one byte, most more), or a
// function declaring more than MaxLocals locals. wazero's decoder
// allocates a vector from its declared count before reading it, so a
// 15-byte module claiming 4 billion tables made it ask for 150 GiB and
// the whole process die of it; with the counts checked first, what the
// decoder allocates is bounded by a constant times the module's size.
//
// It walks every section that holds vectors (types, imports, functions,
// tables, memories, globals, exports, elements, code, data, tags) with
// their nested vectors and constant expressions, and refuses a construct it
// does not know rather than pass it on unchecked. Function bodies past
// their locals are not read (Instrument and wazero validate them).
func CheckBounds(wasm []byte) error {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return fmt.Errorf("%w: not a WebAssembly 1.0 binary", ErrMalformed)
	}
	r := reader{b: wasm[8:]}
	for !r.done() {
		id := r.byte()
		content := r.bytes(int(r.u32()))
		if r.err != nil {
			return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		if err := checkSection(id, content); err != nil {
			return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, err)
		}
	}
	return nil
}

// bounded reads a vector count whose entries take at least min bytes each.
func (r *reader) bounded(min int, what string) uint32 {
	n := r.u32()
	if r.err == nil && uint64(n)*uint64(min) > uint64(len(r.b)) {
		r.err = fmt.Errorf("%d %s declared in %d bytes", n, what, len(r.b))
	}
	return n
}

func checkSection(id byte, content []byte) error {
	r := reader{b: content}
	var n uint32
	switch id {
	case 0, 8, 12: // custom, start, data count: no vectors
		return nil
	case 1:
		if n = r.bounded(3, "types"); r.err == nil && n > MaxTypes {
			return fmt.Errorf("%d types, limit %d", n, MaxTypes)
		}
	case 2:
		if n = r.bounded(4, "imports"); r.err == nil && n > MaxImports {
			return fmt.Errorf("%d imports, limit %d", n, MaxImports)
		}
	case 3:
		if n = r.bounded(1, "functions"); r.err == nil && n > MaxFunctions {
			return fmt.Errorf("%d functions, limit %d", n, MaxFunctions)
		}
		return r.err
	case 4:
		n = r.bounded(3, "tables")
	case 5:
		r.bounded(2, "memories")
		return r.err
	case 6:
		if n = r.bounded(4, "globals"); r.err == nil && n > MaxGlobals {
			return fmt.Errorf("%d globals, limit %d", n, MaxGlobals)
		}
	case 7:
		n = r.bounded(3, "exports")
	case 9:
		n = r.bounded(3, "element segments")
	case 10:
		n = r.bounded(3, "function bodies")
	case 11:
		if n = r.bounded(2, "data segments"); r.err == nil && n > MaxDataSegments {
			return fmt.Errorf("%d data segments, limit %d", n, MaxDataSegments)
		}
	case 13:
		r.bounded(2, "tags")
		return r.err
	default:
		return fmt.Errorf("unknown section")
	}
	var tableElems uint64
	for i := uint32(0); i < n && r.err == nil; i++ {
		var err error
		switch id {
		case 1:
			err = r.funcType()
		case 2:
			r.name() // module
			r.name() // field
			err = r.importDesc()
		case 4:
			var min uint64
			min, err = r.table()
			if tableElems += min; err == nil && tableElems > MaxTableElements {
				err = fmt.Errorf("tables declare %d references in all, limit %d", tableElems, MaxTableElements)
			}
		case 6:
			err = r.valType()
			r.byte() // mutability
			if err == nil {
				err = r.constExpr()
			}
		case 7:
			r.name()
			r.byte()
			r.u32()
		case 9:
			var k uint32
			k, err = r.elementSegment()
			if tableElems += uint64(k); err == nil && tableElems > MaxElements {
				err = fmt.Errorf("element segments hold %d references in all, limit %d", tableElems, MaxElements)
			}
		case 10:
			err = r.functionLocals()
		case 11:
			err = r.dataSegment()
		}
		if err != nil {
			return err
		}
	}
	return r.err
}

func (r *reader) funcType() error {
	if form := r.byte(); form != 0x60 {
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("type form 0x%02x", form)
	}
	for _, what := range []string{"parameters", "results"} {
		k := r.bounded(1, what)
		if what == "parameters" && k > MaxParams && r.err == nil {
			return fmt.Errorf("a function type of %d parameters, limit %d", k, MaxParams)
		}
		if what == "results" && k > MaxResults && r.err == nil {
			return fmt.Errorf("a function type of %d results, limit %d", k, MaxResults)
		}
		for j := uint32(0); j < k && r.err == nil; j++ {
			if err := r.valType(); err != nil {
				return err
			}
		}
	}
	return r.err
}

func (r *reader) valType() error {
	switch t := r.byte(); t {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F, 0x69:
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.s64()
	default:
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("value type 0x%02x", t)
	}
	return r.err
}

func (r *reader) importDesc() error {
	switch kind := r.byte(); kind {
	case 0:
		r.u32()
	case 1:
		_, err := r.tableType()
		return err
	case 2:
		r.memLimits()
	case 3:
		if err := r.valType(); err != nil {
			return err
		}
		r.byte()
	case 4:
		r.byte()
		r.u32()
	default:
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("import kind %d", kind)
	}
	return r.err
}

// tableType reads a table type and returns its minimum size.
func (r *reader) tableType() (uint64, error) {
	if err := r.valType(); err != nil {
		return 0, err
	}
	min := r.memLimits()
	return min, r.err
}

// memLimits reads limits with any flags (shared, 64-bit) and returns the
// minimum.
func (r *reader) memLimits() uint64 {
	flag := r.byte()
	var min uint64
	if flag&4 != 0 { // 64-bit limits
		min = uint64(r.s64())
	} else {
		min = uint64(r.u32())
	}
	if flag&1 != 0 {
		r.s64()
	}
	return min
}

// table reads a table and returns its minimum size.
func (r *reader) table() (uint64, error) {
	if len(r.b) >= 2 && r.b[0] == 0x40 && r.b[1] == 0x00 { // a table with an initializer
		r.b = r.b[2:]
		min, err := r.tableType()
		if err != nil {
			return 0, err
		}
		return min, r.constExpr()
	}
	return r.tableType()
}

// funcRef passes a function index that a constant expression or an element
// segment names to r.ref, if set.
func (r *reader) funcRef(idx uint32) error {
	if r.ref == nil || r.err != nil {
		return nil
	}
	return r.ref(idx)
}

// constExpr skips a constant expression up to its end.
func (r *reader) constExpr() error {
	for r.err == nil {
		op := r.byte()
		switch {
		case r.err != nil:
		case op == opEnd:
			return nil
		case op == 0xD2: // ref.func
			if err := r.funcRef(r.u32()); err != nil {
				return err
			}
		case op == 0x41 || op == 0x42 || op == 0x43 || op == 0x44 || op == 0x23 || op == 0xD0:
			if err := r.skipImmediates(op); err != nil {
				return err
			}
		case op == 0x6A || op == 0x6B || op == 0x6C || op == 0x7C || op == 0x7D || op == 0x7E: // extended constants
		case op == 0xFD: // v128.const
			if sub := r.u32(); sub != 12 {
				return fmt.Errorf("constant instruction 0xFD %d", sub)
			}
			r.bytes(16)
		default:
			return fmt.Errorf("constant instruction 0x%02X", op)
		}
	}
	return r.err
}

// elementSegment reads a segment and returns how many references it holds.
func (r *reader) elementSegment() (uint32, error) {
	flags := r.u32()
	if r.err != nil {
		return 0, r.err
	}
	if flags > 7 {
		return 0, fmt.Errorf("element segment flags %d", flags)
	}
	if flags&3 == 2 {
		r.u32() // table index
	}
	if flags&1 == 0 { // active: an offset
		if err := r.constExpr(); err != nil {
			return 0, err
		}
	}
	if flags&3 != 0 { // element kind or reference type
		if flags&4 != 0 {
			if err := r.valType(); err != nil {
				return 0, err
			}
		} else {
			r.byte()
		}
	}
	if flags&4 == 0 {
		k := r.bounded(1, "function indexes")
		for j := uint32(0); j < k && r.err == nil; j++ {
			if err := r.funcRef(r.u32()); err != nil {
				return 0, err
			}
		}
		return k, r.err
	}
	k := r.bounded(2, "element expressions")
	for j := uint32(0); j < k && r.err == nil; j++ {
		if err := r.constExpr(); err != nil {
			return 0, err
		}
	}
	return k, r.err
}

func (r *reader) functionLocals() error {
	size := r.u32()
	body := r.bytes(int(size))
	if r.err != nil {
		return r.err
	}
	if size > MaxFunctionBody {
		return fmt.Errorf("a function body of %d bytes, limit %d", size, MaxFunctionBody)
	}
	b := reader{b: body}
	groups := b.bounded(2, "local declarations")
	var total uint64
	for j := uint32(0); j < groups && b.err == nil; j++ {
		total += uint64(b.u32())
		if err := b.valType(); err != nil {
			return err
		}
		if total > MaxLocals {
			return fmt.Errorf("a function declares more than %d locals", MaxLocals)
		}
	}
	return b.err
}

func (r *reader) dataSegment() error {
	flags := r.u32()
	switch flags {
	case 0:
		if err := r.constExpr(); err != nil {
			return err
		}
	case 1:
	case 2:
		r.u32()
		if err := r.constExpr(); err != nil {
			return err
		}
	default:
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("data segment flags %d", flags)
	}
	r.bytes(int(r.bounded(1, "data bytes")))
	return r.err
}

// Import is an entry of a module's import section.
type Import struct {
	Module, Name string
	Kind         byte // 0 function, 1 table, 2 memory, 3 global, 4 tag
}

// KindName names an import kind.
func KindName(kind byte) string {
	switch kind {
	case 0:
		return "function"
	case 1:
		return "table"
	case 2:
		return "memory"
	case 3:
		return "global"
	case 4:
		return "tag"
	}
	return "unknown"
}

// Imports lists the imports of wasm, which must have passed CheckBounds.
func Imports(wasm []byte) ([]Import, error) {
	var out []Import
	r := reader{b: wasm[min(8, len(wasm)):]}
	for !r.done() {
		id := r.byte()
		content := r.bytes(int(r.u32()))
		if r.err != nil || id != 2 {
			continue
		}
		ir := reader{b: content}
		n := ir.u32()
		for i := uint32(0); i < n && ir.err == nil; i++ {
			mod := string(ir.bytes(int(ir.u32())))
			name := string(ir.bytes(int(ir.u32())))
			if ir.err != nil || len(ir.b) == 0 {
				break
			}
			kind := ir.b[0]
			if err := ir.importDesc(); err != nil {
				return nil, fmt.Errorf("%w: import section: %v", ErrMalformed, err)
			}
			out = append(out, Import{Module: mod, Name: name, Kind: kind})
		}
		if ir.err != nil {
			return nil, fmt.Errorf("%w: import section: %v", ErrMalformed, ir.err)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, r.err)
	}
	return out, nil
}
