//go:build linux

package ledger

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// TestFilterOffHeap checks that a key filter's words are outside the Go
// heap (so the collector's goal does not grow with the ledger), that they
// work as words, and that they are released once the filter is gone.
func TestFilterOffHeap(t *testing.T) {
	const capacity = 16 << 20 // keys: 32 MiB of words
	const size = capacity * keyFilterBitsPerKey / 8
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	f := newKeyFilterOf(capacity)
	keys := make([][]byte, 10000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "code-%d", i)
		f.add(keys[i])
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > size/8 {
		t.Errorf("the Go heap grew by %d bytes for a filter of %d", grew, size)
	}
	for _, k := range keys {
		if !f.mayContainBytes(k) {
			t.Fatalf("%s was added but is not found", k)
		}
	}
	var falsePos int
	for i := range 10000 {
		if f.mayContain(fmt.Sprintf("other-%d", i)) {
			falsePos++
		}
	}
	if falsePos > 20 {
		t.Errorf("%d false positives in 10000", falsePos)
	}

	// Its release is waited for through unmapWords' hook (other tests'
	// filters are released meanwhile too), installed while the filter is
	// surely alive (the KeepAlive below).
	st := f.state.Load()
	start := uintptr(unsafe.Pointer(&st.links[0].words[0]))
	released := make(chan struct{})
	var once sync.Once
	hook := func(addr uintptr) {
		if addr == start {
			once.Do(func() { close(released) })
		}
	}
	unmapped.Store(&hook)
	defer unmapped.Store(nil)

	// Mapped: some line of /proc/self/maps covers the words (the kernel
	// may have merged the mapping with a neighbour, so not an exact line).
	if !mappedRange(t, start, start+size) {
		t.Fatalf("%x-%x is not mapped (/proc/self/maps)", start, start+size)
	}
	runtime.KeepAlive(st)
	runtime.KeepAlive(f)

	// Dropped (nothing uses f or st after the KeepAlive), its mapping is
	// released by the link's cleanup.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		runtime.GC()
		select {
		case <-released:
			return
		case <-deadline:
			t.Fatalf("%x-%x was not released 10 s after the filter was dropped", start, start+size)
		case <-tick.C:
		}
	}
}

// mappedRange reports whether one line of /proc/self/maps covers [lo, hi).
func mappedRange(t *testing.T, lo, hi uintptr) bool {
	for _, line := range bytes.Split(procMaps(t), []byte("\n")) {
		var a, b uintptr
		if _, err := fmt.Sscanf(string(line), "%x-%x", &a, &b); err != nil {
			continue
		}
		if a <= lo && hi <= b {
			return true
		}
	}
	return false
}

func procMaps(t *testing.T) []byte {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
