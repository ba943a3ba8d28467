package powerfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mountT(t *testing.T, opts Options) (f *FS, backing, mnt string) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	backing, mnt = t.TempDir(), t.TempDir()
	f, err := Mount(backing, mnt, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Unmount() })
	return f, backing, mnt
}

func readT(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPowerCut: after the cut, every file holds exactly what its last
// sync covered, whatever happened to it since: appended to, overwritten
// below the synced size, truncated, recreated, never synced.
func TestPowerCut(t *testing.T) {
	f, backing, mnt := mountT(t, Options{})

	a, err := os.Create(filepath.Join(mnt, "append"))
	if err != nil {
		t.Fatal(err)
	}
	a.WriteString("synced.")
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	a.WriteString("lost")
	a.Close()

	o, err := os.Create(filepath.Join(mnt, "overwrite"))
	if err != nil {
		t.Fatal(err)
	}
	o.WriteString("0123456789")
	o.Sync()
	o.WriteAt([]byte("ab"), 2)
	o.WriteAt([]byte("XYZ"), 8) // across the synced end
	o.WriteAt([]byte("cd"), 3)  // the same range twice: the oldest bytes win
	o.Close()

	tr, _ := os.Create(filepath.Join(mnt, "truncate"))
	tr.WriteString("keep this")
	tr.Sync()
	tr.Truncate(2)
	tr.WriteString("!")
	tr.Close()

	n, _ := os.Create(filepath.Join(mnt, "never"))
	n.WriteString("never synced")
	n.Close()

	r, _ := os.Create(filepath.Join(mnt, "recreated"))
	r.WriteString("old, synced")
	r.Sync()
	r.Close()
	if err := os.WriteFile(filepath.Join(mnt, "recreated"), []byte("new"), 0o644); err != nil { // O_TRUNC
		t.Fatal(err)
	}

	if got := readT(t, filepath.Join(mnt, "append")); got != "synced.lost" {
		t.Fatalf("through the mount before the cut: %q", got)
	}
	if f.Syncs() != 4 {
		t.Fatalf("%d syncs recorded, want 4", f.Syncs())
	}
	lost, err := f.PowerCut()
	if err != nil {
		t.Fatal(err)
	}
	// append: "lost" (4); overwrite: "ab", "XYZ" (2 below the synced end,
	// 1 past it), "cd" (7); truncate: 7 truncated, "!" past the end (8);
	// never: 12; recreated: the 11 bytes O_TRUNC dropped.
	if want := int64(4 + 7 + 8 + 12 + 11); lost != want {
		t.Errorf("lost %d bytes, want %d", lost, want)
	}
	for name, want := range map[string]string{
		"append": "synced.", "overwrite": "0123456789", "truncate": "keep this",
		"never": "", "recreated": "old, synced",
	} {
		if got := readT(t, filepath.Join(backing, name)); got != want {
			t.Errorf("%s after the cut: %q, want %q", name, got, want)
		}
	}

	// Served again, the files are what the cut left, and durable as such.
	if err := f.Remount(); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, filepath.Join(mnt, "overwrite")); got != "0123456789" {
		t.Fatalf("remounted: %q", got)
	}
	a, err = os.OpenFile(filepath.Join(mnt, "append"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	a.WriteString("gone")
	a.Close()
	if lost, err := f.PowerCut(); err != nil || lost != 4 {
		t.Fatalf("second cut: lost %d, %v", lost, err)
	}
	if got := readT(t, filepath.Join(backing, "append")); got != "synced." {
		t.Fatalf("second cut: %q", got)
	}
}

// TestIgnoreSync: a lying sync is answered but keeps nothing.
func TestIgnoreSync(t *testing.T) {
	f, backing, mnt := mountT(t, Options{IgnoreSync: func(name string) bool { return strings.HasSuffix(name, ".log") }})
	for _, name := range []string{"000001.log", "MANIFEST-000001"} {
		w, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString("data")
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	if _, err := f.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(backing, "000001.log")); len(got) != 0 {
		t.Fatalf("a file whose syncs were ignored kept %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(backing, "MANIFEST-000001")); !bytes.Equal(got, []byte("data")) {
		t.Fatalf("a synced file lost its data: %q", got)
	}
}
