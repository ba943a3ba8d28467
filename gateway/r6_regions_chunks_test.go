package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine"
	"medgate/ledger"
)

// TestR6UpsertStoppedBetweenChunksSaysWhatWasWritten: a persons upsert is
// written in chunks of ledger.PersonsChunk, each durable on its own. When
// the ledger refused a later chunk (its disk nearly full, here), the
// answer was the settlement's 503 ledger_disk_full, "nothing was written;
// retry later with the same request_id", although the earlier chunks'
// persons were written: a region reading it took them as not created.
// The answer must not say nothing was written, and must say how far the
// upsert got; the same body sent again under its key writes the rest.
func TestR6UpsertStoppedBetweenChunksSaysWhatWasWritten(t *testing.T) {
	var armed, low atomic.Bool
	var syncs atomic.Int32
	fault := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !armed.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if syncs.Add(1) == 2 {
				// The second chunk is on its way to disk: the disk is
				// nearly full from now on, and the next check sees it.
				low.Store(true)
				time.Sleep(800 * time.Millisecond)
			}
		}
		return nil
	})
	h := &harness{tb: t, fs: errorfs.Wrap(vfs.NewMem(), fault), dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, nil), minFree: 1 << 20,
		freeSpace: func(string) (uint64, error) {
			if low.Load() {
				return 1 << 10, nil
			}
			return 1 << 40, nil
		}}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)

	n := 2*ledger.PersonsChunk + ledger.PersonsChunk/2
	var body bytes.Buffer
	for i := 0; i < n; i++ {
		body.WriteString(strings.Replace(empActive, `"EMP1"`, fmt.Sprintf(`"CH%05d"`, i), 1) + "\n")
	}
	armed.Store(true)
	st, out := h.doKeyed("POST", "/v1/regions/371600/persons", "tok-region-371600", []string{"roster-1"}, body.Bytes())
	armed.Store(false)
	written := 0
	for i := 0; i < n; i++ {
		if _, found, _ := h.db.Person("371600", fmt.Sprintf("CH%05d", i)); found {
			written++
		}
	}
	t.Logf("%d of %d written; answer %d %s", written, n, st, out)
	if st == 200 {
		t.Skip("the upsert was not stopped (the disk check did not run in time)")
	}
	if written == 0 {
		t.Fatalf("no chunk was written: %d %s", st, out)
	}
	if strings.Contains(string(out), "nothing was written") {
		t.Errorf("%d persons were written, and the answer says nothing was: %s", written, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("line %d", written)) || !strings.Contains(string(out), fmt.Sprint(written)) {
		t.Errorf("the answer does not say that the persons of lines 1 to %d were written: %s", written, out)
	}

	// Once there is room, the same body under the same key writes the
	// rest: those written already are updated, none created twice.
	low.Store(false)
	time.Sleep(600 * time.Millisecond) // the next disk check
	st, out = h.doKeyed("POST", "/v1/regions/371600/persons", "tok-region-371600", []string{"roster-1"}, body.Bytes())
	var a struct{ Created, Updated int }
	if a2, _ := regionAnswer(t, st, out); a2 != nil {
		json.Unmarshal(out, &a)
	}
	if a.Created != n-written || a.Updated != written {
		t.Errorf("the retry created %d and updated %d, want %d and %d", a.Created, a.Updated, n-written, written)
	}
}
