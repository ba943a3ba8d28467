package powerfs

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirState is a directory's durable names: its listing at its last sync,
// or when a name in it first changed since the mount.
type dirState struct {
	durable map[string]dirent
}

type dirent struct {
	ino uint64
	dir bool
}

func listDir(path string) (map[string]dirent, error) {
	des, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	m := make(map[string]dirent, len(des))
	for _, de := range des {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(path, de.Name()), &st); err != nil {
			return nil, err
		}
		m[de.Name()] = dirent{ino: st.Ino, dir: de.IsDir()}
	}
	return m, nil
}

// touchDir starts tracking the directory at path (backing) before a name
// in it changes: what it lists now is what a power cut goes back to until
// it is synced.
func (f *FS) touchDir(path string) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	return gofs.ToErrno(f.touchDirLocked(path))
}

func (f *FS) touchDirLocked(path string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return err
	}
	if f.dirs[st.Ino] != nil {
		return nil
	}
	m, err := listDir(path)
	if err != nil {
		return err
	}
	f.dirs[st.Ino] = &dirState{durable: m}
	return nil
}

// syncDir makes the names of the directory at path durable.
func (f *FS) syncDir(path string) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return gofs.ToErrno(err)
	}
	m, err := listDir(path)
	if err != nil {
		return gofs.ToErrno(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirs[st.Ino] = &dirState{durable: m}
	f.syncs++
	return 0
}

// referencedLocked reports whether a durable name refers to ino.
func (f *FS) referencedLocked(ino uint64) bool {
	for _, d := range f.dirs {
		for _, e := range d.durable {
			if e.ino == ino {
				return true
			}
		}
	}
	return false
}

func (f *FS) trashPath(ino uint64) string {
	return filepath.Join(f.trash, strconv.FormatUint(ino, 10))
}

// keepLocked links the file at path into the trash before its name goes,
// if a durable name refers to it (a cut may need it back).
func (f *FS) keepLocked(path string) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		if err == syscall.ENOENT {
			return nil
		}
		return err
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR || !f.referencedLocked(st.Ino) {
		return nil
	}
	err := os.Link(path, f.trashPath(st.Ino))
	if os.IsExist(err) {
		return nil
	}
	return err
}

