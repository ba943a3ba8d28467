//go:build unix && !linux

package ledger

func madviseHugePages([]byte) {}
