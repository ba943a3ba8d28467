package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestR4KeyFilesReadableByOthersWarned: the private keys the commands read
// — a region's signing seed (`policy sign --key`), the gateway's
// checkpoint seed (`serve --checkpoint-key`, `verify key
// --checkpoint-key`) — were used whatever their file's mode: a seed left
// readable by every user of the machine lets any of them sign policies
// for the region or checkpoints for the gateway, and nothing said so.
func TestR4KeyFilesReadableByOthersWarned(t *testing.T) {
	dir := t.TempDir()
	key := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(hex.EncodeToString(bytes.Repeat([]byte{0x42}, 32))+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	open, private := key("open.key", 0o644), key("private.key", 0o600)
	sign := func(k string) cliResult {
		return policyRun("sign", "--region", "152500", "--version", "v9", "--effective", "2027-01-01", "--key", k,
			"--module", "../../build/policies/152500/v1.wasm", "--cases", "../../testdata/cases/152500-v1.json",
			"-o", filepath.Join(dir, "up.json"))
	}
	verifyKey := func(k string) cliResult {
		var out, errb bytes.Buffer
		code := run([]string{"verify", "key", "--checkpoint-key", k}, &out, &errb)
		return cliResult{code, out.String(), errb.String()}
	}
	for name, do := range map[string]func(string) cliResult{"policy sign --key": sign, "verify key --checkpoint-key": verifyKey} {
		if r := do(open); r.code != exitOK || !strings.Contains(r.stderr, "WARNING") || !strings.Contains(r.stderr, open) || !strings.Contains(r.stderr, "-rw-r--r--") {
			t.Errorf("%s with a 0644 key: exit %d, want 0 and a warning naming the file and its mode\nstderr: %s", name, r.code, r.stderr)
		}
		if r := do(private); r.code != exitOK || strings.Contains(r.stderr, "WARNING") {
			t.Errorf("%s with a 0600 key: exit %d\nstderr: %s", name, r.code, r.stderr)
		}
	}

	// serve logs it.
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var logs bytes.Buffer
	go func() {
		done <- serveContext(ctx, []string{"--db", t.TempDir(), "--listen", "127.0.0.1:0", "--native-policies", "--log-level", "warn",
			"--checkpoint-key", open}, noEnv, &bytes.Buffer{}, &logs, func(a net.Addr) { ready <- a })
	}()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("serve exited %d:\n%s", code, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "checkpoint key file") || !strings.Contains(logs.String(), "-rw-r--r--") {
		t.Errorf("serve --checkpoint-key with a 0644 key: no warning\n%s", logs.String())
	}
}
