package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/ledger"
)

// r5Fill appends n settlements of hospital straight to the ledger, from
// several goroutines so that the writer's group commit batches them.
func r5Fill(tb testing.TB, db *ledger.DB, hospital, treating string, n int) {
	tb.Helper()
	const writers = 32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += writers {
				req := fmt.Sprintf("r5-%s-%d", hospital, i)
				e := &ledger.Entry{Kind: ledger.KindSettlement, RequestID: req, BodyHash: sha256.Sum256([]byte(req)),
					Hospital: hospital, TreatingRegion: treating, InsuredRegion: "152500", PersonID: "P-" + req,
					Date: abi.MakeDate(2026, 10, 20), VisitType: abi.VisitOutpatient, PolicyVersion: "v1",
					Amounts: yuan(100, 90, 50, 0, 0, 10)}
				if err := db.Append(context.Background(), e); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
}

// TestR5ExportCutShortIsAnError: a read error of the store in the middle
// of an export ended the chunked body as if it were complete (the
// terminating chunk was sent), so a clearing house saving it had a
// well-formed, shorter file and no error unless it compared the last seq
// with X-Ledger-To-Seq. Now the connection is closed without the
// terminating chunk: every HTTP client reports the body as cut.
func TestR5ExportCutShortIsAnError(t *testing.T) {
	mem := vfs.NewMem()
	fault := readFault()
	h := &harness{tb: t, fs: errorfs.Wrap(mem, fault), dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, nil)}
	h.cacheSize = 1 // every read goes to the files
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)
	const n = 3000 // about 4 MB of export: far more than the connection buffers
	r5Fill(t, h.db, "H3701020001", "370102", n)
	h.restart() // from here on, entries are read from tables

	c := h.rawConn(t)
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/clearing/export HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-clearing\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Ledger-To-Seq") != strconv.Itoa(n) {
		t.Fatalf("export: %d, to seq %q", resp.StatusCode, resp.Header.Get("X-Ledger-To-Seq"))
	}
	body := bufio.NewReader(resp.Body)
	if _, err := body.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	fault.On()
	defer fault.Off()
	rest, err := io.ReadAll(body)
	lines := 1 + bytes.Count(rest, []byte("\n"))
	if lines >= n {
		t.Fatalf("the export was not cut by the read errors (%d lines)", lines)
	}
	if err == nil {
		t.Fatalf("an export cut after %d of %d lines by a read error ended as a complete body", lines, n)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("cut export read as: %v", err)
	}
	// The last complete line is a whole record: the client can resume
	// after it with from_seq.
	if i := bytes.LastIndexByte(rest, '\n'); i > 0 {
		j := bytes.LastIndexByte(rest[:i], '\n')
		var rec ledger.ExportRecord
		if err := json.Unmarshal(rest[j+1:i], &rec); err != nil {
			t.Fatalf("last complete line: %v", err)
		}
	}
}
