package killtest

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"medgate/gateway/killtest/powerfs"
)

// TestPowerLossCleansUpAfterAFailure: a power-loss test that fails while
// the gateway serves from the mount leaves neither the gateway running
// nor the mount behind (it left both: the unmount waited for the files
// the live gateway held open, gave up, and the gateway outlived the test
// on a mount whose server was gone).
func TestPowerLossCleansUpAfterAFailure(t *testing.T) {
	if os.Getenv("MEDGATE_POWERFS_MIDWAY") != "" {
		t.Skip("run by the test itself")
	}
	readEnv(t)
	if err := powerfs.Available(); err != nil {
		t.Skipf("the power-cut tests need a FUSE mount: %v", err)
	}
	note := filepath.Join(t.TempDir(), "note")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPowerLossFailsMidway$", "-test.v")
	cmd.Env = append(os.Environ(), "MEDGATE_POWERFS_MIDWAY="+note)
	out, err := cmd.CombinedOutput()
	b, rerr := os.ReadFile(note)
	f := strings.Fields(string(b))
	if rerr != nil || len(f) != 3 {
		t.Fatalf("the failing run did not get as far as serving: %v %v\n%s", err, rerr, out)
	}
	pid, _ := strconv.Atoi(f[0])
	mnt, dir := f[1], f[2]
	if err == nil || !strings.Contains(string(out), "failing on purpose") {
		t.Fatalf("the run meant to fail: %v\n%s", err, out)
	}
	alive := syscall.Kill(pid, 0) == nil
	mounted := isMounted(t, mnt)
	// Clean up whatever it left, whether or not the test passes.
	if alive {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if mounted {
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
	os.RemoveAll(dir)
	if alive || mounted {
		t.Fatalf("after a failure: gateway %d still running %v, %s still mounted %v\n%s", pid, alive, mnt, mounted, tail(string(out), 10))
	}
}

// TestPowerLossFailsMidway is TestPowerLossCleansUpAfterAFailure's
// failing run: it fails with the gateway serving from the mount.
func TestPowerLossFailsMidway(t *testing.T) {
	note := os.Getenv("MEDGATE_POWERFS_MIDWAY")
	if note == "" {
		t.Skip("run by TestPowerLossCleansUpAfterAFailure")
	}
	_, mnt, _ := powerMount(t, powerfs.Options{})
	p := start(t, filepath.Join(mnt, "db"))
	p.ready(t, 60*time.Second)
	if err := os.WriteFile(note, []byte(strconv.Itoa(p.cmd.Process.Pid)+" "+mnt+" "+filepath.Dir(mnt)), 0o644); err != nil {
		t.Error(err)
	}
	t.Fatal("failing on purpose, the gateway serving")
}

func isMounted(t *testing.T, mnt string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no /proc/self/mountinfo")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fs := strings.Fields(s.Text()); len(fs) > 4 && fs[4] == mnt {
			return true
		}
	}
	return false
}
