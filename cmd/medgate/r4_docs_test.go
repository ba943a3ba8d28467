package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"medgate/ledger"
)

// VERIFY.md: a CHECKPOINT file is "the checkpoint endpoint's JSON or the
// bare signed note". The note is a JSON string in the answer, so a clearing
// house saves it with `jq -r .checkpoint > cp.txt` (which adds a newline),
// `echo "$note"`, or an editor on Windows (CRLF): each used to FAIL as a
// "malformed note", a false alarm about a genuine checkpoint. A note whose
// signed text was changed still fails.
func TestVerifyBareNoteAsSaved(t *testing.T) {
	f := newVerifyFixture(t)
	b, err := os.ReadFile(f.checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Checkpoint string `json:"checkpoint"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, note string
		code       int
	}{
		{"as answered", d.Checkpoint, 0},
		{"jq -r (one more newline)", d.Checkpoint + "\n", 0},
		{"CRLF line ends", strings.ReplaceAll(d.Checkpoint, "\n", "\r\n"), 0},
		{"trailing spaces and newlines", d.Checkpoint + "  \n\n", 0},
		{"size changed", strings.Replace(d.Checkpoint, "\n9\n", "\n8\n", 1), 1},
		{"a line added", strings.Replace(d.Checkpoint, "\n\n", "\nextra\n\n", 1), 1},
	} {
		p := write("note-"+strings.Fields(c.name)[0]+".txt", c.note)
		code, out, errs := runVerify("checkpoint", "--key", f.vkey, p)
		if code != c.code {
			t.Errorf("checkpoint, bare note %s: exit %d, want %d; %q %q", c.name, code, c.code, out, errs)
		}
		// The same file as --checkpoint of an export and --old of a
		// consistency proof.
		if c.code == 0 {
			if code, out, errs := runVerify("export", "--key", f.vkey, "--checkpoint", p, f.export); code != 0 {
				t.Errorf("export against the bare note %s: exit %d; %q %q", c.name, code, out, errs)
			}
		}
	}
}

// VERIFY.md: "the empty tree's hash is SHA-256 of nothing", and the
// gateway signs that root for a ledger without entries. `verify ledger`
// of such a ledger printed a root of zeros, which no published checkpoint
// holds, and took a signed checkpoint of size 0 with any root as held.
func TestVerifyEmptyLedgerRoot(t *testing.T) {
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
	empty := sha256.Sum256(nil)
	if c.Root != tlog.Hash(empty) {
		t.Fatalf("the gateway's checkpoint of the empty tree has root %s, want SHA-256 of nothing", c.Root)
	}
	doc, err := ledger.NewCheckpointDoc(c, s)
	if err != nil {
		t.Fatal(err)
	}
	good := writeJSONFile(t, filepath.Join(dir, "cp0.json"), doc)
	code, out, errs := runVerify("ledger", "--db", filepath.Join(dir, "ledger"), "--key", s.VerifierKey, "--checkpoint", good)
	if code != 0 || !strings.Contains(out, "root "+c.Root.String()) {
		t.Errorf("verify ledger of an empty ledger: exit %d, %q %q; want root %s, the signed checkpoint's", code, out, errs, c.Root)
	}
	bad := *c
	bad.Root[0] ^= 1
	doc, err = ledger.NewCheckpointDoc(&bad, s)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = runVerify("ledger", "--db", filepath.Join(dir, "ledger"), "--key", s.VerifierKey, "--checkpoint",
		writeJSONFile(t, filepath.Join(dir, "cp0-bad.json"), doc))
	if code != 1 {
		t.Errorf("verify ledger against a checkpoint of size 0 with another root: exit %d, %q %q; want 1", code, out, errs)
	}
}
