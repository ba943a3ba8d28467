package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The key filters are saved when the store closes and loaded when it opens,
// so that a restart does not scan every key: at 10 million entries the scan
// read 140 million trace codes and took two of the gateway's two and a half
// minutes to start (bench/RESULTS.md).
//
// The file names the chain head it was saved at. A filter only ever gains
// keys and every key comes from an entry (a settlement's trace codes, an
// entry's idempotency key, the counters key of an entry with counter
// changes), so a file saved at entry S is brought up to the head by adding
// the keys of the entries after S: after a crash, Open reads the entries
// written since the last clean close instead of all keys. The file is used
// only if entry S is still in the store with the hash it names (the same
// chain); otherwise, or if it is missing, damaged or of another version,
// the filters are built from the keys as before.
//
// Layout (integers little-endian), then the xxhash64 of all of it:
//
//	"medgate keyfilters 1\n" | head seq (8) | head hash (32) | filter count (1)
//	per filter: seed (8) | link count (4) | per link: capacity (8) | keys added (8) | blocks (8) | blocks × 8 words (8 each)
const (
	filterFileName  = "medgate-keyfilters"
	filterFileMagic = "medgate keyfilters 1\n"
)

var le = binary.LittleEndian

// saveFilters writes the filters to the store's directory (a temporary file,
// synced, renamed over the old one, the directory synced). The writer must
// have stopped: the head is then the last entry whose keys the filters hold.
func (db *DB) saveFilters() error {
	began := time.Now()
	h := db.head.Load()
	tmp := db.fs.PathJoin(db.dir, filterFileName+".tmp")
	f, err := db.fs.Create(tmp, "")
	if err != nil {
		return err
	}
	sum := xxhash.New()
	// Hashed before written: a vfs.File may change the buffer it was given
	// (Pebble's MemFS flips every byte in race-enabled builds).
	w := bufio.NewWriterSize(io.MultiWriter(sum, f), 1<<20)
	var buf []byte
	buf = append(buf, filterFileMagic...)
	buf = le.AppendUint64(buf, h.seq)
	buf = append(buf, h.hash[:]...)
	filters := []*keyFilter{db.tfilter, db.ifilter, db.cfilter}
	buf = append(buf, byte(len(filters)))
	for _, kf := range filters {
		st := kf.state.Load()
		links := st.links
		buf = le.AppendUint64(buf, st.seed)
		buf = le.AppendUint32(buf, uint32(len(links)))
		for _, l := range links {
			buf = le.AppendUint64(buf, uint64(l.capacity))
			buf = le.AppendUint64(buf, uint64(l.n.Load()))
			buf = le.AppendUint64(buf, l.blocks)
			for i := range l.words {
				buf = le.AppendUint64(buf, l.words[i].Load())
				if len(buf) >= 1<<16 {
					if _, err := w.Write(buf); err != nil {
						_ = f.Close()
						return err
					}
					buf = buf[:0]
				}
			}
			runtime.KeepAlive(l) // its words are unmapped once it is unreachable
		}
	}
	_, err = w.Write(buf)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		_, err = f.Write(le.AppendUint64(nil, sum.Sum64()))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = db.fs.Rename(tmp, db.fs.PathJoin(db.dir, filterFileName))
	}
	if err == nil {
		var d interface {
			Sync() error
			Close() error
		}
		if d, err = db.fs.OpenDir(db.dir); err == nil {
			err = d.Sync()
			_ = d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("ledger: saving key filters: %w", err)
	}
	db.log.Info().Uint64("head_seq", h.seq).Dur("took", time.Since(began)).Msg("ledger: key filters saved")
	return nil
}

// errNoFilterFile: no saved filters to load.
var errNoFilterFile = errors.New("no saved key filters")

