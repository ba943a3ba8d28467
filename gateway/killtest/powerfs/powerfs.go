// Package powerfs mounts a directory through FUSE so that a test can cut
// the power under a process: every byte written to a file since that
// file's last fsync or fdatasync is lost, as on a machine that loses its
// page cache.
//
// Why: kill -9 of the gateway keeps the kernel's page cache, so a kill
// loop cannot tell a write that was synced before its answer from one
// that was only written. Through this mount, writes reach the backing
// directory at once (FUSE without writeback caching is write-through),
// and the filesystem remembers, per file, its size at the last sync and
// the old bytes of every synced range overwritten since. PowerCut, once
// the writers are dead, unmounts and puts every file back as it was at
// its last sync.
//
// Directories are modelled as strictly (dirs.go): a name created, renamed
// or removed is durable only once its directory is synced; the cut puts
// every directory written since the mount back as it was at its last
// sync, relinking files removed since from a trash directory beside the
// backing one.
package powerfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options change what the filesystem does.
type Options struct {
	// IgnoreSync, if set, is asked at each fsync with the file's base
	// name; true makes that sync a no-op that is answered as done: a
	// lying disk, for tests that must see the loss it causes.
	IgnoreSync func(name string) bool
}

// FS is a mounted power-cuttable view of a backing directory.
type FS struct {
	backing, mnt string
	opts         Options
	server       *fuse.Server

	trash string // beside backing: removed files a directory may need back

	mu    sync.Mutex
	files map[uint64]*fileState // by backing inode number
	dirs  map[uint64]*dirState  // by backing inode number
	syncs int                   // file and directory syncs recorded since the mount
}

// fileState is what PowerCut needs to put one file back.
type fileState struct {
	name   string // base name when last seen, for IgnoreSync and errors
	synced int64  // size at the last sync (or when first seen)
	undo   []undo // old bytes of synced ranges, in the order overwritten
}

type undo struct {
	off int64
	old []byte
}

var availability struct {
	sync.Once
	err error
}

// Available reports why FUSE mounts cannot be made here, or nil.
func Available() error {
	availability.Do(func() { availability.err = available() })
	return availability.err
}

func available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: no FUSE: %w", err)
	}
	f.Close()
	if os.Geteuid() != 0 {
		return errors.New("powerfs: mounting needs root (no fusermount is assumed)")
	}
	// Root with the device may still be refused the mount (a container
	// given /dev/fuse without CAP_SYS_ADMIN): try one.
	dir, err := os.MkdirTemp("", "powerfs-probe-")
	if err != nil {
		return fmt.Errorf("powerfs: probe: %w", err)
	}
	defer os.Remove(dir)
	server, err := gofs.Mount(dir, &gofs.Inode{}, &gofs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "powerfs-probe", Name: "powerfs"},
	})
	if err != nil {
		return fmt.Errorf("powerfs: cannot mount here: %w", err)
	}
	if err := server.Unmount(); err != nil {
		return fmt.Errorf("powerfs: probe mount %s left mounted: %w", dir, err)
	}
	server.Wait()
	return nil
}

// Mount serves backing at mnt (both existing directories).
func Mount(backing, mnt string, opts Options) (*FS, error) {
	f := &FS{backing: backing, mnt: mnt, opts: opts, trash: filepath.Clean(backing) + ".powerfs-trash",
		files: map[uint64]*fileState{}, dirs: map[uint64]*dirState{}}
	if err := os.MkdirAll(f.trash, 0o700); err != nil {
		return nil, fmt.Errorf("powerfs: %w", err)
	}
	if err := f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FS) mount() error {
	var st syscall.Stat_t
	if err := syscall.Stat(f.backing, &st); err != nil {
		return fmt.Errorf("powerfs: backing %s: %w", f.backing, err)
	}
	root := &gofs.LoopbackRoot{Path: f.backing, Dev: uint64(st.Dev)}
	root.RootNode = &node{LoopbackNode: &gofs.LoopbackNode{RootData: root}, fs: f}
	server, err := gofs.Mount(f.mnt, root.RootNode, &gofs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "powerfs", Name: "powerfs", DisableXAttrs: true},
	})
	if err != nil {
		return fmt.Errorf("powerfs: mount %s: %w", f.mnt, err)
	}
	f.server = server
	return nil
}

// Syncs is the number of syncs recorded since the last mount.
func (f *FS) Syncs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

// PowerCut unmounts (every process writing through the mount must be
// gone) and puts every file written since the mount back as it was at its
// last sync. The backing directory then holds what a disk would after a
// power failure; Remount serves it again. It says what was lost.
func (f *FS) PowerCut() (lost Loss, err error) { return f.cut(nil) }

