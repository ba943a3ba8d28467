package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"medgate/ledger"
)

// TestR4VerifyKeyWithoutCheckpointIsUsage: `verify export --key KEY FILE`
// and `verify ledger --db DIR --key KEY`, without --checkpoint, dropped the
// key and answered OK: an export carries no signature, so what passed was
// any self-consistent file, while the command line said it was checked
// against the gateway's key.
func TestR4VerifyKeyWithoutCheckpointIsUsage(t *testing.T) {
	f := newVerifyFixture(t)
	for _, args := range [][]string{
		{"export", "--key", f.vkey, f.export},
		{"ledger", "--db", f.db, "--key", f.vkey},
	} {
		code, out, errs := runVerify(args...)
		if code != exitUsage || !strings.Contains(errs, "--checkpoint") || strings.Contains(out, "OK") {
			t.Errorf("verify %v: exit %d, want 2 asking for --checkpoint\nstdout: %s\nstderr: %s", args, code, out, errs)
		}
	}
}

// TestR4VerifyWarnsOfTheDemoKey: a checkpoint, proof or export checked
// against the public demo key (a gateway started without
// --checkpoint-key) was answered "OK: checkpoint signed by ..." like any
// other: anyone can sign with that key, so it proves nothing. The gateway
// and `verify key` say so; `verify` now does too.
func TestR4VerifyWarnsOfTheDemoKey(t *testing.T) {
	f := newVerifyFixture(t)
	own, err := ledger.ParseVerifier(f.vkey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f.checkpoint)
	var d ledger.CheckpointDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	c, err := d.Verify(own)
	if err != nil {
		t.Fatal(err)
	}
	demo, err := ledger.NewCheckpointSigner(ledger.DemoCheckpointSeed())
	if err != nil {
		t.Fatal(err)
	}
	dd, err := ledger.NewCheckpointDoc(c, demo)
	if err != nil {
		t.Fatal(err)
	}
	cp := writeJSONFile(t, filepath.Join(f.dir, "demo-checkpoint.json"), dd)
	for _, key := range []string{demo.VerifierKey, hex.EncodeToString(demo.Public)} {
		code, out, errs := runVerify("checkpoint", "--key", key, cp)
		if code != exitOK || !strings.Contains(out, "OK") || !strings.Contains(errs, "PUBLIC DEMO") {
			t.Errorf("demo-signed checkpoint, --key %s: exit %d\nstdout: %s\nstderr: %s", key, code, out, errs)
		}
	}
	// The gateway's own key: no warning.
	if code, out, errs := runVerify("checkpoint", "--key", f.vkey, f.checkpoint); code != exitOK || strings.Contains(errs, "DEMO") {
		t.Errorf("own key: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}
