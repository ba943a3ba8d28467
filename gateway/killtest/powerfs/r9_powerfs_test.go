package powerfs

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
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

// TestPowerCutTornKeepsNamesWithoutTheirData: a torn cut may also keep
// names not synced (a journal commits them on its own), with whatever of
// their data reached the disk: the renamed-into-place file whose bytes
// were never synced, empty. Before, only data was torn, so a writer that
// renamed unsynced bytes over a good file and never synced the directory
// could not be told from one that got it right: the cut always put the
// old file back. A rename is kept or undone whole: the name never ends
// up with neither file.
func TestPowerCutTornKeepsNamesWithoutTheirData(t *testing.T) {
	f, backing, mnt := mountT(t, Options{})
	seen := map[string]bool{}
	for seed := int64(1); seed <= 24; seed++ {
		writeSynced(t, filepath.Join(mnt, "cur"), "old")
		syncDir(t, mnt)
		// Not synced: the new file's bytes, and both names.
		tmp := filepath.Join(mnt, "cur.tmp")
		if err := os.WriteFile(tmp, []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mnt, "cur")); err != nil {
			t.Fatal(err)
		}
		if _, err := f.PowerCutTorn(rand.New(rand.NewSource(seed))); err != nil {
			t.Fatal(err)
		}
		got := names(t, backing)
		switch got {
		case "cur=old", "cur=", "cur=new":
			seen[got] = true
		default:
			t.Fatalf("seed %d: after a torn cut %q, want cur=old, or cur= or cur=new (the rename kept, its page lost or kept)", seed, got)
		}
		if err := f.Remount(); err != nil {
			t.Fatal(err)
		}
	}
	if !seen["cur=old"] || !seen["cur="] {
		t.Fatalf("24 torn cuts: %v; want both the rename undone and kept", seen)
	}
}
