package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine/abi"
	"medgate/ledger"
)

func demoVerifier(t *testing.T) *ledger.CheckpointSigner {
	t.Helper()
	s, err := ledger.NewCheckpointSigner(ledger.DemoCheckpointSeed())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func getJSON(t *testing.T, h *harness, path, token string, v any) []byte {
	t.Helper()
	status, body := h.do("GET", path, token, nil)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatal(err)
	}
	return body
}

func TestCheckpointsAndProofs(t *testing.T) {
	clk := &clock{}
	clk.set("2026-11-02T02:00:00Z")
	// No opening balance (it would be an entry): the tree sizes below are
	// the settlements'.
	emp := strings.Replace(empActive, `"account_balance":"1000.00"`, `"account_balance":"0.00"`, 1)
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {emp, resident}}), clk)
	v, err := ledger.ParseVerifier(demoVerifier(t).VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 6 {
		hosp := []string{"H3716020001", "H3716210001"}[i%2]
		person := []string{"EMP1", "RES1"}[i/2%2]
		status, body := h.do("POST", "/v1/settlements", "tok-"+hosp, settleBody(fmt.Sprint("P-", i), person, "371600", chronicVisit, `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00"}]`))
		if status != 200 {
			t.Fatalf("settle: %d %s", status, body)
		}
		ids = append(ids, decodeAnswer(t, body).SettlementID)
	}

	// The checkpoint verifies with the verifier key alone, and its fields
	// are the signed note's.
	var cp ledger.CheckpointDoc
	cpBody := getJSON(t, h, "/v1/clearing/checkpoint", "tok-clearing", &cp)
	c6, err := cp.Verify(v)
	if err != nil || c6.Size != 6 || cp.Time != "2026-11-02T02:00:00Z" || cp.VerifierKey != demoVerifier(t).VerifierKey {
		t.Fatalf("checkpoint %s: %v", cpBody, err)
	}
	if root, _ := h.db.TreeHash(6); root != c6.Root {
		t.Fatal("the checkpoint's root is not the tree's")
	}
	forged := cp
	forged.TreeSize = 7
	if _, err := forged.Verify(v); err == nil {
		t.Fatal("a checkpoint document with a changed field verified")
	}
	var cp3 ledger.CheckpointDoc
	getJSON(t, h, "/v1/clearing/checkpoint?tree_size=3", "tok-clearing", &cp3)
	if c3, err := cp3.Verify(v); err != nil || c3.Size != 3 {
		t.Fatalf("checkpoint of size 3: %v", err)
	}
	for _, q := range []string{"tree_size=7", "tree_size=0", "tree_size=x"} {
		if status, body := h.do("GET", "/v1/clearing/checkpoint?"+q, "tok-clearing", nil); status != 400 {
			t.Fatalf("checkpoint?%s: %d %s", q, status, body)
		}
	}

	// Inclusion: the clearing house for any entry, a hospital for its own.
	var inc ledger.InclusionDoc
	getJSON(t, h, "/v1/clearing/proofs/inclusion/"+ids[2], "tok-clearing", &inc)
	if _, e, err := inc.Verify(v); err != nil || e.SettlementID != ids[2] || inc.TreeSize != 6 {
		t.Fatalf("inclusion of %s: %v", ids[2], err)
	}
	// What the gateway stores as a settlement's policy input is the ABI
	// input, whose lines are the entry's: the ledger keeps it compact and
	// the lines once (entry format 2, ledger/codec_input.go).
	_, e, _ := inc.Verify(v)
	var in abi.Input
	if err := in.Decode(e.Input); err != nil || len(e.Lines) == 0 || len(in.Lines) != len(e.Lines) {
		t.Fatalf("stored input: %v; %d lines, the entry %d", err, len(in.Lines), len(e.Lines))
	}
	for i := range e.Lines {
		if ledger.Line(in.Lines[i]) != e.Lines[i] {
			t.Fatalf("line %d: input %+v, entry %+v", i, in.Lines[i], e.Lines[i])
		}
	}
	if raw, err := base64.StdEncoding.DecodeString(inc.Entry); err != nil || raw[0] != ledger.EntryFormat {
		t.Fatalf("entry format: %v", err)
	}
	var own ledger.InclusionDoc
	getJSON(t, h, "/v1/settlements/"+ids[1]+"/proof?tree_size=4", "tok-H3716210001", &own)
	if c, e, err := own.Verify(v); err != nil || e.Hospital != "H3716210001" || c.Size != 4 {
		t.Fatalf("a hospital's own proof: %v", err)
	}
	if status, _ := h.do("GET", "/v1/settlements/"+ids[1]+"/proof", "tok-H3716020001", nil); status != 404 {
		t.Fatalf("another hospital's proof: %d", status)
	}
	if status, _ := h.do("GET", "/v1/settlements/"+ids[4]+"/proof?tree_size=4", "tok-H3716020001", nil); status != 400 {
		t.Fatalf("a proof against a tree without the entry: %d", status)
	}
	if status, _ := h.do("GET", "/v1/clearing/proofs/inclusion/"+ids[0], "tok-H3716020001", nil); status != 403 {
		t.Fatalf("a hospital on the clearing proof endpoint: %d", status)
	}
	// Tampering with any part fails.
	for name, tamper := range map[string]func(d *ledger.InclusionDoc){
		"proof hash":  func(d *ledger.InclusionDoc) { d.Proof[0][0] ^= 1 },
		"leaf index":  func(d *ledger.InclusionDoc) { d.LeafIndex++ },
		"entry bytes": func(d *ledger.InclusionDoc) { d.Entry = strings.Replace(d.Entry, d.Entry[40:44], "AAAA", 1) },
		"root":        func(d *ledger.InclusionDoc) { d.RootHash[3] ^= 1 },
		"checkpoint":  func(d *ledger.InclusionDoc) { d.Checkpoint = strings.Replace(d.Checkpoint, "\n6\n", "\n5\n", 1) },
		"settlement":  func(d *ledger.InclusionDoc) { d.SettlementID = ids[3] },
	} {
		d := inc
		d.Proof = append(d.Proof[:0:0], inc.Proof...)
		tamper(&d)
		if _, _, err := d.Verify(v); err == nil {
			t.Errorf("inclusion proof with a tampered %s verified", name)
		}
	}

	// Consistency between two tree sizes, also across a restart: the tree
	// lives in the ledger's store.
	h.restart()
	var cp6 ledger.CheckpointDoc
	getJSON(t, h, "/v1/clearing/checkpoint", "tok-clearing", &cp6)
	if cp6.RootHash != cp.RootHash || cp6.TreeSize != 6 {
		t.Fatal("the tree changed across a restart")
	}
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("P-7", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle after restart: %d %s", status, body)
	}
	var cons ledger.ConsistencyDoc
	getJSON(t, h, "/v1/clearing/proofs/consistency?from=6", "tok-clearing", &cons)
	from, to, err := cons.Verify(v)
	if err != nil || from.Size != 6 || to.Size != 7 || from.Root != c6.Root {
		t.Fatalf("consistency 6→7: %v", err)
	}
	bad := cons
	bad.Proof = append(bad.Proof[:0:0], cons.Proof...)
	bad.Proof[0][1] ^= 1
	if _, _, err := bad.Verify(v); err == nil {
		t.Fatal("a tampered consistency proof verified")
	}
	// Each refusal names the parameter at fault.
	for q, field := range map[string]string{"": "from", "?from=8": "from", "?from=3&to=2": "from", "?from=1&to=9": "to"} {
		status, body := h.do("GET", "/v1/clearing/proofs/consistency"+q, "tok-clearing", nil)
		if a := decodeAnswer(t, body); status != 400 || a.Error.Field != field {
			t.Fatalf("consistency%s: %d %s, want 400 naming %s", q, status, body, field)
		}
	}

	// The export verifies end to end against the signed checkpoint.
	status, exp := h.do("GET", "/v1/clearing/export", "tok-clearing", nil)
	if status != 200 {
		t.Fatalf("export: %d %s", status, exp)
	}
	rep, err := ledger.VerifyExport(bytes.NewReader(exp), c6)
	if err != nil || rep.Entries != 7 || !rep.CheckpointMatched || rep.Root != to.Root {
		t.Fatalf("export: %+v %v", rep, err)
	}
	status, part := h.do("GET", "/v1/clearing/export?from_seq=2&to_seq=3", "tok-clearing", nil)
	if lines := bytes.Count(part, []byte("\n")); status != 200 || lines != 2 {
		t.Fatalf("export 2..3: %d, %d lines", status, lines)
	}
	if status, _ := h.do("GET", "/v1/clearing/export", "tok-H3716020001", nil); status != 403 {
		t.Fatalf("a hospital exports: %d", status)
	}
	if status, _ := h.do("GET", "/v1/clearing/export?from_seq=-1", "tok-clearing", nil); status != 400 {
		t.Fatalf("a negative from_seq: %d", status)
	}
}

func TestCheckpointKeyConfig(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	seed, err := ReadCheckpointKey(key)
	if err != nil || len(seed) != 32 || seed[0] != 0xab {
		t.Fatalf("ReadCheckpointKey = %x %v", seed, err)
	}
	os.WriteFile(key, []byte("not hex"), 0o600)
	if _, err := ReadCheckpointKey(key); err == nil {
		t.Fatal("a malformed key was accepted")
	}
	var logs bytes.Buffer
	if err := logCheckpointKey(zerolog.New(&logs), nil); err != nil || !strings.Contains(logs.String(), `"level":"warn"`) ||
		!strings.Contains(logs.String(), "DEMO") {
		t.Fatalf("demo key log: %s %v", logs.String(), err)
	}
	logs.Reset()
	if err := logCheckpointKey(zerolog.New(&logs), seed); err != nil || strings.Contains(logs.String(), "warn") {
		t.Fatalf("configured key log: %s %v", logs.String(), err)
	}
}
