//go:build !unix

package gateway

func fdLimit() (uint64, bool) { return 0, false }
