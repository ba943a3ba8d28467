package bench

import (
	"os"
	"syscall"
)

// syncData is fdatasync, as Pebble syncs its WAL on Linux.
func syncData(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
