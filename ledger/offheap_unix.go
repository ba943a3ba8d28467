//go:build unix

package ledger

import (
	"sync/atomic"
	"syscall"
	"unsafe"
)

// mapWords returns n zeroed words of anonymous memory mapped outside the Go
// heap, and the mapping to pass to unmapWords once nothing refers to the
// words; or, if the mapping fails, n words of the Go heap and a nil mapping.
//
// Key filters live here because they are large, live as long as the store
// and hold no pointers: in the Go heap they only raise the collector's goal.
// At 50 million entries they are ≈ 2 GiB, the default GOGC lets the heap
// grow by as much again between collections, and every short-lived
// allocation of a request then lands in memory that has fallen out of the
// caches and must be zeroed anew: mallocgc took 2.8 s of a 22.6 s profile
// against 0.6–0.9 s on an empty ledger, and the gateway kept 55–61 % of an
// empty ledger's throughput (bench/RESULTS.md). Outside the heap they cost
// the collector nothing (VictoriaMetrics' fastcache maps its chunks for the
// same reason: "so GOGC won't take into account cache size").
//
// The mapping does not ask for huge pages: MADV_HUGEPAGE on the filter
// words was measured to change nothing (bench/RESULTS.md, "Transparent huge
// pages for the key filters"); a probe's cost is the DRAM miss.
func mapWords(n uint64) ([]atomic.Uint64, []byte) {
	if n == 0 {
		return nil, nil
	}
	size := n * 8
	if size/8 != n || size > 1<<46 {
		panic("ledger: key filter size overflows")
	}
	mem, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]atomic.Uint64, n), nil
	}
	return unsafe.Slice((*atomic.Uint64)(unsafe.Pointer(unsafe.SliceData(mem))), n), mem
}

// unmapWords releases a mapping mapWords returned. It runs as a cleanup of
// the filterLink that held the words (newFilterLinkOf), so no lookup can be
// using them.
func unmapWords(mem []byte) {
	// Only an invalid mapping fails to unmap: there is nothing to do.
	_ = syscall.Munmap(mem)
	if f := unmapped.Load(); f != nil {
		(*f)(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))
	}
}

// unmapped, when a test sets it, is told the address of every mapping
// unmapWords has released. /proc/self/maps cannot tell: the kernel merges
// adjacent anonymous mappings into one line, and reuses a released range
// for the next mapping of the same size.
var unmapped atomic.Pointer[func(addr uintptr)]
