package ledger

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The JSON documents the gateway answers for checkpoints and proofs, and
// their offline verification (medgate verify). Merkle hashes (roots, proof
// hashes) are base64 as in the checkpoint text and golang.org/x/mod's tlog;
// entry hashes (the hash chain) are hex as everywhere else in the API.

// CheckpointDoc is GET /v1/clearing/checkpoint's answer.
type CheckpointDoc struct {
	Origin         string    `json:"origin"`
	TreeSize       uint64    `json:"tree_size"`
	RootHash       tlog.Hash `json:"root_hash"`
	LedgerHeadHash string    `json:"ledger_head_hash"`
	Time           string    `json:"time"`
	VerifierKey    string    `json:"verifier_key"`
	// Checkpoint is the signed note; the fields above repeat its content.
	Checkpoint string `json:"checkpoint"`
}

// NewCheckpointDoc renders a checkpoint signed by s.
func NewCheckpointDoc(c *Checkpoint, s *CheckpointSigner) (*CheckpointDoc, error) {
	signed, err := s.Sign(c)
	if err != nil {
		return nil, err
	}
	return &CheckpointDoc{Origin: CheckpointOrigin, TreeSize: c.Size, RootHash: c.Root,
		LedgerHeadHash: hex.EncodeToString(c.Head[:]), Time: c.Time.UTC().Format(time.RFC3339),
		VerifierKey: s.VerifierKey, Checkpoint: string(signed)}, nil
}

