package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"medgate/engine/abi"
	"medgate/ledger"
)

// verifyFixture is a stopped gateway's ledger of n entries and what the
// endpoints would have answered about it, as files.
type verifyFixture struct {
	dir, db                                  string
	vkey, pubHex                             string
	checkpoint, checkpointOld, inclusion     string
	consistency, export, exportFrom3, keyHex string
}

func writeJSONFile(t *testing.T, path string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newVerifyFixture(t *testing.T) *verifyFixture {
	t.Helper()
	f := &verifyFixture{dir: t.TempDir()}
	f.db = filepath.Join(f.dir, "ledger")
	at := time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC)
	db, err := ledger.Open(f.db, ledger.Options{Now: func() time.Time { at = at.Add(time.Second); return at }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var es []*ledger.Entry
	for i := range 9 {
		req := "R-" + string(rune('a'+i))
		e := &ledger.Entry{Kind: ledger.KindSettlement, RequestID: req, BodyHash: sha256.Sum256([]byte(req)),
			Hospital: "H3701020001", TreatingRegion: "370102", InsuredRegion: "152500", PersonID: "P" + req,
			Date: abi.MakeDate(2026, 11, 1), VisitType: abi.VisitOutpatient,
			Amounts: ledger.Amounts{Total: int64(1000 + i), FundTotal: 600, Cash: int64(400 + i)}}
		if err := db.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	seed := bytes.Repeat([]byte{0x42}, 32)
	f.keyHex = filepath.Join(f.dir, "checkpoint.key")
	os.WriteFile(f.keyHex, []byte(hex.EncodeToString(seed)+"\n"), 0o600)
	s, err := ledger.NewCheckpointSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	f.vkey, f.pubHex = s.VerifierKey, hex.EncodeToString(s.Public)
	cp := func(size uint64, name string) string {
		c, err := db.MakeCheckpoint(size, at)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ledger.NewCheckpointDoc(c, s)
		if err != nil {
			t.Fatal(err)
		}
		return writeJSONFile(t, filepath.Join(f.dir, name), d)
	}
	f.checkpoint = cp(0, "checkpoint.json")
	f.checkpointOld = cp(4, "checkpoint-4.json")
	inc, err := db.NewInclusionDoc(es[2], 0, s, at)
	if err != nil {
		t.Fatal(err)
	}
	f.inclusion = writeJSONFile(t, filepath.Join(f.dir, "inclusion.json"), inc)
	cons, err := db.NewConsistencyDoc(4, 0, s, at)
	if err != nil {
		t.Fatal(err)
	}
	f.consistency = writeJSONFile(t, filepath.Join(f.dir, "consistency.json"), cons)
	export := func(from uint64, name string) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		if err := db.ScanRaw(from, 0, func(e *ledger.Entry, raw []byte) error {
			return enc.Encode(ledger.NewExportRecord(e, raw))
		}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(f.dir, name)
		os.WriteFile(p, buf.Bytes(), 0o644)
		return p
	}
	f.export = export(1, "export.ndjson")
	f.exportFrom3 = export(3, "export-3.ndjson")
	return f
}

func runVerify(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(append([]string{"verify"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// tamper writes a copy of file with old replaced by new.
func tamper(t *testing.T, file, old, new string) string {
	t.Helper()
	b, _ := os.ReadFile(file)
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s holds no %q", file, old)
	}
	p := file + ".tampered"
	os.WriteFile(p, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
	return p
}

func TestVerifyCommand(t *testing.T) {
	f := newVerifyFixture(t)
	other, _ := ledger.NewCheckpointSigner(bytes.Repeat([]byte{7}, 32))
	keyFile := filepath.Join(f.dir, "verifier.key")
	os.WriteFile(keyFile, []byte(f.vkey+"\n"), 0o644)

	for _, c := range []struct {
		name string
		args []string
		code int
		out  string // a part of stdout
	}{
		{"key of a key file", []string{"key", "--checkpoint-key", f.keyHex}, 0, f.vkey},
		{"demo key", []string{"key"}, 0, "medgate-ledger+"},
		{"checkpoint", []string{"checkpoint", "--key", f.vkey, f.checkpoint}, 0, "tree size 9"},
		{"checkpoint, hex key", []string{"checkpoint", "--key", f.pubHex, f.checkpoint}, 0, "OK"},
		{"checkpoint, key file", []string{"checkpoint", "--key", keyFile, f.checkpoint}, 0, "OK"},
		{"checkpoint, another key", []string{"checkpoint", "--key", other.VerifierKey, f.checkpoint}, 1, "FAIL"},
		{"checkpoint, field changed", []string{"checkpoint", "--key", f.vkey, tamper(t, f.checkpoint, `"tree_size":9`, `"tree_size":8`)}, 1, "tree_size"},
		{"inclusion", []string{"inclusion", "--key", f.vkey, f.inclusion}, 0, "S000000000003 (seq 3, settlement, hospital H3701020001, total 10.02) is entry 3 of the tree of size 9"},
		{"inclusion, other entry", []string{"inclusion", "--key", f.vkey, tamper(t, f.inclusion, `"settlement_id":"S000000000003"`, `"settlement_id":"S000000000004"`)}, 1, "FAIL"},
		{"inclusion, proof changed", []string{"inclusion", "--key", f.vkey, tamper(t, f.inclusion, `"proof":["`, `"proof":["A`)}, 1, "FAIL"},
		{"consistency", []string{"consistency", "--key", f.vkey, "--old", f.checkpointOld, "--new", f.checkpoint, f.consistency}, 0, "size 4"},
		{"consistency, wrong old checkpoint", []string{"consistency", "--key", f.vkey, "--old", f.checkpoint, f.consistency}, 1, "--old"},
		{"export", []string{"export", "--key", f.vkey, "--checkpoint", f.checkpoint, f.export}, 0, "matches the signed checkpoint of tree size 9"},
		{"export, old checkpoint", []string{"export", "--key", f.vkey, "--checkpoint", f.checkpointOld, f.export}, 0, "tree size 4"},
		{"export, amount changed", []string{"export", f.export + ".amount"}, 1, "entry S000000000002"},
		{"export from seq 3", []string{"export", f.exportFrom3}, 0, "seq 3..9"},
		{"export from seq 3 vs a checkpoint", []string{"export", "--key", f.vkey, "--checkpoint", f.checkpoint, f.exportFrom3}, 1, "must start at seq 1"},
		{"ledger", []string{"ledger", "--db", f.db, "--key", f.vkey, "--checkpoint", f.checkpoint}, 0, "OK: 9 entries"},
		{"no key", []string{"inclusion", f.inclusion}, 2, ""},
		{"no file", []string{"inclusion", "--key", f.vkey}, 2, ""},
		{"unknown check", []string{"everything"}, 2, ""},
		{"no such ledger", []string{"ledger", "--db", filepath.Join(f.dir, "none")}, 2, ""},
	} {
		if c.name == "export, amount changed" {
			b, _ := os.ReadFile(f.export)
			lines := strings.SplitAfter(string(b), "\n")
			lines[1] = strings.Replace(lines[1], `"total":"10.01"`, `"total":"99.01"`, 1)
			os.WriteFile(f.export+".amount", []byte(strings.Join(lines, "")), 0o644)
		}
		code, out, errs := runVerify(c.args...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("%s: exit %d, want %d; stdout %q (want %q); stderr %q", c.name, code, c.code, out, c.out, errs)
		}
	}

	// Alter entry 5 in the stopped gateway's store: the ledger check names it.
	pdb, err := pebble.Open(f.db, &pebble.Options{Logger: quiet{}})
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte{'e'}, 0, 0, 0, 0, 0, 0, 0, 5)
	v, closer, err := pdb.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), v...)
	closer.Close()
	bad[len(bad)-50] ^= 1
	pdb.Set(key, bad, pebble.Sync)
	pdb.Close()
	code, out, errs := runVerify("ledger", "--db", f.db)
	if code != 1 || !strings.Contains(out, "FAIL: hash chain broken at entry S000000000005 (seq 5)") {
		t.Fatalf("tampered ledger: exit %d, %q %q", code, out, errs)
	}
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(format)
}
