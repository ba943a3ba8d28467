package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel stop the child if the bench dies, so that
// no server is left running on a port after a crash or kill -9.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
