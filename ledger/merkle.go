package ledger

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/tlog"
)

// The Merkle tree (RFC 6962, as golang.org/x/mod/sumdb/tlog computes it)
// has one leaf per entry: leaf i (0-based) is entry seq i+1, and its record
// data is the entry's 32-byte Hash, so
//
//	leaf hash  = SHA-256(0x00 || entry.Hash)
//	node hash  = SHA-256(0x01 || left || right)
//
// The tree of size N covers entries 1..N. Its stored hashes (tlog's
// StoredHashes: every complete subtree's hash, about two per entry) are
// written in the entry's batch under l | index, so the tree is exactly as
// durable as the entries and needs nothing at restart — except the leaves
// (level 0), which are not stored: a leaf is computed from the entry's Hash,
// the last 32 bytes of its stored value, which saves a key per entry. Tree
// hashes and proofs for any size up to the durable head read O(log N)
// stored hashes and at most a few entries.

// LeafHash is the Merkle leaf hash of the entry whose Hash is entryHash.
func LeafHash(entryHash [32]byte) tlog.Hash { return tlog.RecordHash(entryHash[:]) }

func appendTreeKey(b []byte, index int64) []byte {
	b = append(b, pfxTree)
	return be.AppendUint64(b, uint64(index))
}

// hashReader reads stored hashes from a Pebble reader (the DB, a snapshot
// or the writer's batch).
type hashReader struct{ r pebble.Reader }

func (h hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var key [9]byte
	for i, idx := range indexes {
		if level, n := tlog.SplitStoredHashIndex(idx); level == 0 {
			// A leaf: from the entry (seq n+1).
			v, closer, err := h.r.Get(appendEntryKey(key[:0], uint64(n)+1))
			if errors.Is(err, pebble.ErrNotFound) {
				return nil, fmt.Errorf("%w: entry %d missing for its Merkle leaf", ErrCorrupt, n+1)
			}
			if err != nil {
				return nil, unreadable(err)
			}
			if len(v) < 32 {
				_ = closer.Close()
				return nil, fmt.Errorf("%w: entry %d truncated", ErrCorrupt, n+1)
			}
			out[i] = LeafHash([32]byte(v[len(v)-32:]))
			if err := closer.Close(); err != nil {
				return nil, unreadable(err) // read.go: lookup
			}
			continue
		}
		v, closer, err := h.r.Get(appendTreeKey(key[:0], idx))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("%w: Merkle tree hash %d missing", ErrCorrupt, idx)
		}
		if err != nil {
			return nil, unreadable(err)
		}
		if len(v) != tlog.HashSize {
			_ = closer.Close()
			return nil, fmt.Errorf("%w: Merkle tree hash %d of %d bytes", ErrCorrupt, idx, len(v))
		}
		copy(out[i][:], v)
		if err := closer.Close(); err != nil {
			return nil, unreadable(err) // read.go: lookup
		}
	}
	return out, nil
}

// ErrTreeSize: a tree size beyond the durable head, or 0 where a non-empty
// tree is needed [400/404].
var ErrTreeSize = errors.New("ledger: no such tree size")

func (db *DB) checkSize(size uint64) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if size == 0 || size > db.head.Load().seq {
		return fmt.Errorf("%w: %d (the ledger has %d entries)", ErrTreeSize, size, db.head.Load().seq)
	}
	return nil
}

// TreeHash is the Merkle tree hash (root) of entries 1..size; size must be
// between 1 and the durable head.
func (db *DB) TreeHash(size uint64) (tlog.Hash, error) {
	if err := db.checkSize(size); err != nil {
		return tlog.Hash{}, err
	}
	return tlog.TreeHash(int64(size), hashReader{db.pdb})
}

// InclusionProof proves that entry seq is leaf seq−1 of the tree of size
// size (seq ≤ size ≤ durable head).
func (db *DB) InclusionProof(seq, size uint64) (tlog.RecordProof, error) {
	if err := db.checkSize(size); err != nil {
		return nil, err
	}
	if seq == 0 || seq > size {
		return nil, fmt.Errorf("%w: entry %d is not in the tree of size %d", ErrTreeSize, seq, size)
	}
	return tlog.ProveRecord(int64(size), int64(seq-1), hashReader{db.pdb})
}

// ConsistencyProof proves that the tree of size from is a prefix of the
// tree of size to (1 ≤ from ≤ to ≤ durable head).
func (db *DB) ConsistencyProof(from, to uint64) (tlog.TreeProof, error) {
	if err := db.checkSize(to); err != nil {
		return nil, err
	}
	if from == 0 || from > to {
		return nil, fmt.Errorf("%w: %d is not between 1 and %d", ErrTreeSize, from, to)
	}
	return tlog.ProveTree(int64(to), int64(from), hashReader{db.pdb})
}

// TreeError is returned by VerifyTree: the stored Merkle hashes written with
// entry Seq do not match the entries.
type TreeError struct {
	Seq    uint64
	Kind   Kind // as ChainError's
	Reason string
}

func (e *TreeError) Error() string {
	return fmt.Sprintf("ledger: Merkle tree wrong at seq %d: %s", e.Seq, e.Reason)
}

// VerifyTree recomputes the Merkle tree from the entries' hashes up to the
// durable head (as of the call) and checks every stored hash against it,
// returning the root; the first entry whose stored hashes differ is named
// in a *TreeError. Run it after Verify: it trusts each entry's Hash field.
func (db *DB) VerifyTree() (size uint64, root tlog.Hash, err error) {
	if db.closed.Load() {
		return 0, root, ErrClosed
	}
	head := db.head.Load().seq
	if head == 0 {
		// RFC 6962's root of the empty tree, as the checkpoint of size 0
		// signs it (VERIFY.md), not zeros.
		return 0, tlog.Hash(sha256.Sum256(nil)), nil
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: appendEntryKey(nil, 1),
		UpperBound: appendEntryKey(nil, head+1),
	})
	if err != nil {
		return 0, root, err
	}
	defer it.Close()
	// Stored hashes below the current record were checked already, so the
	// store itself can serve as the reader that StoredHashes needs.
	rd := hashReader{db.pdb}
	want := uint64(1)
	for it.First(); it.Valid(); it.Next() {
		seq, ok := entryKeySeq(it.Key())
		v := it.Value()
		if !ok || seq != want || len(v) < 32 {
			return 0, root, &TreeError{Seq: want, Reason: "entry missing or truncated (run the chain check)"}
		}
		hs, err := tlog.StoredHashes(int64(seq-1), v[len(v)-32:], rd)
		if err != nil {
			return 0, root, &TreeError{Seq: seq, Reason: err.Error()}
		}
		idx := tlog.StoredHashIndex(0, int64(seq-1))
		got, err := rd.ReadHashes(indexRange(idx, len(hs)))
		if err != nil {
			return 0, root, &TreeError{Seq: seq, Reason: err.Error()}
		}
		for i := range hs {
			if i > 0 && got[i] != hs[i] { // hs[0], the leaf, is not stored
				return 0, root, &TreeError{Seq: seq, Reason: fmt.Sprintf("stored hash %d differs from the recomputed one", idx+int64(i))}
			}
		}
		want++
	}
	if err := it.Error(); err != nil {
		return 0, root, err
	}
	if want != head+1 {
		return 0, root, &TreeError{Seq: want, Reason: "entry missing (run the chain check)"}
	}
	root, err = tlog.TreeHash(int64(head), rd)
	return head, root, err
}

func indexRange(start int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = start + int64(i)
	}
	return out
}
