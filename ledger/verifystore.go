package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"
)

// StoreReport is what VerifyStore found.
type StoreReport struct {
	Entries uint64   // entries whose chain verified
	Head    [32]byte // the recorded head hash
	// Root is the Merkle root of all entries, recomputed and checked
	// against the stored tree (valid when TreeErr and ChainErr are nil).
	Root tlog.Hash
	// ChainErr is the chain's first break (a *ChainError names the seq);
	// TreeErr the Merkle tree's (a *TreeError), checked only when the chain
	// holds.
	ChainErr error
	TreeErr  error
	// CheckpointErr: the checkpoint given does not match the ledger
	// (checked only when chain and tree hold).
	CheckpointErr error
}

// OK reports whether everything verified.
func (r *StoreReport) OK() bool {
	return r.ChainErr == nil && r.TreeErr == nil && r.CheckpointErr == nil
}

// VerifyStore opens the ledger in dir read-only (the gateway must be
// stopped: Pebble locks its directory) and walks the hash chain, then the
// Merkle tree, and, when cp is not nil, checks that the ledger still holds
// the tree cp states (its signature is the caller's to check:
// OpenCheckpoint). Nothing is written, not even the WAL replay. A store
// that cannot be opened or read is an error; what verification finds is in
// the report.
func VerifyStore(dir string, fs vfs.FS, cp *Checkpoint) (rep *StoreReport, err error) {
	db, err := openReadOnly(dir, fs)
	if err != nil {
		return nil, err
	}
	defer closeReadOnly(db.pdb)
	h := db.head.Load()
	rep = &StoreReport{Head: h.hash}
	// A corrupt block can make Pebble panic rather than fail the read.
	defer func() {
		if p := recover(); p != nil {
			rep, err = nil, fmt.Errorf("ledger: %s is unreadable (on-disk corruption): %v", dir, p)
		}
	}()
	rep.Entries, rep.ChainErr = db.Verify()
	if rep.ChainErr == nil {
		rep.ChainErr = beyondHead(db.pdb, h.seq)
	}
	if rep.ChainErr != nil {
		var ce *ChainError
		if errors.As(rep.ChainErr, &ce) {
			ce.Kind = storedKind(db.pdb, ce.Seq)
			return rep, nil
		}
		if pebble.IsCorruptionError(rep.ChainErr) {
			rep.ChainErr = &ChainError{Seq: rep.Entries + 1, Reason: "unreadable: " + rep.ChainErr.Error()}
			return rep, nil
		}
		return nil, rep.ChainErr
	}
	if db.format == 1 {
		rep.TreeErr = errors.New("ledger: store format 1 has no Merkle tree yet (it is built when the gateway opens it)")
		return rep, nil
	}
	_, rep.Root, rep.TreeErr = db.VerifyTree()
	if rep.TreeErr != nil {
		var te *TreeError
		if errors.As(rep.TreeErr, &te) {
			te.Kind = storedKind(db.pdb, te.Seq)
		} else if !pebble.IsCorruptionError(rep.TreeErr) {
			return nil, rep.TreeErr
		}
		return rep, nil
	}
	if cp != nil {
		rep.CheckpointErr = checkCheckpoint(db.pdb, rep.Entries, cp)
	}
	return rep, nil
}

// checkCheckpoint checks that the tree of cp.Size has cp's root and that
// entry cp.Size has cp's head hash: a ledger rewritten after the checkpoint
// was published fails, even with its chain recomputed.
func checkCheckpoint(pdb *pebble.DB, entries uint64, cp *Checkpoint) error {
	if cp.Size > entries {
		return fmt.Errorf("ledger: the checkpoint covers %d entries, the ledger has %d", cp.Size, entries)
	}
	if cp.Size == 0 {
		// The empty tree: no entry to read, but the signed root and head
		// are still the empty tree's (SHA-256 of nothing, zeros).
		if cp.Root != tlog.Hash(sha256.Sum256(nil)) || cp.Head != [32]byte{} {
			return fmt.Errorf("ledger: the checkpoint of tree size 0 does not hold the empty tree's root and head")
		}
		return nil
	}
	root, err := tlog.TreeHash(int64(cp.Size), hashReader{pdb})
	if err != nil {
		return err
	}
	if root != cp.Root {
		return fmt.Errorf("ledger: the Merkle root of entries 1..%d differs from the checkpoint's: the ledger was rewritten", cp.Size)
	}
	v, closer, err := pdb.Get(appendEntryKey(nil, cp.Size))
	if err != nil {
		return err
	}
	defer closer.Close()
	if len(v) < 32 || [32]byte(v[len(v)-32:]) != cp.Head {
		return fmt.Errorf("ledger: entry %d's hash differs from the checkpoint's head", cp.Size)
	}
	return nil
}

