package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/mod/sumdb/tlog"
)

// appendN appends n settlements and returns them.
func appendN(t *testing.T, db *DB, from, n int) []*Entry {
	t.Helper()
	var out []*Entry
	for i := from; i < from+n; i++ {
		e := pairEntry(req(i), "152500", "370102", int64(100+i), int64(i), 0)
		mustAppend(t, db, e)
		out = append(out, e)
	}
	return out
}

func TestMerkleTreeAndProofs(t *testing.T) {
	fs := vfs.NewMem()
	clk := newTestClock(utc("2026-10-05T02:00:00Z"))
	db := openClock(t, fs, clk)
	const n = 23
	es := appendN(t, db, 0, n)
	// Reference roots from the leaves alone.
	var f []frontierNode
	roots := make([]tlog.Hash, n+1)
	for i, e := range es {
		f = frontierAdd(f, LeafHash(e.Hash))
		roots[i+1] = frontierRoot(f)
	}
	for size := uint64(1); size <= n; size++ {
		root, err := db.TreeHash(size)
		if err != nil || root != roots[size] {
			t.Fatalf("TreeHash(%d) = %v %v", size, root, err)
		}
		for seq := uint64(1); seq <= size; seq++ {
			p, err := db.InclusionProof(seq, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf := LeafHash(es[seq-1].Hash)
			if err := tlog.CheckRecord(p, int64(size), root, int64(seq-1), leaf); err != nil {
				t.Fatalf("inclusion %d in %d: %v", seq, size, err)
			}
			if len(p) > 0 {
				p[0][0] ^= 1
				if tlog.CheckRecord(p, int64(size), root, int64(seq-1), leaf) == nil {
					t.Fatalf("tampered inclusion proof %d in %d verified", seq, size)
				}
			}
			if seq < size && tlog.CheckRecord(p, int64(size), root, int64(seq), leaf) == nil {
				t.Fatalf("inclusion proof verified at the wrong index")
			}
		}
		for from := uint64(1); from <= size; from++ {
			p, err := db.ConsistencyProof(from, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(p, from, roots[from], size, root); err != nil {
				t.Fatalf("consistency %d→%d: %v", from, size, err)
			}
			wrong := roots[from]
			wrong[5] ^= 1
			if VerifyConsistency(p, from, wrong, size, root) == nil {
				t.Fatalf("consistency %d→%d verified with another old root", from, size)
			}
		}
	}
	if _, err := db.TreeHash(n + 1); !errors.Is(err, ErrTreeSize) {
		t.Fatalf("TreeHash beyond the head: %v", err)
	}
	if _, err := db.InclusionProof(5, 4); !errors.Is(err, ErrTreeSize) {
		t.Fatalf("inclusion beyond the size: %v", err)
	}
	if size, root, err := db.VerifyTree(); err != nil || size != n || root != roots[n] {
		t.Fatalf("VerifyTree = %d %v", size, err)
	}

	// The tree survives a restart and grows consistently.
	db.Close()
	db = openClock(t, fs, clk)
	if root, err := db.TreeHash(n); err != nil || root != roots[n] {
		t.Fatalf("after restart: %v", err)
	}
	appendN(t, db, n, 9)
	root32, _ := db.TreeHash(n + 9)
	p, _ := db.ConsistencyProof(n, n+9)
	if err := VerifyConsistency(p, n, roots[n], n+9, root32); err != nil {
		t.Fatal(err)
	}

	// A stored hash altered is found, at the entry that wrote it.
	db.Close()
	pdb, err := rawOpen("ledger", fs, false)
	if err != nil {
		t.Fatal(err)
	}
	idx := tlog.StoredHashIndex(1, 4) // entries 9 and 10's node, stored with entry 10
	_ = pdb.Set(appendTreeKey(nil, idx), bytes.Repeat([]byte{7}, 32), pebble.Sync)
	pdb.Close()
	db = openClock(t, fs, clk)
	var te *TreeError
	if _, _, err := db.VerifyTree(); !errors.As(err, &te) || te.Seq != 10 {
		t.Fatalf("VerifyTree after tampering = %v", err)
	}
}

func TestCheckpointSignature(t *testing.T) {
	s, err := NewCheckpointSigner(DemoCheckpointSeed())
	if err != nil {
		t.Fatal(err)
	}
	c := &Checkpoint{Size: 42, Root: tlog.RecordHash([]byte("x")), Head: [32]byte{1, 2, 3},
		Time: time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)}
	signed, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(signed), "medgate-ledger\n42\n") || !strings.Contains(string(signed), "\ntime 2026-11-01T08:00:00Z\n\n— medgate-ledger ") {
		t.Fatalf("checkpoint text:\n%s", signed)
	}
	for _, key := range []string{s.VerifierKey, strings.TrimSpace(hexString(s.Public))} {
		v, err := ParseVerifier(key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := OpenCheckpoint(signed, v)
		if err != nil || *got != *c {
			t.Fatalf("OpenCheckpoint = %+v %v", got, err)
		}
	}
	v, _ := ParseVerifier(s.VerifierKey)
	tampered := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := OpenCheckpoint(tampered, v); err == nil {
		t.Fatal("a tampered checkpoint verified")
	}
	other, _ := NewCheckpointSigner(bytes.Repeat([]byte{9}, 32))
	ov, _ := ParseVerifier(other.VerifierKey)
	if _, err := OpenCheckpoint(signed, ov); err == nil {
		t.Fatal("a checkpoint verified with another key")
	}
	if _, err := ParseCheckpointSeed([]byte("  " + hexString(DemoCheckpointSeed()) + "\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCheckpointSeed([]byte("abcd")); err == nil {
		t.Fatal("a short seed was accepted")
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func exportAll(t *testing.T, db *DB, from, to uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := db.ScanRaw(from, to, func(e *Entry, enc []byte) error {
		b, err := json.Marshal(NewExportRecord(e, enc))
		buf.Write(b)
		buf.WriteByte('\n')
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportVerifies(t *testing.T) {
	clk := newTestClock(utc("2026-10-05T02:00:00Z"))
	db := openClock(t, vfs.NewMem(), clk)
	es := appendN(t, db, 0, 12)
	mustAppend(t, db, reversal("r", es[3]))
	cp, err := db.MakeCheckpoint(10, clk.now())
	if err != nil {
		t.Fatal(err)
	}
	exp := exportAll(t, db, 0, 0)
	rep, err := VerifyExport(bytes.NewReader(exp), cp)
	if err != nil || rep.Entries != 13 || !rep.HasRoot || !rep.CheckpointMatched {
		t.Fatalf("VerifyExport = %+v %v", rep, err)
	}
	if root, _ := db.TreeHash(13); root != rep.Root {
		t.Fatal("the export's root is not the tree's")
	}
	// A range verifies as a chain, without a root.
	if rep, err := VerifyExport(bytes.NewReader(exportAll(t, db, 4, 9)), nil); err != nil || rep.From != 4 || rep.To != 9 || rep.HasRoot {
		t.Fatalf("range: %+v %v", rep, err)
	}
	lines := strings.SplitAfter(string(exp), "\n")
	check := func(name string, lines []string, wantLine int) {
		t.Helper()
		_, err := VerifyExport(strings.NewReader(strings.Join(lines, "")), cp)
		var ee *ExportError
		if !errors.As(err, &ee) || ee.Line != wantLine {
			t.Fatalf("%s: %v, want an error at line %d", name, err, wantLine)
		}
	}
	altered := append([]string(nil), lines...)
	altered[4] = strings.Replace(altered[4], `"total":"1.04"`, `"total":"9.04"`, 1)
	if altered[4] == lines[4] {
		t.Fatal("test: nothing replaced")
	}
	check("a readable amount altered", altered, 5)
	dropped := append(append([]string(nil), lines[:6]...), lines[7:]...)
	check("an entry dropped", dropped, 7)
	cp.Root[0] ^= 1
	check("another checkpoint", lines, 10)
}

func TestVerifyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	clk := newTestClock(utc("2026-10-05T02:00:00Z"))
	db, err := Open(dir, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, db, 0, 17)
	cp, _ := db.MakeCheckpoint(0, clk.now())
	if _, err := VerifyStore(dir, nil, nil); err == nil {
		t.Fatal("VerifyStore opened a ledger in use")
	}
	db.Close()
	rep, err := VerifyStore(dir, nil, cp)
	if err != nil || !rep.OK() || rep.Entries != 17 || rep.Root != cp.Root {
		t.Fatalf("VerifyStore = %+v %v", rep, err)
	}
	if _, err := VerifyStore(filepath.Join(t.TempDir(), "none"), nil, nil); err == nil {
		t.Fatal("VerifyStore of a missing directory")
	}
	// Rewrite entry 6 and re-chain everything after it: the chain holds,
	// the stored tree does not, and the checkpoint finds the rewrite even
	// once the tree is rebuilt.
	pdb, err := rawOpen(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var prev [32]byte
	for seq := uint64(1); seq <= 17; seq++ {
		v, closer, _ := pdb.Get(appendEntryKey(nil, seq))
		var e Entry
		if err := DecodeEntry(v, &e); err != nil {
			t.Fatal(err)
		}
		closer.Close()
		if seq == 6 {
			e.Amounts.FundTotal += 100
		}
		e.PrevHash = prev
		body := appendEntryBody(nil, &e)
		e.Hash = EntryHash(prev, body)
		prev = e.Hash
		_ = pdb.Set(appendEntryKey(nil, seq), append(body, e.Hash[:]...), nil)
	}
	_ = pdb.Set(keyHead, append(be.AppendUint64(nil, 17), prev[:]...), pebble.Sync)
	pdb.Close()
	rep, err = VerifyStore(dir, nil, cp)
	var te *TreeError
	if err != nil || rep.ChainErr != nil || !errors.As(rep.TreeErr, &te) || te.Seq != 6 {
		t.Fatalf("after a rewrite: %+v %v", rep, err)
	}
	// Rebuild the tree (as an attacker could, through a format-1 reopen).
	pdb, _ = rawOpen(dir, nil, false)
	_ = pdb.Set(keyFormat, []byte{1}, pebble.Sync)
	pdb.Close()
	db, err = Open(dir, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	rep, err = VerifyStore(dir, nil, cp)
	if err != nil || rep.ChainErr != nil || rep.TreeErr != nil || rep.CheckpointErr == nil {
		t.Fatalf("after a rewrite and rebuild: %+v %v", rep, err)
	}
	// An altered entry breaks the chain at that entry.
	pdb, _ = rawOpen(dir, nil, false)
	v, closer, _ := pdb.Get(appendEntryKey(nil, 9))
	bad := append([]byte(nil), v...)
	closer.Close()
	bad[len(bad)-40] ^= 1
	_ = pdb.Set(appendEntryKey(nil, 9), bad, pebble.Sync)
	pdb.Close()
	rep, err = VerifyStore(dir, nil, nil)
	var ce *ChainError
	if err != nil || !errors.As(rep.ChainErr, &ce) || ce.Seq != 9 {
		t.Fatalf("after altering entry 9: %+v %v", rep, err)
	}
}