// loadSavedFilters loads the saved filters and adds the keys of the entries
// after the one they were saved at. Any error means: build them from the
// keys.
func (db *DB) loadSavedFilters() error {
	began := time.Now()
	f, err := db.fs.Open(db.fs.PathJoin(db.dir, filterFileName))
	if errors.Is(err, os.ErrNotExist) {
		return errNoFilterFile
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// The checksum first, before anything is allocated from the file.
	size := st.Size() - 8
	if size < int64(len(filterFileMagic)) {
		return errors.New("file too short")
	}
	sum := xxhash.New()
	if _, err := io.Copy(sum, io.NewSectionReader(f, 0, size)); err != nil {
		return err
	}
	var want [8]byte
	if _, err := f.ReadAt(want[:], size); err != nil {
		return err
	}
	if le.Uint64(want[:]) != sum.Sum64() {
		return errors.New("checksum mismatch")
	}
	r := &filterReader{r: bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)}
	if string(r.bytes(len(filterFileMagic))) != filterFileMagic {
		return errors.New("not a key filter file of this version")
	}
	seq := r.u64()
	hash := [32]byte(r.bytes(32))
	left := size // bytes of the file not yet claimed by a link's words
	filters := make([]*keyFilter, r.byte())
	if len(filters) != 3 {
		return fmt.Errorf("%d filters, want 3", len(filters))
	}
	for i := range filters {
		st := &filterState{seed: r.u64()}
		links := make([]*filterLink, r.u32())
		if len(links) == 0 || len(links) > 64 {
			return fmt.Errorf("filter %d has %d links", i, len(links))
		}
		for j := range links {
			capacity, n, blocks := int64(r.u64()), int64(r.u64()), r.u64()
			// Checked against what is left of the file before allocating;
			// the capacity against what the blocks hold (as newFilterLink
			// sizes them) and the keys against the capacity, so that the
			// links that growth and rebuilds size from them (extend,
			// rebuildFilter) can neither overflow nor outgrow the file.
			if r.err != nil || capacity <= 0 || blocks == 0 || blocks >= 1<<32 || blocks*keyFilterBlockWords*8 > uint64(left) ||
				uint64(capacity) > blocks*512/keyFilterBitsPerKey || n < 0 || n > 2*capacity {
				return fmt.Errorf("filter %d link %d: capacity %d, %d keys, %d blocks", i, j, capacity, n, blocks)
			}
			left -= int64(blocks * keyFilterBlockWords * 8)
			l := newFilterLinkOf(blocks, capacity)
			l.n.Store(n)
			r.words(l.words)
			links[j] = l
		}
		st.links = links
		filters[i] = &keyFilter{}
		filters[i].state.Store(st)
	}
	if r.err != nil {
		return r.err
	}
	if _, err := r.r.ReadByte(); err != io.EOF {
		return errors.New("trailing bytes")
	}

	// The same chain, and not ahead of the store.
	head := db.head.Load().seq
	if seq > head {
		return fmt.Errorf("saved at entry %d, beyond the head %d", seq, head)
	}
	if seq > 0 {
		var kb [9]byte
		v, err := db.get(appendEntryKey(kb[:0], seq))
		if err != nil {
			return fmt.Errorf("entry %d: %w", seq, err)
		}
		if len(v) < 32 || [32]byte(v[len(v)-32:]) != hash {
			return fmt.Errorf("saved at entry %d of another chain", seq)
		}
	}
	db.tfilter, db.ifilter, db.cfilter = filters[0], filters[1], filters[2]
	var key []byte
	err = db.Scan(seq+1, func(e *Entry) error {
		addEntryKeys(db, e, &key)
		return nil
	})
	if err != nil {
		db.tfilter, db.ifilter, db.cfilter = nil, nil, nil
		return err
	}
	db.log.Info().Uint64("saved_at", seq).Uint64("head_seq", head).
		Int("trace_links", len(db.tfilter.state.Load().links)).Dur("took", time.Since(began)).
		Msg("ledger: key filters loaded")
	return nil
}

// addEntryKeys adds the keys entry e wrote to the filters, as the writer
// and Append add them.
func addEntryKeys(db *DB, e *Entry, key *[]byte) {
	if e.Kind.movesBalanceOnly() {
		return // no idempotency key, trace code or counter
	}
	*key = appendIdemKey((*key)[:0], 0, e.Hospital, e.RequestID)
	db.ifilter.add((*key)[bucketKeyLen:])
	if e.Kind == KindSettlement {
		for _, c := range e.TraceCodes {
			db.tfilter.addString(c)
		}
	}
	if len(e.Changes) > 0 {
		*key = appendCountersKey((*key)[:0], e.InsuredRegion, e.PersonID, e.Date.Year())
		db.cfilter.add((*key)[1:])
	}
}

// filterReader reads the file's fields, keeping the first error.
type filterReader struct {
	r   *bufio.Reader
	err error
	buf [32]byte
}

func (r *filterReader) bytes(n int) []byte {
	b := r.buf[:n]
	if r.err == nil {
		_, r.err = io.ReadFull(r.r, b)
	}
	return b
}

// words fills w, a chunk at a time.
func (r *filterReader) words(w []atomic.Uint64) {
	var chunk [1 << 16]byte
	for len(w) > 0 && r.err == nil {
		n := min(len(w), len(chunk)/8)
		b := chunk[:n*8]
		if _, r.err = io.ReadFull(r.r, b); r.err != nil {
			return
		}
		for i := range n {
			w[i].Store(le.Uint64(b[i*8:]))
		}
		w = w[n:]
	}
}

func (r *filterReader) byte() byte  { return r.bytes(1)[0] }
func (r *filterReader) u32() uint32 { return le.Uint32(r.bytes(4)) }
func (r *filterReader) u64() uint64 { return le.Uint64(r.bytes(8)) }