// beyondHead is a *ChainError when a stopped store holds an entry after
// its recorded head: the head record was lost or rewritten (Open refuses
// such a store). Verify walks only up to the head, as a running ledger may
// hold entries applied but not yet synced past it; a stopped one may not.
func beyondHead(r pebble.Reader, head uint64) error {
	it, err := r.NewIter(&pebble.IterOptions{
		LowerBound: appendEntryKey(nil, head+1),
		UpperBound: []byte{pfxEntry + 1},
	})
	if err != nil {
		return err
	}
	defer it.Close()
	if it.First() {
		seq, _ := entryKeySeq(it.Key())
		return &ChainError{Seq: seq, Reason: fmt.Sprintf("entry lies beyond the recorded head (seq %d): the head record was lost or rewritten", head)}
	}
	return it.Error()
}

// storedKind is the kind that entry seq's stored bytes give (the byte after
// the format and the seq, so read even when the rest no longer decodes), or
// 0 when there is no such entry or it is cut short before its kind.
func storedKind(r pebble.Reader, seq uint64) Kind {
	v, closer, err := r.Get(appendEntryKey(nil, seq))
	if err != nil {
		return 0
	}
	defer closer.Close()
	if len(v) < 2 || (v[0] != EntryFormat && v[0] != entryFormat1) {
		return 0
	}
	_, n := binary.Uvarint(v[1:])
	if n <= 0 || 1+n >= len(v) {
		return 0
	}
	return Kind(v[1+n])
}

// closeReadOnly closes a store opened by openReadOnly. After a read that
// failed on a corrupt file Pebble may still count a reference to it and
// panic in Close; a read-only store has nothing to flush, so that is
// ignored.
func closeReadOnly(pdb *pebble.DB) {
	defer func() { _ = recover() }()
	_ = pdb.Close()
}

// openReadOnly opens the ledger in dir read-only (the gateway must be
// stopped: Pebble locks its directory; nothing is written, not even the WAL
// replay) with its head loaded, for the offline tools (VerifyStore,
// AuditStore). The caller closes db.pdb.
func openReadOnly(dir string, fs vfs.FS) (*DB, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if desc, err := pebble.Peek(dir, fs); err != nil || !desc.Exists {
		return nil, fmt.Errorf("ledger: %s is not a ledger directory", dir)
	}
	pdb, err := pebble.Open(dir, &pebble.Options{FS: fs, ReadOnly: true, Logger: pebbleLogger{zerolog.Nop()},
		// A corrupt block fails its read (by default Pebble calls the
		// logger's Fatalf, which panics).
		EventListener: &pebble.EventListener{DataCorruption: func(pebble.DataCorruptionInfo) {}}})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s read-only (is the gateway still running?): %w", dir, err)
	}
	db := &DB{pdb: pdb}
	if err := db.readFormat(); err != nil {
		pdb.Close()
		return nil, err
	}
	h := &headState{}
	v, closer, err := pdb.Get(keyHead)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		pdb.Close()
		return nil, err
	default:
		h.seq, h.hash, err = decodeHead(v)
		if cerr := closer.Close(); cerr != nil {
			err = unreadable(cerr) // read.go: lookup
		}
		if err != nil {
			pdb.Close()
			return nil, err
		}
	}
	db.head.Store(h)
	db.sealed.Store(h.seq)
	return db, nil
}

// readFormat reads a stopped store's format and bucket shift.
func (db *DB) readFormat() error {
	v, closer, err := db.pdb.Get(keyFormat)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		db.format, db.bshift = storeFormat, defaultBucketShift // empty
		return nil
	case err != nil:
		return fmt.Errorf("ledger: store format: %w", err)
	}
	defer closer.Close()
	switch {
	case len(v) == 1 && (v[0] == 1 || v[0] == 2):
		db.format, db.bshift = v[0], defaultBucketShift
	case len(v) == 2 && (v[0] == formatBucketed || v[0] == storeFormat) && v[1] > 0 && v[1] < 64:
		db.format, db.bshift = v[0], v[1]
		if db.format == storeFormat {
			// An upgrade to format 4 not yet done (upgrade.go:
			// migrateBalances) marks the store 4 from its first batch on;
			// it is still 3 until the last.
			_, mc, err := db.pdb.Get(keyMigrating)
			switch {
			case err == nil:
				_ = mc.Close()
				db.format = formatBucketed
			case !errors.Is(err, pebble.ErrNotFound):
				return fmt.Errorf("ledger: store format: %w", err)
			}
		}
	default:
		return fmt.Errorf("ledger: unsupported store format %v", v)
	}
	return nil
}
