package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine"
)

// readFault fails every read of the store's tables and blob files while on:
// a disk that returns I/O errors (or a damaged block) under a running
// gateway.
func readFault() *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".sst") && !strings.HasSuffix(op.Path, ".blob") {
			return nil
		}
		if op.Kind == errorfs.OpFileRead || op.Kind == errorfs.OpFileReadAt {
			return errorfs.ErrInjected
		}
		return nil
	})}
}

// TestReadErrorsWhileServing: the store's reads fail under a running
// gateway. A request whose answer depends on what cannot be read gets a
// 5xx JSON error, never an answer that takes the unreadable record as
// absent: a retry of a settlement already made must not settle again, a
// trace code already settled must not be taken as free, a settlement that
// exists must not be 404. Nothing is written meanwhile, and once the disk
// reads again every request is answered as before.
func TestReadErrorsWhileServing(t *testing.T) {
	mem := vfs.NewMem()
	fault := readFault()
	h := &harness{tb: t, fs: errorfs.Wrap(mem, fault), dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, map[string][]string{"371600": {empActive, resident}})}
	// A cache of one byte keeps no block: every read goes to the files.
	h.cacheSize = 1
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)
	const tc = `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00","trace_codes":["RD-TC-1"]}]`
	first := settleBody("RD-1", "EMP1", "371600", chronicVisit, tc)
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", first)
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	s1 := decodeAnswer(t, body)
	// A clean close flushes the memtable: from the restart on, the
	// settlement is read from tables and blob files only.
	h.restart()
	head := h.head()

	fault.On()
	checks := []struct {
		what, method, path, token string
		body                      []byte
	}{
		{"retry of the settlement", "POST", "/v1/settlements", "tok-H3716020001", first},
		{"another bill with its trace code", "POST", "/v1/settlements", "tok-H3716020001",
			settleBody("RD-2", "RES1", "371600", chronicVisit, tc)},
		{"the same request id with another body", "POST", "/v1/settlements", "tok-H3716020001",
			settleBody("RD-1", "EMP1", "371600", chronicVisit, oneLine)},
		{"a quote with its trace code", "POST", "/v1/settlements/quote", "tok-H3716020001",
			settleBody("RD-3", "RES1", "371600", chronicVisit, tc)},
		{"the settlement", "GET", "/v1/settlements/" + s1.SettlementID, "tok-H3716020001", nil},
		{"its reversal", "POST", "/v1/settlements/" + s1.SettlementID + "/reversal", "tok-H3716020001",
			[]byte(`{"request_id":"RD-REV"}`)},
	}
	for _, c := range checks {
		status, body := h.do(c.method, c.path, c.token, c.body)
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Errorf("%s: %d, not JSON: %s", c.what, status, body)
			continue
		}
		if status != 503 || a.Error == nil || a.Error.Code != "ledger_unreadable" {
			t.Errorf("%s while the disk cannot be read: %d %s, want 503 ledger_unreadable", c.what, status, body)
		}
	}
	if got := h.head(); got != head {
		t.Errorf("head %d after the read errors, want %d: something was written", got, head)
	}
	status, body = h.do("GET", "/healthz", "", nil)
	if !strings.Contains(string(body), `"ledger":"read_errors"`) {
		t.Errorf("healthz while reads fail: %d %s, want it to say the ledger cannot be read", status, body)
	}

	if n := h.db.ReadErrors(); n == 0 {
		t.Errorf("the ledger counted no read error")
	}
	_, body = h.do("GET", "/metrics", "", nil)
	if !strings.Contains(string(body), "medgate_ledger_read_errors_total ") || strings.Contains(string(body), "medgate_ledger_read_errors_total 0\n") {
		t.Errorf("metrics do not count the read errors")
	}

	fault.Off()
	status, body = h.do("POST", "/v1/settlements", "tok-H3716020001", first)
	if a := decodeAnswer(t, body); status != 200 || !a.Replayed || a.SettlementID != s1.SettlementID {
		t.Fatalf("retry once the disk reads again: %d %s, want the replay of %s", status, body, s1.SettlementID)
	}
	if got := h.head(); got != head {
		t.Fatalf("head %d, want %d", got, head)
	}
}

// TestCorruptBlockWhileServing: a blob file's bytes damaged under a running
// gateway (found by the blocks' checksums): reading the settlement is 503
// ledger_unreadable, not 500 or a wrong answer, and /healthz says so.
func TestCorruptBlockWhileServing(t *testing.T) {
	h, id := damagedBlockHarness(t)
	status, body := h.do("GET", "/v1/settlements/"+id, "tok-H3716020001", nil)
	if a := decodeAnswer(t, body); status != 503 || a.Error == nil || a.Error.Code != "ledger_unreadable" {
		t.Errorf("settlement in a damaged block: %d %s, want 503 ledger_unreadable", status, body)
	}
	if _, body = h.do("GET", "/healthz", "", nil); !strings.Contains(string(body), `"ledger":"read_errors"`) {
		t.Errorf("healthz with a damaged block: %s", body)
	}
}

// damagedBlockHarness is a gateway with a one-byte block cache (so reads
// reach the files) whose one settlement, EMP1's "CB-1", lies in blob files
// overwritten in their first half (the values, not the footer) after a
// restart; it returns the settlement's id.
func damagedBlockHarness(t *testing.T) (*harness, string) {
	t.Helper()
	mem := vfs.NewMem()
	h := &harness{tb: t, fs: mem, dir: "ledger", policies: &engine.Policies{}, cacheSize: 1,
		world: refWorld(t, map[string][]string{"371600": {empActive}})}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("CB-1", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	id := decodeAnswer(t, body).SettlementID
	h.restart()
	names, err := mem.List("ledger")
	if err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for _, n := range names {
		if !strings.HasSuffix(n, ".blob") {
			continue
		}
		f, err := mem.OpenReadWrite(mem.PathJoin("ledger", n), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, int(st.Size()/2)), 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		damaged++
	}
	if damaged == 0 {
		t.Fatal("no blob file to damage")
	}
	return h, id
}
