package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"medgate/engine/abi"
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

// r6CreditStore is a stopped gateway's ledger whose entries are, in order,
// an opening balance (1), a settlement (2), a credit (3) and a settlement
// (4), and its export.
func r6CreditStore(t *testing.T) (db, export string) {
	t.Helper()
	dir := t.TempDir()
	db = filepath.Join(dir, "ledger")
	at := time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC)
	l, err := ledger.Open(db, ledger.Options{Now: func() time.Time { at = at.Add(time.Second); return at }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.PutPersons([]ledger.Person{{ID: "P1", Region: "152500", OpeningBalance: 5000}}); err != nil {
		t.Fatal(err)
	}
	settle := func(req string) {
		e := &ledger.Entry{Kind: ledger.KindSettlement, RequestID: req, BodyHash: sha256.Sum256([]byte(req)),
			Hospital: "H3701020001", TreatingRegion: "370102", InsuredRegion: "152500", PersonID: "P1",
			Date: abi.MakeDate(2026, 11, 1), VisitType: abi.VisitOutpatient,
			Amounts: ledger.Amounts{Total: 1000, FundTotal: 600, Cash: 400}}
		if err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	settle("R-a")
	if _, _, err := l.Credit("152500", "P1", "CR-1", 700); err != nil {
		t.Fatal(err)
	}
	settle("R-b")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := l.ScanRaw(1, 0, func(e *ledger.Entry, raw []byte) error {
		if e.Seq == 1 && e.Kind != ledger.KindOpening || e.Seq == 3 && e.Kind != ledger.KindCredit {
			t.Fatalf("entry %d is a %v", e.Seq, e.Kind)
		}
		return enc.Encode(ledger.NewExportRecord(e, raw))
	}); err != nil {
		t.Fatal(err)
	}
	export = filepath.Join(dir, "export.ndjson")
	os.WriteFile(export, buf.Bytes(), 0o644)
	return db, export
}

// TestR6VerifyNamesCreditAndOpeningEntries: `medgate verify ledger` and
// `verify export` named a broken entry by its settlement id, so a broken
// credit or opening balance, which has none, was named "S000000000003"
// like a settlement: an operator looking it up found no such settlement
// (or, through the hospital routes, a 404). Now they are named as what
// they are; a settlement is still named by its id.
func TestR6VerifyNamesCreditAndOpeningEntries(t *testing.T) {
	for _, c := range []struct {
		seq  uint64
		want string
	}{
		{1, "entry 1 (opening balance)"},
		{3, "entry 3 (credit)"},
		{4, "entry S000000000004 (seq 4)"},
	} {
		db, export := r6CreditStore(t)
		pdb, err := pebble.Open(db, &pebble.Options{Logger: quiet{}})
		if err != nil {
			t.Fatal(err)
		}
		key := append([]byte{'e'}, 0, 0, 0, 0, 0, 0, 0, byte(c.seq))
		v, closer, err := pdb.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte(nil), v...)
		closer.Close()
		bad[len(bad)-33] ^= 1 // the last byte before the hash
		pdb.Set(key, bad, pebble.Sync)
		pdb.Close()
		code, out, errs := runVerify("ledger", "--db", db)
		if code != exitFailure || !strings.Contains(out, "FAIL: hash chain broken at "+c.want+": ") {
			t.Errorf("entry %d altered: verify ledger: exit %d, want %d naming %q\nstdout: %s\nstderr: %s", c.seq, code, exitFailure, c.want, out, errs)
		}

		// Its export line with an amount changed.
		b, _ := os.ReadFile(export)
		lines := strings.SplitAfter(string(b), "\n")
		line := lines[c.seq-1]
		for _, r := range [][2]string{{`"amount":"50.00"`, `"amount":"90.00"`}, {`"amount":"7.00"`, `"amount":"9.00"`},
			{`"total":"10.00"`, `"total":"90.00"`}} {
			line = strings.Replace(line, r[0], r[1], 1)
		}
		if line == lines[c.seq-1] {
			t.Fatalf("export line %d holds none of the amounts to change: %s", c.seq, line)
		}
		lines[c.seq-1] = line
		os.WriteFile(export+".bad", []byte(strings.Join(lines, "")), 0o644)
		want := c.want
		if c.seq == 4 {
			want = "entry S000000000004"
		}
		code, out, errs = runVerify("export", export+".bad")
		if code != exitFailure || !strings.Contains(out, "FAIL: "+want+": ") {
			t.Errorf("entry %d changed in the export: verify export: exit %d, want %d naming %q\nstdout: %s\nstderr: %s", c.seq, code, exitFailure, want, out, errs)
		}
	}
}
