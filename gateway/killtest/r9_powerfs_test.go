package killtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"medgate/gateway/internal/testenv"
	"medgate/gateway/killtest/powerfs"
)

// TestPowerLossKeepsAnUploadOverALeftover: an upload whose module file is
// already in the store, left unsynced by an upload that was killed between
// its write and its syncs (a kill keeps the page cache, so the file is
// whole), still has its module after a power cut: the gateway must sync
// the file it found and its name before answering 201, not trust it.
func TestPowerLossKeepsAnUploadOverALeftover(t *testing.T) {
	readEnv(t)
	fsys, mnt, backing := powerMount(t, powerfs.Options{})
	live := filepath.Join(mnt, "db")
	p := start(t, live)
	p.ready(t, 60*time.Second)
	defer func() { p.kill(t) }()

	// A module of its own (a custom section appended), so that it is not
	// one the world already stored.
	root := testenv.RepoRoot()
	wasm, err := os.ReadFile(filepath.Join(testenv.ModuleDir(t), "371600", "v2024.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	wasm = append(wasm, 0x00, 0x0b, 0x02, 'r', '9', 'l', 'e', 'f', 't', 'o', 'v', 'e', 'r')
	sum := sha256.Sum256(wasm)
	name := hex.EncodeToString(sum[:]) + ".wasm"
	dir := t.TempDir()
	module, up := filepath.Join(dir, "m.wasm"), filepath.Join(dir, "up.json")
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary(t), "policy", "sign", "--region", "371600", "--version", "v2099-leftover",
		"--effective", "2099-01-01", "--demo-key", "--module", module,
		"--cases", filepath.Join(root, "testdata", "cases", "371600-v2024.json"), "-o", up).CombinedOutput()
	if err != nil {
		t.Fatalf("policy sign: %v\n%s", err, out)
	}
	body, err := os.ReadFile(up)
	if err != nil {
		t.Fatal(err)
	}
	// The killed upload's leftover: written through the mount, never
	// synced, its name never synced.
	if err := os.WriteFile(filepath.Join(live, "policies", "modules", name), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	code, answer, err := call(context.Background(), c, "POST", p.base+"/v1/regions/371600/policies", "demo-region-371600", body)
	if err != nil || code != 201 {
		t.Fatalf("upload: %d %s %v", code, answer, err)
	}
	p.kill(t)
	lost := cutAndRemount(t, fsys)
	got, err := os.ReadFile(filepath.Join(backing, "db", "policies", "modules", name))
	if err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("the module of the version answered 201 after a power cut that lost %+v: %d bytes, %v", lost, len(got), err)
	}
	p = start(t, live)
	p.ready(t, 60*time.Second)
	if log := p.log.String(); strings.Contains(log, "unreadable") {
		t.Fatalf("the gateway found a stored module unreadable after the cut:\n%s", tail(log, 20))
	}
}
