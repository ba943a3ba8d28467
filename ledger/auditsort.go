package ledger

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// The audit's expected records — one idempotency key, one hospital row and
// the trace-code events of every entry, one reversal marker of every
// reversal — grow with the ledger: held in maps they took about 1.75 KB of
// heap an entry, 90 GB at the 50 million entries the gateway is built for.
// They are derived records whose keys sort, so the audit writes them, as it
// replays the entries, into a scratch Pebble store in a temporary directory,
// which sorts them on disk in bounded memory, and then walks them in key
// order next to the stored records. Its heap no longer depends on the
// number of entries, only on that of persons, pairs and months.
//
// Scratch keys (the scratch store holds nothing else):
//
//	h | hospital row key                    -> the row the entry gives
//	r | reversal marker key                 -> the reversal's seq (8)
//	i | lp(name) | 0 | seq (8)              -> idempotency value the entry gives
//	i | lp(name) | 1 | bucket (4)           -> a stored idempotency value
//	t | lp(code) | 0 | seq (8) | index (4)  -> empty: entry seq settles code;
//	                                           a settlement's seq (8): entry
//	                                           seq reverses it, freeing code
//	t | lp(code) | 1 | bucket (4)           -> a stored trace-code record
//	x | credit record key                   -> the credit record the entry gives
//
// An lp(name) is never a prefix of another, so each name's or code's
// records are contiguous, the expected ones (0) before the stored ones (1),
// each in seq or bucket order.
const (
	scratchRow      = 'h'
	scratchReversed = 'r'
	scratchIdem     = 'i'
	scratchTrace    = 't'
	scratchCredit   = 'x'

	scratchExpected = 0
	scratchStored   = 1
)

// scratchMemTable is the scratch store's memtable size (0: Pebble's);
// tests make it small, so that a few entries are flushed to files.
var scratchMemTable uint64

// scratchBatch is how many bytes of records the audit gathers before
// committing them to the scratch store.
const scratchBatch = 1 << 20

type auditScratch struct {
	dir   string
	db    *pebble.DB
	batch *pebble.Batch
	err   error // the first failed write, or the audit's interruption
	// ctx ends the audit early (medgate audit interrupted): the scratch
	// store, up to about 400 bytes an entry, must then still be removed,
	// which only the audit's own return does.
	ctx   context.Context
	steps int // records set or walked, to look at ctx every checkEvery
	// failed is closed, bgErr set, on the store's first failed flush or
	// compaction (--tmp's disk full): Pebble retries it for ever and,
	// once its memtables are full, a write waits for it for ever, so a
	// write waits for its commit or failed (commit). stuck: a commit never
	// returned, so the store cannot be closed, only removed.
	failed   chan struct{}
	failOnce sync.Once
	bgErr    error
	stuck    bool
}

// background notes the scratch store's first failed flush or compaction.
func (s *auditScratch) background(err error) {
	if err == nil {
		return
	}
	s.failOnce.Do(func() {
		s.bgErr = fmt.Errorf("ledger: audit: the scratch store in %s cannot write its files (is the disk of --tmp full? the audit needs about 400 bytes an entry there): %w", s.dir, err)
		close(s.failed)
	})
}

// commit commits b, or fails once the store cannot write its files.
func (s *auditScratch) commit(b *pebble.Batch) error {
	select {
	case <-s.failed:
		return s.bgErr
	default:
	}
	done := make(chan error, 1)
	go func() { done <- b.Commit(pebble.NoSync) }()
	select {
	case err := <-done:
		return err
	case <-s.failed:
		// A commit that is not waiting for a flush returns at once.
		select {
		case <-done:
		case <-time.After(time.Second):
			s.stuck = true
		}
		return s.bgErr
	}
}

// setNow writes one record at once (one that a later record of the same
// replay must find).
func (s *auditScratch) setNow(k, v []byte) error {
	b := s.db.NewBatch()
	_ = b.Set(k, v, nil)
	err := s.commit(b)
	if !s.stuck {
		_ = b.Close()
	}
	return err
}

// checkEvery is how many scratch records are set or walked between two
// looks at whether the audit was interrupted.
const checkEvery = 1 << 12

// interrupted is the audit's interruption, looked at every checkEvery
// calls.
func (s *auditScratch) interrupted() error {
	if s.steps++; s.steps%checkEvery != 0 {
		return nil
	}
	return s.stopped()
}

// stopped is the audit's interruption, if it was interrupted.
func (s *auditScratch) stopped() error {
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("ledger: audit interrupted: %w", err)
	}
	return nil
}

