package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"medgate/ledger"
)

// A clearing house that saved the checkpoint of an empty ledger (tree size
// 0, VERIFY.md: root SHA-256 of nothing) and its export (no line) must be
// able to check one against the other; so must an export from seq 1 of a
// ledger that has grown since, of which the empty tree is a prefix. A
// size-0 checkpoint with another root or head is refused.
func TestR6VerifyExportAgainstTheEmptyTreeCheckpoint(t *testing.T) {
	dir := t.TempDir()
	db, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ledger.NewCheckpointSigner(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.MakeCheckpoint(0, time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	doc, err := ledger.NewCheckpointDoc(c, s)
	if err != nil {
		t.Fatal(err)
	}
	cp0 := writeJSONFile(t, filepath.Join(dir, "cp0.json"), doc)
	empty := filepath.Join(dir, "empty.ndjson")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runVerify("export", "--key", s.VerifierKey, "--checkpoint", cp0, empty)
	if code != 0 || !strings.Contains(out, "matches the signed checkpoint of tree size 0") {
		t.Errorf("verify export of the empty ledger against its checkpoint: exit %d, %q %q; want 0", code, out, errs)
	}

	// The empty tree is a prefix of every export that starts at seq 1.
	f := newVerifyFixture(t)
	code, out, errs = runVerify("export", "--key", s.VerifierKey, "--checkpoint", cp0, f.export)
	if code != 0 || !strings.Contains(out, "matches the signed checkpoint of tree size 0") {
		t.Errorf("verify export from seq 1 against the checkpoint of size 0: exit %d, %q %q; want 0", code, out, errs)
	}

	// A size-0 checkpoint stating another root, or a head, matches nothing.
	for name, alter := range map[string]func(*ledger.Checkpoint){
		"root": func(c *ledger.Checkpoint) { c.Root[0] ^= 1 },
		"head": func(c *ledger.Checkpoint) { c.Head[0] ^= 1 },
	} {
		bad := *c
		alter(&bad)
		doc, err := ledger.NewCheckpointDoc(&bad, s)
		if err != nil {
			t.Fatal(err)
		}
		p := writeJSONFile(t, filepath.Join(dir, "cp0-"+name+".json"), doc)
		if code, out, errs := runVerify("export", "--key", s.VerifierKey, "--checkpoint", p, empty); code != 1 {
			t.Errorf("verify export against a size-0 checkpoint with another %s: exit %d, %q %q; want 1", name, code, out, errs)
		}
	}
}
