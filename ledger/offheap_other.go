//go:build !unix

package ledger

import "sync/atomic"

// mapWords returns n words of the Go heap: this platform has no mmap here.
func mapWords(n uint64) ([]atomic.Uint64, []byte) { return make([]atomic.Uint64, n), nil }

func unmapWords([]byte) {}