// openScratch creates the scratch store in a new directory under dir
// (os.TempDir() when empty); ctx (nil: never) interrupts the audit.
func openScratch(ctx context.Context, dir string) (*auditScratch, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	s := &auditScratch{ctx: ctx, failed: make(chan struct{})}
	d, err := os.MkdirTemp(dir, "medgate-audit-")
	if err != nil {
		return nil, err
	}
	s.dir = d
	db, err := pebble.Open(d, &pebble.Options{
		FS:     vfs.Default,
		Logger: pebbleLogger{zerolog.Nop()},
		// Nothing to recover: the store is removed when the audit ends.
		DisableWAL:   true,
		MemTableSize: scratchMemTable,
		// Writes wait for flushes only once 16 memtables (64 MiB) are
		// queued, so that a failed flush is noticed (commit) before one
		// does.
		MemTableStopWritesThreshold: 16,
		EventListener: &pebble.EventListener{
			BackgroundError: s.background,
			FlushEnd:        func(i pebble.FlushInfo) { s.background(i.Err) },
			CompactionEnd:   func(i pebble.CompactionInfo) { s.background(i.Err) },
		},
	})
	if err != nil {
		_ = os.RemoveAll(d)
		return nil, err
	}
	s.db, s.batch = db, db.NewBatch()
	return s, nil
}

// close closes the scratch store and removes its directory.
func (s *auditScratch) close() error {
	var err error
	if s.stuck {
		// A commit waits for ever inside Pebble, and Close would too: the
		// store is left open (medgate audit ends at once), its files
		// removed.
		err = s.bgErr
	} else {
		err = s.batch.Close()
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
	}
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// set adds a record to the batch (which copies k and v).
func (s *auditScratch) set(k, v []byte) {
	if s.err != nil {
		return
	}
	if s.err = s.interrupted(); s.err != nil {
		return
	}
	if s.err = s.batch.Set(k, v, nil); s.err == nil && s.batch.Len() >= scratchBatch {
		s.flush()
	}
}

// flush commits the batch, after which the records can be read.
func (s *auditScratch) flush() error {
	if s.err == nil && !s.batch.Empty() {
		if s.err = s.commit(s.batch); s.err == nil {
			s.batch.Reset()
		}
	}
	return s.err
}

// appendScratchGroupKey appends tag | lp(name) | mark, the head of a
// grouped scratch key.
func appendScratchGroupKey(b []byte, tag byte, name []byte, mark byte) []byte {
	b = append(b, tag)
	b = appendLP(b, string(name))
	return append(b, mark)
}

// scratchRec is one record of a group: expected (by an entry) or stored.
type scratchRec struct {
	stored        bool
	suffix, value []byte // after the mark: seq or bucket
}

// groups calls fn with each name under tag and its records, expected ones
// first (the slices are valid only during the call).
func (s *auditScratch) groups(tag byte, fn func(name []byte, recs []scratchRec)) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
	if err != nil {
		return err
	}
	var name, buf []byte
	var recs []scratchRec
	var offs [][2]int // suffix start, value start in buf, per record
	emit := func() {
		recs = recs[:0]
		for i, o := range offs {
			end := len(buf)
			if i+1 < len(offs) {
				end = offs[i+1][0]
			}
			recs = append(recs, scratchRec{stored: buf[o[0]] == scratchStored,
				suffix: buf[o[0]+1 : o[1]], value: buf[o[1]:end:end]})
		}
		fn(name, recs)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := s.interrupted(); err != nil {
			_ = it.Close()
			return err
		}
		n, rest, ok := splitLP(it.Key()[1:])
		if !ok || len(rest) == 0 {
			continue // never written so
		}
		if len(offs) > 0 && !bytes.Equal(n, name) {
			emit()
			offs, buf = offs[:0], buf[:0]
		}
		if len(offs) == 0 {
			name = append(name[:0], n...)
		}
		start := len(buf)
		buf = append(buf, rest...)
		offs = append(offs, [2]int{start, len(buf)})
		buf = append(buf, it.Value()...)
	}
	if len(offs) > 0 {
		emit()
	}
	return firstErr(it.Error(), it.Close())
}

// merge walks the expected records under tag (keys after it: stored keys)
// and r's stored records under pfx in key order, and calls fn with each key
// and the expected and stored values, nil when there is none (the slices
// are valid only during the call).
func (s *auditScratch) merge(tag byte, r pebble.Reader, pfx byte, fn func(k, want, got []byte)) error {
	want, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag, pfx}, UpperBound: []byte{tag, pfx + 1}})
	if err != nil {
		return err
	}
	defer want.Close()
	lo, hi := prefixRange(pfx)
	got, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer got.Close()
	empty := []byte{}
	for w, g := want.First(), got.First(); w || g; {
		if err := s.interrupted(); err != nil {
			return err
		}
		var c int
		switch {
		case !w:
			c = 1
		case !g:
			c = -1
		default:
			c = bytes.Compare(want.Key()[1:], got.Key())
		}
		switch {
		case c < 0:
			fn(want.Key()[1:], nonNil(want.Value(), empty), nil)
			w = want.Next()
		case c > 0:
			fn(got.Key(), nil, nonNil(got.Value(), empty))
			g = got.Next()
		default:
			fn(got.Key(), nonNil(want.Value(), empty), nonNil(got.Value(), empty))
			w, g = want.Next(), got.Next()
		}
	}
	return firstErr(want.Error(), got.Error())
}

func nonNil(b, empty []byte) []byte {
	if b == nil {
		return empty
	}
	return b
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
