package ledger

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"medgate/engine/abi"
)

// TestR6AuditContextRemovesTheScratch: an audit whose Context ends (medgate
// audit interrupted) stops, removes its scratch store and says so; it
// neither passes nor runs on to the end.
func TestR6AuditContextRemovesTheScratch(t *testing.T) {
	db, _ := openMem(t)
	for i := range 10 {
		mustAppend(t, db, settlement(req(i), "P1", abi.MakeDate(2026, 11, 2), nil, 0))
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	rep, err := db.AuditWith(AuditOptions{TempDir: tmp, Context: ctx, Visit: func(*Entry) {
		if seen++; seen == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || rep != nil {
		t.Fatalf("interrupted audit: %v, %v; want context.Canceled and no report", rep, err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the interrupted audit left %d files in its TempDir", len(left))
	}
	if seen == 10 {
		t.Errorf("the interrupted audit replayed every entry")
	}
	// Not interrupted: it passes, and leaves nothing either.
	if rep, err := db.AuditWith(AuditOptions{TempDir: tmp, Context: context.Background()}); err != nil || !rep.OK() {
		t.Fatalf("audit: %v %v", err, rep.Err())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the audit left %d files in its TempDir", len(left))
	}
}

// TestR6AuditScratchDiskFullFails: the scratch store's files could not be
// written (--tmp's disk full; here a file size limit), so its flushes
// failed; Pebble retries a failed flush for ever and stops writes once its
// memtables are full, so the audit hung, using a CPU, and never removed
// its scratch store. Now it fails saying so, and removes it.
//
// The file size limit is the process's: set in the test binary itself, it
// also failed every other file write made meanwhile (go test's own log of
// the run, other tests' stores), so the scenario runs in a child process
// of the test binary.
func TestR6AuditScratchDiskFullFails(t *testing.T) {
	if os.Getenv(fsizeChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestR6AuditScratchDiskFullFails$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), fsizeChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		switch {
		case err != nil:
			t.Fatalf("the child running the scenario: %v\n%s", err, out)
		case bytes.Contains(out, []byte("--- SKIP: TestR6AuditScratchDiskFullFails")):
			t.Skipf("skipped in the child:\n%s", out)
		case !bytes.Contains(out, []byte("--- PASS: TestR6AuditScratchDiskFullFails")):
			t.Fatalf("the child did not pass the scenario:\n%s", out)
		}
		t.Logf("child:\n%s", bytes.TrimSpace(out))
		return
	}
	auditScratchDiskFull(t)
}

// fsizeChildEnv marks the child process of TestR6AuditScratchDiskFullFails.
const fsizeChildEnv = "MEDGATE_TEST_FSIZE_CHILD"

func auditScratchDiskFull(t *testing.T) {
	db, _ := openMem(t) // in memory: the limit applies to the scratch store only
	const n = 3000      // about 1.2 MB of scratch records: over 16 memtables
	for i := range n {
		mustAppend(t, db, settlement(req(i), "P1", abi.MakeDate(2026, 11, 2), nil, 0, "TC-"+req(i)))
	}
	defer func(m uint64) { scratchMemTable = m }(scratchMemTable)
	scratchMemTable = 64 << 10
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	lim := old
	lim.Cur = 16 << 10 // bytes: no table of the scratch store fits
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	tmp := t.TempDir()
	type result struct {
		rep *AuditReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := db.AuditWith(AuditOptions{TempDir: tmp})
		done <- result{rep, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		t.Fatal("the audit with its scratch store's files unwritable did not end in 30 s")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// What the store holds in memory is read back right: an audit that
	// never waited for a flush may pass; one that did fails.
	switch {
	case res.err == nil && (!res.rep.OK() || res.rep.Entries != n):
		t.Fatalf("audit with its scratch store's files unwritable: %d entries, %v", res.rep.Entries, res.rep.Err())
	case res.err != nil && !strings.Contains(res.err.Error(), "scratch store"):
		t.Fatalf("audit with its scratch store's files unwritable: %v; want an error naming the scratch store", res.err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the failed audit left %d files in its TempDir", len(left))
	}
	t.Log(res.err)
}