// revertDirs puts every tracked directory's names back as they were at
// its last sync: names made since are removed (files a durable name still
// needs are kept in the trash), names removed or replaced since are
// linked again. With rng (a torn cut), the name changes of each file
// (inode) since the syncs are kept or undone together, at random.
func (f *FS) revertDirs(rng *rand.Rand) (changed int, which []string, err error) {
	// kept reports whether the unsynced name changes of ino reached the
	// disk: a coin per inode, drawn from rng once (not in map order).
	var salt uint64
	if rng != nil {
		salt = rng.Uint64() | 1
	}
	kept := func(ino uint64) bool {
		if rng == nil {
			return false
		}
		h := (ino ^ salt) * 0x9e3779b97f4a7c15
		return (h^h>>29)&(1<<40) != 0
	}
	reverted := map[string]bool{} // names whose newer entry was taken away
	note := func(sign, p string) {
		changed++
		if len(which) < 20 {
			rel, _ := filepath.Rel(f.backing, p)
			which = append(which, sign+rel)
		}
	}
	paths := map[uint64]string{} // tracked directory → its path now
	err = filepath.WalkDir(f.backing, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return err
		}
		if f.dirs[st.Ino] != nil {
			paths[st.Ino] = p
		}
		return nil
	})
	if err != nil {
		return changed, which, err
	}
	for ino := range f.dirs {
		if paths[ino] == "" && f.referencedLocked(ino) {
			return changed, which, fmt.Errorf("a directory with a durable name (inode %d) was removed: not modelled", ino)
		}
	}
	// gone reports a tracked directory that is not there (any more): one
	// made since the mount and removed, or taken away with its parent's
	// names below.
	gone := func(ino uint64) bool {
		if paths[ino] == "" {
			return true
		}
		_, err := os.Lstat(paths[ino])
		return err != nil
	}
	// Take away the names made since each directory's last sync.
	for ino, d := range f.dirs {
		if gone(ino) {
			continue
		}
		cur, err := listDir(paths[ino])
		if err != nil {
			return changed, which, err
		}
		for name, e := range cur {
			if de, ok := d.durable[name]; ok && de == e {
				continue
			}
			p := filepath.Join(paths[ino], name)
			if e.dir && f.referencedLocked(e.ino) {
				return changed, which, fmt.Errorf("directory %s was renamed without a sync: not modelled", p)
			}
			if kept(e.ino) {
				continue // the disk had it: a torn cut
			}
			note("-", p)
			reverted[p] = true
			if e.dir {
				if err := os.RemoveAll(p); err != nil {
					return changed, which, err
				}
				continue
			}
			if err := f.keepLocked(p); err != nil {
				return changed, which, err
			}
			if err := os.Remove(p); err != nil {
				return changed, which, err
			}
		}
	}
	// Put back the durable names that are missing.
	where := map[uint64]string{} // file inode → a path that holds it
	for _, root := range []string{f.trash, f.backing} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				return err
			}
			where[st.Ino] = p
			return nil
		})
		if err != nil {
			return changed, which, err
		}
	}
	for ino, d := range f.dirs {
		if gone(ino) {
			continue
		}
		for name, e := range d.durable {
			p := filepath.Join(paths[ino], name)
			if _, err := os.Lstat(p); err == nil {
				continue
			}
			if !reverted[p] && kept(e.ino) {
				continue // its removal or rename reached the disk: a torn cut
			}
			if e.dir {
				return changed, which, fmt.Errorf("directory %s was removed without a sync: not modelled", p)
			}
			from := where[e.ino]
			if from == "" {
				return changed, which, fmt.Errorf("%s (inode %d) is durable but was lost", p, e.ino)
			}
			if err := os.Link(from, p); err != nil {
				return changed, which, err
			}
			note("+", p)
		}
	}
	return changed, which, nil
}

func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(nil))
}

var (
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.FileFsyncdirer     = (*dirHandle)(nil)
	_ gofs.FileReaddirenter   = (*dirHandle)(nil)
	_ gofs.FileSeekdirer      = (*dirHandle)(nil)
	_ gofs.FileReleasedirer   = (*dirHandle)(nil)
)

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.touchDir(n.backingPath()); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.touchDir(n.backingPath()); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.touchDir(n.backingPath()); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.touchDir(n.backingPath()); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Link(ctx, target, name, out)
}

// Rmdir is allowed, but a cut fails if a durable name needed the
// directory removed: the model cannot put a removed directory back.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.fs.touchDir(n.backingPath()); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	dir := n.backingPath()
	n.fs.mu.Lock()
	err := n.fs.touchDirLocked(dir)
	if err == nil {
		err = n.fs.keepLocked(filepath.Join(dir, name))
	}
	n.fs.mu.Unlock()
	if err != nil {
		return gofs.ToErrno(err)
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	from, to := n.backingPath(), np.backingPath()
	n.fs.mu.Lock()
	err := n.fs.touchDirLocked(from)
	if err == nil {
		err = n.fs.touchDirLocked(to)
	}
	if err == nil { // the file a rename replaces
		err = n.fs.keepLocked(filepath.Join(to, newName))
	}
	n.fs.mu.Unlock()
	if err != nil {
		return gofs.ToErrno(err)
	}
	return n.LoopbackNode.Rename(ctx, name, np.LoopbackNode, newName, flags)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{FileHandle: fh, path: n.backingPath(), fs: n.fs}, fuseFlags, 0
}

// dirHandle is an open directory whose sync makes its names durable.
type dirHandle struct {
	gofs.FileHandle
	path string
	fs   *FS
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if d.fs.opts.IgnoreSync != nil && d.fs.opts.IgnoreSync(filepath.Base(d.path)) {
		return 0
	}
	return d.fs.syncDir(d.path)
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	return d.FileHandle.(gofs.FileReaddirenter).Readdirent(ctx)
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.FileHandle.(gofs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	d.FileHandle.(gofs.FileReleasedirer).Releasedir(ctx, flags)
}
