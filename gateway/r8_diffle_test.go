package gateway

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine"
)

// TestR8ReadsOfAMonthWhoseCloseFailed: a month close whose write failed
// stays visible to reads until the restart, and GET of the month waited
// for that close to become durable, so it answered 503 until the restart,
// although the month's totals are on disk and reads are to keep working
// while the ledger cannot write (as for a settlement whose reversal
// failed, TestR7ReadsOfASettlementWhoseReversalFailed). It now answers
// from what is durable: the month, open.
func TestR8ReadsOfAMonthWhoseCloseFailed(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	mem := vfs.NewMem()
	fault := walFault("write")
	w := refWorld(t, map[string][]string{"371600": {empActive}})
	h := &harness{tb: t, fs: errorfs.Wrap(mem, fault), dir: "ledger", policies: &engine.Policies{}, world: w, now: clk.now}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	mustSettle(t, h, "H3716020001", settleBody("R8-CL-1", "EMP1", "371600", chronicVisit, oneLine))
	clk.set("2026-11-02T02:00:00Z")
	fault.On()
	if status, body := h.do("POST", "/v1/clearing/months/2026-10/close", "tok-clearing", nil); status != 503 {
		t.Fatalf("the close while the WAL fails: %d %s, want 503", status, body)
	}
	fault.Off()
	check := func(when string) {
		t.Helper()
		status, body := h.do("GET", "/v1/clearing/months/2026-10", "tok-clearing", nil)
		if status != 200 || !strings.Contains(string(body), `"closed":false`) {
			t.Errorf("%s: GET of the month: %d %s, want 200, open", when, status, body)
		}
	}
	check("after the failed close")
	h.stopAfterFailure()
	h.start()
	t.Cleanup(h.stop)
	check("after the restart") // the close never reached the WAL
}
