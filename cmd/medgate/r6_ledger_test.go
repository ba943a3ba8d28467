package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"medgate/ledger"
)

// TestR6AuditInterruptedRemovesItsScratch: `medgate audit` sorts the
// records it expects in a scratch store under --tmp, about 400 bytes an
// entry (20 GB at 50 million entries), removed when the audit returns. A
// Ctrl-C (SIGINT) or SIGTERM during the hours such an audit takes ended
// the process at once, so the scratch store stayed behind, and each
// interrupted audit filled the disk further. Now the audit stops, removes
// it, and says it was interrupted.
func TestR6AuditInterruptedRemovesItsScratch(t *testing.T) {
	if os.Getenv("MEDGATE_R6_AUDIT_CHILD") != "" {
		// The audit to interrupt: slow enough to be inside its replay when
		// the signal comes, and saying when it is.
		first := true
		auditVisit = func(*ledger.Entry) {
			if first {
				first = false
				os.Stdout.WriteString("replaying\n")
			}
			time.Sleep(50 * time.Millisecond)
		}
		os.Exit(run([]string{"audit", "--db", os.Getenv("MEDGATE_R6_AUDIT_DB"), "--tmp", os.Getenv("MEDGATE_R6_AUDIT_TMP")},
			os.Stdout, os.Stderr))
	}
	f := newVerifyFixture(t) // 9 entries: 450 ms of replay
	tmp := t.TempDir()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestR6AuditInterruptedRemovesItsScratch$")
		cmd.Env = append(os.Environ(), "MEDGATE_R6_AUDIT_CHILD=1", "MEDGATE_R6_AUDIT_DB="+f.db, "MEDGATE_R6_AUDIT_TMP="+tmp)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len("replaying\n"))
		if _, err := out.Read(buf); err != nil || string(buf) != "replaying\n" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("%v: the audit did not start its replay: %q, %v\nstderr: %s", sig, buf, err, stderr.String())
		}
		left, _ := filepath.Glob(filepath.Join(tmp, "medgate-audit-*"))
		if len(left) != 1 {
			t.Fatalf("%v: during the audit, %d scratch stores in --tmp, want 1", sig, len(left))
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(out)
		err = cmd.Wait()
		left, _ = filepath.Glob(filepath.Join(tmp, "medgate-audit-*"))
		if len(left) != 0 {
			t.Errorf("%v: the interrupted audit left its scratch store %v (exit: %v)", sig, left, err)
			for _, d := range left {
				os.RemoveAll(d)
			}
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("%v: exit %v, want %d saying the audit was interrupted\nstdout: %s\nstderr: %s", sig, err, exitUsage, rest, stderr.String())
		}
		if strings.Contains(string(rest), "audit passed") {
			t.Errorf("%v: an interrupted audit said it passed:\n%s", sig, rest)
		}
	}
}
