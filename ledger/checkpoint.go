package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A checkpoint is a signed tree head: the Merkle root of entries 1..N, the
// Hash of entry N (tying the tree to the hash chain) and the signing time,
// as a C2SP tlog-checkpoint body signed as a golang.org/x/mod/sumdb/note:
//
//	medgate-ledger
//	<tree size N, decimal>
//	<root hash, base64>
//	head <Hash of entry N, 64 hex digits; zeros for N = 0>
//	time <signing time, RFC 3339, UTC>
//
//	— medgate-ledger <base64(key hash (4) || ed25519 signature (64))>
//
// The key is an ed25519 key named CheckpointKeyName; its verifier key is the
// note verifier key "medgate-ledger+<hash>+<base64(0x01 || public key)>".

// CheckpointOrigin is the first line of every checkpoint; CheckpointKeyName
// is the name of the signing key.
const (
	CheckpointOrigin  = "medgate-ledger"
	CheckpointKeyName = "medgate-ledger"
)

// Checkpoint is a tree head.
type Checkpoint struct {
	Size uint64
	Root tlog.Hash
	Head [32]byte // Hash of entry Size
	Time time.Time
}

// Text is the checkpoint's note body.
func (c *Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\nhead %s\ntime %s\n", CheckpointOrigin, c.Size,
		base64.StdEncoding.EncodeToString(c.Root[:]), hex.EncodeToString(c.Head[:]),
		c.Time.UTC().Format(time.RFC3339))
}

// ParseCheckpointText parses a note body made by Text, strictly.
func ParseCheckpointText(text string) (*Checkpoint, error) {
	bad := func(what string) (*Checkpoint, error) {
		return nil, fmt.Errorf("ledger: malformed checkpoint: %s", what)
	}
	lines := strings.Split(text, "\n")
	if len(lines) != 6 || lines[5] != "" {
		return bad("want 5 lines")
	}
	if lines[0] != CheckpointOrigin {
		return bad(fmt.Sprintf("origin %q, want %q", lines[0], CheckpointOrigin))
	}
	c := &Checkpoint{}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != lines[1] {
		return bad("tree size")
	}
	c.Size = n
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return bad("root hash")
	}
	copy(c.Root[:], root)
	head, ok := strings.CutPrefix(lines[3], "head ")
	hb, err := hex.DecodeString(head)
	if !ok || err != nil || len(hb) != 32 || hex.EncodeToString(hb) != head {
		return bad("head line")
	}
	copy(c.Head[:], hb)
	ts, ok := strings.CutPrefix(lines[4], "time ")
	t, err := time.Parse(time.RFC3339, ts)
	if !ok || err != nil || t.UTC().Format(time.RFC3339) != ts {
		return bad("time line")
	}
	c.Time = t.UTC()
	return c, nil
}

// CheckpointSigner signs checkpoints with an ed25519 key.
type CheckpointSigner struct {
	signer      note.Signer
	VerifierKey string // the note verifier key to publish
	Public      ed25519.PublicKey
}

// NewCheckpointSigner makes a signer of the ed25519 key with seed seed (32
// bytes).
func NewCheckpointSigner(seed []byte) (*CheckpointSigner, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("ledger: a checkpoint key seed has %d bytes, not %d", ed25519.SeedSize, len(seed))
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(CheckpointKeyName, pub)
	if err != nil {
		return nil, err
	}
	// The signer key shares the verifier key's name and hash.
	parts := strings.Split(vkey, "+")
	skey := "PRIVATE+KEY+" + parts[0] + "+" + parts[1] + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{1}, seed...))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	return &CheckpointSigner{signer: s, VerifierKey: vkey, Public: pub}, nil
}

// Sign returns the signed note of c.
func (s *CheckpointSigner) Sign(c *Checkpoint) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Text()}, s.signer)
}

// DemoCheckpointSeed is the seed of the demo checkpoint key, derived from a
// fixed public string: anybody can sign with it, so checkpoints signed with
// it prove nothing. Only for demos and tests.
func DemoCheckpointSeed() []byte {
	s := sha256.Sum256([]byte("medgate demo checkpoint key: public, NOT SECRET, demo only"))
	return s[:]
}

// ParseCheckpointSeed reads a checkpoint key file's content: the 32-byte
// ed25519 seed as 64 hex digits (surrounding white space ignored).
func ParseCheckpointSeed(b []byte) ([]byte, error) {
	s := string(bytes.TrimSpace(b))
	seed, err := hex.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("ledger: a checkpoint key is an ed25519 seed in 64 hex digits")
	}
	return seed, nil
}

// ParseVerifier accepts a note verifier key ("medgate-ledger+1a2b3c4d+AQ…")
// or an ed25519 public key in 64 hex digits (named CheckpointKeyName).
func ParseVerifier(key string) (note.Verifier, error) {
	key = strings.TrimSpace(key)
	if pub, err := hex.DecodeString(key); err == nil && len(pub) == ed25519.PublicKeySize {
		vkey, err := note.NewEd25519VerifierKey(CheckpointKeyName, pub)
		if err != nil {
			return nil, err
		}
		key = vkey
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, fmt.Errorf("ledger: verifier key: %w (want a note verifier key or 64 hex digits of an ed25519 public key)", err)
	}
	return v, nil
}

// OpenCheckpoint checks a signed checkpoint against v and parses it.
func OpenCheckpoint(signed []byte, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("ledger: checkpoint signature: %w", err)
	}
	return ParseCheckpointText(n.Text)
}

// MakeCheckpoint builds the checkpoint of the tree of size (0: the durable
// head) at time t.
func (db *DB) MakeCheckpoint(size uint64, t time.Time) (*Checkpoint, error) {
	head := db.head.Load()
	if size == 0 {
		size = head.seq
	}
	c := &Checkpoint{Size: size, Time: t.UTC().Truncate(time.Second)}
	if size == 0 {
		// The empty tree: RFC 6962's root is the hash of nothing.
		c.Root = tlog.Hash(sha256.Sum256(nil))
		return c, nil
	}
	root, err := db.TreeHash(size)
	if err != nil {
		return nil, err
	}
	c.Root = root
	if size == head.seq {
		c.Head = head.hash
	} else {
		e, err := db.Entry(size)
		if err != nil {
			return nil, err
		}
		c.Head = e.Hash
	}
	return c, nil
}