// PowerCutTorn is PowerCut on a disk that had written some of what was
// not synced when the power went: of the bytes written past a file's
// synced size, each 4 KiB page is kept or lost (zeros, if a later page is
// kept) at random, and each overwrite of synced bytes is kept or undone
// at random. Names not synced are kept or undone at random too, file by
// file (a journal commits names on its own, but a rename whole): a name
// kept for a file whose bytes were not synced holds what of them the
// cut kept. Synced bytes, and synced names, are as PowerCut leaves them.
func (f *FS) PowerCutTorn(rng *rand.Rand) (lost Loss, err error) { return f.cut(rng) }

func (f *FS) cut(rng *rand.Rand) (lost Loss, err error) {
	if err := f.Unmount(); err != nil {
		return lost, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Names first (a name the cut takes away needs no data), then the data
	// of every file that has a name.
	if lost.Names, lost.Which, err = f.revertDirs(rng); err != nil {
		return lost, fmt.Errorf("powerfs: power cut: %w", err)
	}
	err = filepath.WalkDir(f.backing, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return err
		}
		s := f.files[st.Ino]
		if s == nil {
			return nil
		}
		lost.Bytes += max(st.Size-s.synced, 0)
		for _, u := range s.undo {
			lost.Bytes += int64(len(u.old))
		}
		return s.revert(p, st.Size, rng)
	})
	f.files, f.dirs = map[uint64]*fileState{}, map[uint64]*dirState{}
	if err == nil {
		err = os.RemoveAll(f.trash)
	}
	if err == nil {
		err = os.Mkdir(f.trash, 0o700)
	}
	if err != nil {
		return lost, fmt.Errorf("powerfs: power cut: %w", err)
	}
	return lost, nil
}

func (s *fileState) revert(path string, size int64, rng *rand.Rand) error {
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer file.Close()
	if rng == nil || size <= s.synced {
		if err := file.Truncate(s.synced); err != nil {
			return err
		}
	} else if err := tearTail(file, s.synced, size, rng); err != nil {
		return err
	}
	for i := len(s.undo) - 1; i >= 0; i-- {
		if rng != nil && rng.Intn(2) == 0 {
			continue // the overwrite reached the disk
		}
		if _, err := file.WriteAt(s.undo[i].old, s.undo[i].off); err != nil {
			return err
		}
	}
	return nil
}

// tearTail keeps a random subset of the 4 KiB pages of [synced, size):
// the file ends after the last page kept, and the pages lost before it
// read as zeros.
func tearTail(file *os.File, synced, size int64, rng *rand.Rand) error {
	const page = 4096
	end := synced
	var zero [page]byte
	for off := synced; off < size; {
		next := min((off/page+1)*page, size)
		if rng.Intn(2) == 0 {
			if _, err := file.WriteAt(zero[:next-off], off); err != nil {
				return err
			}
		} else {
			end = next
		}
		off = next
	}
	return file.Truncate(end)
}

// Loss is what a power cut took away.
type Loss struct {
	Bytes int64 // written past a file's synced size, or over synced bytes (torn: at risk)
	Names int   // names made, removed or replaced since their directory's sync
	// Which names (relative to the backing directory; "+" put back, "-"
	// taken away): the first 20.
	Which []string
}

// Unmount stops serving the mount without losing anything.
func (f *FS) Unmount() error {
	if f.server == nil {
		return nil
	}
	// The kernel releases a killed process's files asynchronously: the
	// mount may be busy for a moment after the process is gone. (go-fuse
	// reports a busy mount as its fallback's error, running fusermount,
	// so any error is tried again.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := f.server.Unmount()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("powerfs: unmount %s (a file still open on it?): %w", f.mnt, err)
		}
	}
	f.server.Wait()
	f.server = nil
	return nil
}

// Remount serves the backing directory again after PowerCut or Unmount.
func (f *FS) Remount() error {
	f.mu.Lock()
	f.syncs = 0
	f.mu.Unlock()
	return f.mount()
}

// state returns the state of the file open as fd, created with synced at
// its current size on first sight: what was there before is durable.
func (f *FS) state(fd int, name string) (*fileState, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	s := f.files[st.Ino]
	if s == nil {
		s = &fileState{synced: st.Size}
		f.files[st.Ino] = s
	}
	s.name = name
	return s, nil
}

// saveOld records the old bytes of [off, end) that lie below the synced
// size, before they are overwritten or truncated away.
func (s *fileState) saveOld(fd int, off, end int64) error {
	if end > s.synced {
		end = s.synced
	}
	if off >= end {
		return nil
	}
	old := make([]byte, end-off)
	// fd may be open write-only: read through a descriptor of its own.
	r, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := r.ReadAt(old, off)
	// Synced bytes past the end were saved when they were truncated away.
	if err != nil && err != io.EOF {
		return err
	}
	s.undo = append(s.undo, undo{off: off, old: old[:n]})
	return nil
}

