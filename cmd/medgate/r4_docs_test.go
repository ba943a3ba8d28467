package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
