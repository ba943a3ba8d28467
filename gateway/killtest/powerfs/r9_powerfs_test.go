package powerfs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSkipsWhereMountsAreRefused: root with /dev/fuse but without the
// right to mount (a container given the device but not CAP_SYS_ADMIN)
// skips the power-cut tests; they failed there, each at its mount.
func TestSkipsWhereMountsAreRefused(t *testing.T) {
	if os.Getenv("POWERFS_CHILD") != "" {
		t.Skip("the child runs TestPowerCut only")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
	capsh, err := exec.LookPath("capsh")
	if err != nil {
		t.Skip("no capsh to drop CAP_SYS_ADMIN with")
	}
	cmd := exec.Command(capsh, "--drop=cap_sys_admin", "--", "-c", `exec "$0" -test.run '^TestPowerCut$' -test.v`, os.Args[0])
	cmd.Env = append(os.Environ(), "POWERFS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- SKIP: TestPowerCut") {
		t.Fatalf("without CAP_SYS_ADMIN: %v\n%s", err, out)
	}
}
