//go:build wasip1

package sdk

import (
	"runtime/debug"
	"unsafe"

	"medgate/engine/abi"
)

// State reused across calls. An instance serves one call at a time.
var (
	inBuf  = make([]byte, 0, 4096)
	outBuf = make([]byte, 0, 1024)
	input  abi.Input
	output abi.Output
)

func init() {
	// A call allocates little and keeps nothing: collect less often
	// (Go's collector is single-threaded and slow in wasm).
	debug.SetGCPercent(800)
}

//go:wasmexport abi_version
func abiVersion() int32 { return abi.Version }

// inputBuffer returns the address of a buffer of at least size bytes, valid
// until the next call of input_buffer.
//
//go:wasmexport input_buffer
func inputBuffer(size int32) int32 {
	if size < 0 {
		panic("sdk: negative input size")
	}
	n := int(size)
	if cap(inBuf) < n {
		inBuf = make([]byte, n)
	}
	inBuf = inBuf[:n]
	return int32(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inBuf[:cap(inBuf)])))))
}

// settle decodes the size bytes of the input buffer, runs the policy and
// returns (ptr << 32) | len of the encoded Output, valid until the next call.
//
//go:wasmexport settle
func settle(size int32) int64 {
	if size < 0 || int(size) > cap(inBuf) {
		panic("sdk: input size exceeds the input buffer")
	}
	outBuf = Handle(registered, &input, &output, inBuf[:size], outBuf[:0])
	ptr := uint64(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(outBuf)))))
	return int64(ptr<<32 | uint64(uint32(len(outBuf))))
}