// Verify checks the signed note against v (never against the document's
// own verifier_key) and that the other fields say what it says.
func (d *CheckpointDoc) Verify(v note.Verifier) (*Checkpoint, error) {
	c, err := OpenCheckpoint([]byte(d.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	switch {
	case d.Origin != CheckpointOrigin:
		return nil, fmt.Errorf("ledger: origin %q differs from the signed checkpoint's", d.Origin)
	case d.TreeSize != c.Size:
		return nil, fmt.Errorf("ledger: tree_size %d differs from the signed checkpoint's %d", d.TreeSize, c.Size)
	case d.RootHash != c.Root:
		return nil, fmt.Errorf("ledger: root_hash differs from the signed checkpoint's")
	case d.LedgerHeadHash != hex.EncodeToString(c.Head[:]):
		return nil, fmt.Errorf("ledger: ledger_head_hash differs from the signed checkpoint's")
	case d.Time != c.Time.Format(time.RFC3339):
		return nil, fmt.Errorf("ledger: time differs from the signed checkpoint's")
	}
	return c, nil
}

// InclusionDoc proves that a settlement (or reversal) entry is in the tree
// of size TreeSize.
type InclusionDoc struct {
	SettlementID string `json:"settlement_id"`
	Seq          uint64 `json:"seq"`
	LeafIndex    uint64 `json:"leaf_index"` // Seq − 1
	TreeSize     uint64 `json:"tree_size"`
	// Entry is the entry's canonical encoding (base64): its last 32 bytes
	// are its Hash = SHA-256(PrevHash || the rest), PrevHash being the 32
	// bytes before them.
	Entry     string      `json:"entry"`
	EntryHash string      `json:"entry_hash"` // hex
	LeafHash  tlog.Hash   `json:"leaf_hash"`  // SHA-256(0x00 || entry hash)
	RootHash  tlog.Hash   `json:"root_hash"`
	Proof     []tlog.Hash `json:"proof"`
	// Checkpoint is the signed checkpoint of TreeSize.
	Checkpoint string `json:"checkpoint"`
}

// Verify checks everything offline: the entry's hash from its bytes and
// that it is the settlement named, the leaf hash, the Merkle path up to
// the root, and that the root is the one the checkpoint signed by v
// states for the tree size. It returns the checkpoint and the entry.
func (d *InclusionDoc) Verify(v note.Verifier) (*Checkpoint, *Entry, error) {
	c, err := OpenCheckpoint([]byte(d.Checkpoint), v)
	if err != nil {
		return nil, nil, err
	}
	if c.Size != d.TreeSize || c.Root != d.RootHash {
		return nil, nil, fmt.Errorf("ledger: the proof's tree size and root are not the signed checkpoint's")
	}
	if d.Seq == 0 || d.Seq > d.TreeSize {
		return nil, nil, fmt.Errorf("ledger: seq %d is not in a tree of size %d", d.Seq, d.TreeSize)
	}
	raw, err := base64.StdEncoding.DecodeString(d.Entry)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: entry is not base64: %w", err)
	}
	e := new(Entry)
	if err := DecodeEntry(raw, e); err != nil {
		return nil, nil, err
	}
	if EntryHash(e.PrevHash, raw[:len(raw)-32]) != e.Hash {
		return nil, nil, fmt.Errorf("ledger: the entry's hash does not match its contents")
	}
	switch {
	case e.Seq != d.Seq || e.SettlementID != d.SettlementID || d.LeafIndex != d.Seq-1:
		return nil, nil, fmt.Errorf("ledger: the entry is %s (seq %d), not %s (seq %d, leaf %d)",
			e.SettlementID, e.Seq, d.SettlementID, d.Seq, d.LeafIndex)
	case d.EntryHash != hex.EncodeToString(e.Hash[:]):
		return nil, nil, fmt.Errorf("ledger: entry_hash is not the entry's hash")
	case d.LeafHash != LeafHash(e.Hash):
		return nil, nil, fmt.Errorf("ledger: leaf_hash is not SHA-256(0x00 || entry hash)")
	case d.TreeSize == d.Seq && c.Head != e.Hash:
		return nil, nil, fmt.Errorf("ledger: the checkpoint's head is not this entry")
	}
	if err := tlog.CheckRecord(d.Proof, int64(d.TreeSize), d.RootHash, int64(d.LeafIndex), d.LeafHash); err != nil {
		return nil, nil, fmt.Errorf("ledger: inclusion proof: %w", err)
	}
	return c, e, nil
}

// ConsistencyDoc proves that the tree of size FromSize is a prefix of the
// tree of size ToSize.
type ConsistencyDoc struct {
	FromSize       uint64      `json:"from_size"`
	ToSize         uint64      `json:"to_size"`
	FromRoot       tlog.Hash   `json:"from_root"`
	ToRoot         tlog.Hash   `json:"to_root"`
	Proof          []tlog.Hash `json:"proof"`
	FromCheckpoint string      `json:"from_checkpoint"` // signed checkpoint of FromSize
	ToCheckpoint   string      `json:"to_checkpoint"`   // signed checkpoint of ToSize
}

// Verify checks both checkpoints against v, that they state the roots
// given, and the proof. It returns the two checkpoints.
func (d *ConsistencyDoc) Verify(v note.Verifier) (from, to *Checkpoint, err error) {
	if from, err = OpenCheckpoint([]byte(d.FromCheckpoint), v); err != nil {
		return nil, nil, fmt.Errorf("from_checkpoint: %w", err)
	}
	if to, err = OpenCheckpoint([]byte(d.ToCheckpoint), v); err != nil {
		return nil, nil, fmt.Errorf("to_checkpoint: %w", err)
	}
	if from.Size != d.FromSize || from.Root != d.FromRoot || to.Size != d.ToSize || to.Root != d.ToRoot {
		return nil, nil, fmt.Errorf("ledger: the proof's sizes and roots are not the signed checkpoints'")
	}
	if err := VerifyConsistency(d.Proof, d.FromSize, d.FromRoot, d.ToSize, d.ToRoot); err != nil {
		return nil, nil, err
	}
	return from, to, nil
}

// NewInclusionDoc proves that entry e (as read from the ledger) is in the
// tree of size size (0: the durable head), with the checkpoint of that size
// signed by s at time t.
func (db *DB) NewInclusionDoc(e *Entry, size uint64, s *CheckpointSigner, t time.Time) (*InclusionDoc, error) {
	if size == 0 {
		size = db.head.Load().seq
	}
	if e.Seq == 0 || e.Seq > size {
		return nil, fmt.Errorf("%w: %s (seq %d) is not in the tree of size %d", ErrTreeSize, e.SettlementID, e.Seq, size)
	}
	c, err := db.MakeCheckpoint(size, t)
	if err != nil {
		return nil, err
	}
	signed, err := s.Sign(c)
	if err != nil {
		return nil, err
	}
	proof, err := db.InclusionProof(e.Seq, size)
	if err != nil {
		return nil, err
	}
	return &InclusionDoc{SettlementID: e.SettlementID, Seq: e.Seq, LeafIndex: e.Seq - 1, TreeSize: size,
		Entry:     base64.StdEncoding.EncodeToString(AppendEntry(nil, e)),
		EntryHash: hex.EncodeToString(e.Hash[:]), LeafHash: LeafHash(e.Hash),
		RootHash: c.Root, Proof: append([]tlog.Hash{}, proof...), Checkpoint: string(signed)}, nil
}

// NewConsistencyDoc proves that the tree of size from is a prefix of the
// tree of size to (0: the durable head), with both checkpoints signed by s
// at time t.
func (db *DB) NewConsistencyDoc(from, to uint64, s *CheckpointSigner, t time.Time) (*ConsistencyDoc, error) {
	if to == 0 {
		to = db.head.Load().seq
	}
	if from == 0 || from > to {
		return nil, fmt.Errorf("%w: from %d must be between 1 and %d", ErrTreeSize, from, to)
	}
	fc, err := db.MakeCheckpoint(from, t)
	if err != nil {
		return nil, err
	}
	tc, err := db.MakeCheckpoint(to, t)
	if err != nil {
		return nil, err
	}
	fs, err := s.Sign(fc)
	if err != nil {
		return nil, err
	}
	ts, err := s.Sign(tc)
	if err != nil {
		return nil, err
	}
	proof, err := db.ConsistencyProof(from, to)
	if err != nil {
		return nil, err
	}
	return &ConsistencyDoc{FromSize: from, ToSize: to, FromRoot: fc.Root, ToRoot: tc.Root,
		Proof: append([]tlog.Hash{}, proof...), FromCheckpoint: string(fs), ToCheckpoint: string(ts)}, nil
}

// VerifyConsistency checks a consistency proof between two tree heads.
func VerifyConsistency(proof []tlog.Hash, fromSize uint64, fromRoot tlog.Hash, toSize uint64, toRoot tlog.Hash) error {
	if fromSize == 0 || fromSize > toSize {
		return fmt.Errorf("ledger: consistency between sizes %d and %d", fromSize, toSize)
	}
	if err := tlog.CheckTree(proof, int64(toSize), toRoot, int64(fromSize), fromRoot); err != nil {
		return fmt.Errorf("ledger: consistency proof: %w", err)
	}
	return nil
}