// node is a loopback node whose files are handles that keep fileStates.
type node struct {
	*gofs.LoopbackNode
	fs *FS
}

var (
	_ gofs.NodeWrapChilder = (*node)(nil)
	_ gofs.NodeOpener      = (*node)(nil)
	_ gofs.NodeCreater     = (*node)(nil)
	_ gofs.NodeSetattrer   = (*node)(nil)
)

func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*gofs.LoopbackNode), fs: n.fs}
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.openTruncating(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.wrap(fh, n.Path(nil)), fuseFlags, 0
}

// openTruncating opens without O_TRUNC, saves what O_TRUNC would drop,
// then truncates.
func (n *node) openTruncating(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags&^syscall.O_TRUNC)
	if errno != 0 || flags&syscall.O_TRUNC == 0 {
		return fh, fuseFlags, errno
	}
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	s, err := n.fs.state(fd, filepath.Base(n.Path(nil)))
	if err == nil {
		err = s.saveOld(fd, 0, s.synced)
	}
	if err == nil {
		err = syscall.Ftruncate(fd, 0)
	}
	if err != nil {
		lf.Release(ctx)
		return nil, 0, gofs.ToErrno(err)
	}
	return fh, fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.fs.touchDir(n.backingPath()); errno != 0 {
		return nil, nil, 0, errno
	}
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		lf.Release(ctx)
		return nil, nil, 0, gofs.ToErrno(err)
	}
	n.fs.mu.Lock()
	// A new file: nothing of it is durable until its first sync. (An
	// inode number of a file unlinked earlier may come back.)
	n.fs.files[st.Ino] = &fileState{name: name, synced: 0}
	n.fs.mu.Unlock()
	return inode, n.wrap(fh, name), fuseFlags, 0
}

func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		fh = h.lf
	}
	if size, ok := in.GetSize(); ok {
		if errno := n.beforeTruncate(int64(size)); errno != 0 {
			return errno
		}
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

// beforeTruncate saves the synced bytes a truncation to size drops.
func (n *node) beforeTruncate(size int64) syscall.Errno {
	p := n.backingPath()
	fd, err := syscall.Open(p, syscall.O_RDONLY, 0)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(fd)
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	s, err := n.fs.state(fd, filepath.Base(p))
	if err == nil {
		err = s.saveOld(fd, size, s.synced)
	}
	return gofs.ToErrno(err)
}

func (n *node) wrap(fh gofs.FileHandle, name string) gofs.FileHandle {
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	return &handle{lf: lf, fd: fd, name: filepath.Base(name), fs: n.fs}
}

// handle forwards to a loopback file, keeping its fileState. It does not
// offer the descriptor for FUSE passthrough, which would let writes
// bypass it.
type handle struct {
	lf   *gofs.LoopbackFile
	fd   int
	name string
	fs   *FS
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileGetattrer = (*handle)(nil)
	_ gofs.FileLseeker   = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.lf.Read(ctx, buf, off)
}

// Write saves the synced bytes it replaces, then writes, under the lock
// that Fsync takes: a sync sees every write before or after it whole.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	s, err := h.fs.state(h.fd, h.name)
	if err == nil {
		err = s.saveOld(h.fd, off, off+int64(len(data)))
	}
	if err != nil {
		return 0, gofs.ToErrno(err)
	}
	return h.lf.Write(ctx, data, off)
}

// Fsync makes the file's bytes durable: its current size becomes the
// synced size and nothing needs undoing. It does not sync the backing
// disk: the test's power cut is the only one this filesystem models.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if h.fs.opts.IgnoreSync != nil && h.fs.opts.IgnoreSync(h.name) {
		return 0
	}
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd, &st); err != nil {
		return gofs.ToErrno(err)
	}
	s, err := h.fs.state(h.fd, h.name)
	if err != nil {
		return gofs.ToErrno(err)
	}
	s.synced, s.undo = st.Size, nil
	h.fs.syncs++
	return 0
}

func (h *handle) Flush(ctx context.Context) syscall.Errno   { return h.lf.Flush(ctx) }
func (h *handle) Release(ctx context.Context) syscall.Errno { return h.lf.Release(ctx) }
func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.lf.Getattr(ctx, out)
}
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}

// Allocate is allowed only when it keeps the size (Pebble preallocates
// its WAL so): anything else could change synced bytes.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	const keepSize = 0x1 // FALLOC_FL_KEEP_SIZE
	if mode != keepSize {
		return syscall.EOPNOTSUPP
	}
	return h.lf.Allocate(ctx, off, size, mode)
}

// CopyFileRange is refused, so that the kernel copies through Read and
// Write: a copy made by the backing filesystem would bypass the undo
// records.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}
