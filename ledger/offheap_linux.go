package ledger

import "syscall"

func madviseHugePages(mem []byte) {
	// A hint; a kernel without transparent huge pages says EINVAL.
	_ = syscall.Madvise(mem, syscall.MADV_HUGEPAGE)
}
