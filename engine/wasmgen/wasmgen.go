// Package wasmgen assembles small WebAssembly binaries for tests: hostile
// and broken policy modules that no compiler would emit on purpose (a loop in
// the start function, a 4 GiB memory, a forbidden import, a lying answer).
package wasmgen

// Value types.
const (
	I32 byte = 0x7f
	I64 byte = 0x7e
)

// Instructions used by tests.
const (
	OpUnreachable = 0x00
	OpLoop        = 0x03
	OpEnd         = 0x0b
	OpBr          = 0x0c
	OpCall        = 0x10
	OpDrop        = 0x1a
	OpI32Const    = 0x41
	OpI64Const    = 0x42
	OpMemoryGrow  = 0x40
	BlockVoid     = 0x40
)

// Func is a function: its signature, body (without the final end), the
// name it is exported under ("" for none) and how many i32 locals it
// declares after its params.
type Func struct {
	Params, Results []byte
	Body            []byte
	Export          string
	Locals          uint32
}

// Import is an imported function, or with Global set an imported
// immutable global of that value type.
type Import struct {
	Module, Name    string
	Params, Results []byte
	Global          byte
}

// Module describes a module to assemble.
type Module struct {
	Imports   []Import
	Funcs     []Func // indexes follow the imports
	MemoryMin uint32
	MemoryMax *uint32
	NoMemory  bool
	Start     *uint32 // function index of the start function
	Data      []Data
	// Table, when set, declares one funcref table with these limits.
	Table *Limits
	// Elements are element segments, each encoded whole (flags onward).
	Elements [][]byte
	// Passive are passive data segments (for memory.init), numbered
	// after Data's active ones.
	Passive [][]byte
}

// Limits are a table's limits; Max nil: none.
type Limits struct {
	Min uint32
	Max *uint32
}

// Data is an active data segment at a constant offset of memory 0.
type Data struct {
	Offset uint32
	Bytes  []byte
}

// Bytes assembles m.
func (m *Module) Bytes() []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	var types [][]byte
	typeIndex := func(params, results []byte) uint32 {
		t := append([]byte{0x60}, vecBytes(params)...)
		t = append(t, vecBytes(results)...)
		for i, x := range types {
			if string(x) == string(t) {
				return uint32(i)
			}
		}
		types = append(types, t)
		return uint32(len(types) - 1)
	}
	var imports, funcs, exports, code []byte
	nImports := uint32(0) // imported functions
	for _, im := range m.Imports {
		imports = append(imports, name(im.Module)...)
		imports = append(imports, name(im.Name)...)
		if im.Global != 0 {
			imports = append(imports, 0x03, im.Global, 0x00)
			continue
		}
		imports = append(imports, 0x00)
		imports = append(imports, U32(typeIndex(im.Params, im.Results))...)
		nImports++
	}
	nExports := 0
	for i, f := range m.Funcs {
		funcs = append(funcs, U32(typeIndex(f.Params, f.Results))...)
		body := []byte{0x00} // no locals
		if f.Locals > 0 {
			body = append(append([]byte{1}, U32(f.Locals)...), I32)
		}
		body = append(body, f.Body...)
		body = append(body, OpEnd)
		code = append(code, U32(uint32(len(body)))...)
		code = append(code, body...)
		if f.Export != "" {
			exports = append(exports, name(f.Export)...)
			exports = append(exports, 0x00)
			exports = append(exports, U32(nImports+uint32(i))...)
			nExports++
		}
	}
	if !m.NoMemory {
		exports = append(exports, name("memory")...)
		exports = append(exports, 0x02, 0x00)
		nExports++
	}
	var typeSec []byte
	for _, t := range types {
		typeSec = append(typeSec, t...)
	}
	out = section(out, 1, len(types), typeSec)
	if len(m.Imports) > 0 {
		out = section(out, 2, len(m.Imports), imports)
	}
	out = section(out, 3, len(m.Funcs), funcs)
	if m.Table != nil {
		lim := append([]byte{0x70, 0x00}, U32(m.Table.Min)...)
		if m.Table.Max != nil {
			lim = append([]byte{0x70, 0x01}, U32(m.Table.Min)...)
			lim = append(lim, U32(*m.Table.Max)...)
		}
		out = section(out, 4, 1, lim)
	}
	if !m.NoMemory {
		var lim []byte
		if m.MemoryMax != nil {
			lim = append([]byte{0x01}, U32(m.MemoryMin)...)
			lim = append(lim, U32(*m.MemoryMax)...)
		} else {
			lim = append([]byte{0x00}, U32(m.MemoryMin)...)
		}
		out = section(out, 5, 1, lim)
	}
	out = section(out, 7, nExports, exports)
	if m.Start != nil {
		out = append(out, 8)
		s := U32(*m.Start)
		out = append(out, U32(uint32(len(s)))...)
		out = append(out, s...)
	}
	if len(m.Elements) > 0 {
		var elems []byte
		for _, e := range m.Elements {
			elems = append(elems, e...)
		}
		out = section(out, 9, len(m.Elements), elems)
	}
	if len(m.Passive) > 0 {
		out = section(out, 12, len(m.Data)+len(m.Passive), nil) // data count
	}
	out = section(out, 10, len(m.Funcs), code)
	if len(m.Data)+len(m.Passive) > 0 {
		var data []byte
		for _, d := range m.Data {
			data = append(data, 0x00, OpI32Const)
			data = append(data, S64(int64(int32(d.Offset)))...)
			data = append(data, OpEnd)
			data = append(data, U32(uint32(len(d.Bytes)))...)
			data = append(data, d.Bytes...)
		}
		for _, d := range m.Passive {
			data = append(data, 0x01)
			data = append(data, U32(uint32(len(d)))...)
			data = append(data, d...)
		}
		out = section(out, 11, len(m.Data)+len(m.Passive), data)
	}
	return out
}

func section(out []byte, id byte, n int, body []byte) []byte {
	content := append(U32(uint32(n)), body...)
	out = append(out, id)
	out = append(out, U32(uint32(len(content)))...)
	return append(out, content...)
}

func vecBytes(b []byte) []byte { return append(U32(uint32(len(b))), b...) }

func name(s string) []byte { return append(U32(uint32(len(s))), s...) }

// U32 is the unsigned LEB128 encoding of v.
func U32(v uint32) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

// S64 is the signed LEB128 encoding of v.
func S64(v int64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

// I32Const is the instruction pushing v.
func I32Const(v int32) []byte { return append([]byte{OpI32Const}, S64(int64(v))...) }

// I64Const is the instruction pushing v.
func I64Const(v int64) []byte { return append([]byte{OpI64Const}, S64(v)...) }

// Forever is a body that never ends: loop br 0 end.
func Forever() []byte { return []byte{OpLoop, BlockVoid, OpBr, 0, OpEnd} }

// Concat joins instruction sequences.
func Concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Policy returns a module with the three ABI exports: abi_version returns
// version, input_buffer returns inputAt, and settle runs settleBody (which
// must leave an i64 on the stack).
func Policy(version int32, inputAt int32, settleBody []byte) *Module {
	return &Module{
		MemoryMin: 2,
		Funcs: []Func{
			{Results: []byte{I32}, Body: I32Const(version), Export: "abi_version"},
			{Params: []byte{I32}, Results: []byte{I32}, Body: I32Const(inputAt), Export: "input_buffer"},
			{Params: []byte{I32}, Results: []byte{I64}, Body: settleBody, Export: "settle"},
		},
	}
}

// Answer returns a settle body that answers the size bytes stored at at.
func Answer(at, size uint32) []byte { return I64Const(int64(at)<<32 | int64(size)) }
