//go:build unix

package gateway

import "syscall"

// fdLimit is the file descriptors the process may open (Go raises the
// soft limit to the hard one at start); none if unlimited or past 2^31.
func fdLimit() (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<31 {
		return 0, false
	}
	return l.Cur, true
}
