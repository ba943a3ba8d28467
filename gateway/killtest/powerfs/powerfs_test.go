package powerfs

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
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

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func writeSynced(t *testing.T, p, data string) {
	t.Helper()
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
}

// names lists dir as "name=content ...", sorted.
func names(t *testing.T, dir string) string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if de.IsDir() {
			out = append(out, de.Name()+"/")
			continue
		}
		out = append(out, de.Name()+"="+readT(t, filepath.Join(dir, de.Name())))
	}
	return strings.Join(out, " ")
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
	syncDir(t, mnt) // the names are durable from here; the data as synced above

	if got := readT(t, filepath.Join(mnt, "append")); got != "synced.lost" {
		t.Fatalf("through the mount before the cut: %q", got)
	}
	if f.Syncs() != 5 {
		t.Fatalf("%d syncs recorded, want 5 (4 files, 1 directory)", f.Syncs())
	}
	lost, err := f.PowerCut()
	if err != nil {
		t.Fatal(err)
	}
	// append: "lost" (4); overwrite: "ab", "XYZ" (2 below the synced end,
	// 1 past it), "cd" (7); truncate: 7 truncated, "!" past the end (8);
	// never: 12; recreated: the 11 bytes O_TRUNC dropped.
	if want := int64(4 + 7 + 8 + 12 + 11); lost.Bytes != want || lost.Names != 0 {
		t.Errorf("lost %+v, want %d bytes and no names", lost, want)
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
	if lost, err := f.PowerCut(); err != nil || lost.Bytes != 4 || lost.Names != 0 {
		t.Fatalf("second cut: lost %+v, %v", lost, err)
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
	syncDir(t, mnt)
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

// TestPowerCutNames: a name created, replaced, renamed or removed is
// durable only once its directory is synced; until then the cut puts the
// directory back as it was, with the files it named and their synced
// data.
func TestPowerCutNames(t *testing.T) {
	f, backing, mnt := mountT(t, Options{})
	writeSynced(t, filepath.Join(mnt, "CURRENT"), "MANIFEST-1")
	writeSynced(t, filepath.Join(mnt, "gone"), "removed later")
	writeSynced(t, filepath.Join(mnt, "moved"), "renamed later")
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSynced(t, filepath.Join(mnt, "sub", "kept"), "in sub")
	syncDir(t, mnt)
	syncDir(t, filepath.Join(mnt, "sub"))
	const durable = "CURRENT=MANIFEST-1 gone=removed later moved=renamed later sub/"

	// A synced file under a name not yet synced; a rename over CURRENT;
	// an unlink; a rename; a new directory: none of it synced.
	writeSynced(t, filepath.Join(mnt, "CURRENT.tmp"), "MANIFEST-2")
	if err := os.Rename(filepath.Join(mnt, "CURRENT.tmp"), filepath.Join(mnt, "CURRENT")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "moved"), filepath.Join(mnt, "sub", "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "newdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSynced(t, filepath.Join(mnt, "newdir", "x"), "x")
	syncDir(t, filepath.Join(mnt, "newdir")) // its parent is not synced
	if got := names(t, mnt); got != "CURRENT=MANIFEST-2 newdir/ sub/" {
		t.Fatalf("before the cut: %q", got)
	}
	// CURRENT: the new name goes, the old comes back (2); gone comes back
	// (1); moved leaves sub and comes back (2); newdir goes (1).
	lost, err := f.PowerCut()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lost.Which)
	if got, want := strings.Join(lost.Which, " "), "+CURRENT +gone +moved -CURRENT -newdir -sub/moved"; lost.Names != 6 || got != want {
		t.Fatalf("lost %d names %q, want %q", lost.Names, got, want)
	}
	if got := names(t, backing); got != durable {
		t.Errorf("after the cut: %q, want %q", got, durable)
	}
	if got := names(t, filepath.Join(backing, "sub")); got != "kept=in sub" {
		t.Errorf("sub after the cut: %q", got)
	}

	// The same changes with the directories synced are kept.
	if err := f.Remount(); err != nil {
		t.Fatal(err)
	}
	writeSynced(t, filepath.Join(mnt, "CURRENT.tmp"), "MANIFEST-2")
	if err := os.Rename(filepath.Join(mnt, "CURRENT.tmp"), filepath.Join(mnt, "CURRENT")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "moved"), filepath.Join(mnt, "sub", "moved")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	syncDir(t, filepath.Join(mnt, "sub"))
	if lost, err := f.PowerCut(); err != nil || lost.Bytes != 0 || lost.Names != 0 {
		t.Fatalf("lost %+v after everything was synced; %v", lost, err)
	}
	if got := names(t, backing); got != "CURRENT=MANIFEST-2 sub/" {
		t.Errorf("after the synced changes and a cut: %q", got)
	}
	if got := names(t, filepath.Join(backing, "sub")); got != "kept=in sub moved=renamed later" {
		t.Errorf("sub after the synced changes and a cut: %q", got)
	}
}

// TestPowerCutTorn: a torn cut keeps synced bytes, and of the rest only
// whole pages as written or zeros, ending at a page kept; over seeds,
// pages are both kept and lost, and overwrites both kept and undone.
func TestPowerCutTorn(t *testing.T) {
	f, backing, mnt := mountT(t, Options{})
	const page = 4096
	tail := bytes.Repeat([]byte{'t'}, 3*page+100) // past the synced 10 bytes
	var keptPage, lostPage, keptOver, undoneOver bool
	for seed := int64(1); seed <= 20; seed++ {
		p := filepath.Join(mnt, "wal")
		writeSynced(t, p, "0123456789")
		syncDir(t, mnt)
		w, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.WriteAt([]byte("AB"), 4) // over synced bytes
		w.WriteAt(tail, 10)
		w.Close()
		if _, err := f.PowerCutTorn(rand.New(rand.NewSource(seed))); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(backing, "wal"))
		if err != nil {
			t.Fatal(err)
		}
		switch string(got[:10]) {
		case "0123456789":
			undoneOver = true
		case "0123AB6789":
			keptOver = true
		default:
			t.Fatalf("seed %d: synced bytes now %q", seed, got[:10])
		}
		rest := got[10:]
		if len(rest) > 0 && (len(got)%page != 0 && len(got) != 10+len(tail)) {
			t.Fatalf("seed %d: the file ends at %d, not at a page's end", seed, len(got))
		}
		for off := 0; off < len(rest); {
			next := min((off+10)/page*page+page-10, len(rest))
			chunk := rest[off:next]
			switch {
			case bytes.Equal(chunk, tail[off:next]):
				keptPage = true
			case bytes.Count(chunk, []byte{0}) == len(chunk):
				lostPage = true
			default:
				t.Fatalf("seed %d: a page at %d is neither as written nor zeros", seed, 10+off)
			}
			off = next
		}
		if len(rest) < len(tail) {
			lostPage = true
		}
		if err := f.Remount(); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		syncDir(t, mnt)
	}
	if !keptPage || !lostPage || !keptOver || !undoneOver {
		t.Fatalf("20 torn cuts: page kept %v, lost %v; overwrite kept %v, undone %v", keptPage, lostPage, keptOver, undoneOver)
	}
}

// TestCopyGoesThroughWrites: a copy between files of the mount (Go's
// io.Copy tries copy_file_range) is undone by a cut like any write.
func TestCopyGoesThroughWrites(t *testing.T) {
	f, backing, mnt := mountT(t, Options{})
	writeSynced(t, filepath.Join(mnt, "src"), "copied bytes")
	writeSynced(t, filepath.Join(mnt, "dst"), "")
	syncDir(t, mnt)
	src, err := os.Open(filepath.Join(mnt, "src"))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(filepath.Join(mnt, "dst"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	src.Close()
	if got := readT(t, filepath.Join(mnt, "dst")); got != "copied bytes" {
		t.Fatalf("copy: %q", got)
	}
	if _, err := f.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, filepath.Join(backing, "dst")); got != "" {
		t.Fatalf("an unsynced copy survived the cut: %q", got)
	}
}
