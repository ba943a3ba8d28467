//go:build linux

package ledger

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
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

	// Dropped, its mapping is released by the link's cleanup. (Other
	// tests' filters are released meanwhile too, so the mapping itself is
	// looked for, not the count.)
	st := f.state.Load()
	start := uintptr(unsafe.Pointer(&st.links[0].words[0]))
	mapping := fmt.Appendf(nil, "%x-%x ", start, start+size)
	if !bytes.Contains(procMaps(t), mapping) {
		t.Fatalf("no mapping %s in /proc/self/maps", mapping)
	}
	st, f = nil, nil
	deadline := time.Now().Add(10 * time.Second)
	for bytes.Contains(procMaps(t), mapping) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still mapped 10 s after the filter was dropped", mapping)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func procMaps(t *testing.T) []byte {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
