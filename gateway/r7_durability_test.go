package gateway

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine"
	"medgate/engine/abi"
)

// TestR7NoRefusalFromAFailedWrite: Pebble shows a batch to readers before
// its WAL write and sync, and a failed batch stays visible in the memtable
// until the restart. A settlement of the same person sent after the
// failure read its counters from that batch; a policy refusing on them
// (here: one visit a year) was answered 422 policy_refused, a final
// answer the hospital does not retry, although the visit it counted was
// answered 503 and never reached the disk: after the restart the same
// bill settles. While the ledger cannot write, a settlement is answered
// 503 ledger_unavailable, never a refusal computed on what a failed write
// left in memory.
func TestR7NoRefusalFromAFailedWrite(t *testing.T) {
	mem := vfs.NewMem()
	fault := walFault("write") // the failed batch never reaches the WAL
	h := &harness{tb: t, fs: errorfs.Wrap(mem, fault), dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, map[string][]string{"371600": {empActive}})}
	h.versions = referenceVersions(t, h.policies)
	pol := engine.NewNative("371600", "vonce", func(in *abi.Input, out *abi.Output) {
		for _, c := range in.Counters {
			if c.Name == "visits" && c.Value > 0 {
				out.Refusal = "one visit a year: this person's visit of the year was already settled"
				return
			}
		}
		out.Changes = append(out.Changes, abi.Counter{Name: "visits", Value: 1})
	})
	h.policies.Put("371600", engine.Version{Name: "vonce", EffectiveFrom: 20250101, Module: pol})
	h.start()

	fault.On()
	first := settleBody("R7-ONCE-1", "EMP1", "371600", chronicVisit, oneLine)
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", first); status != 503 {
		t.Fatalf("the first visit while the WAL fails: %d %s, want 503", status, out)
	}
	fault.Off() // the disk works again; the ledger stays failed until a restart

	second := settleBody("R7-ONCE-2", "EMP1", "371600", chronicVisit, oneLine)
	status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", second)
	if a := decodeAnswer(t, out); status != 503 || a.Error == nil || a.Error.Code != "ledger_unavailable" {
		t.Errorf("another visit after the failed write: %d %s, want 503 ledger_unavailable (the visit it would be refused for was never written)", status, out)
	}
	h.stopAfterFailure()

	// After the restart the failed visit is gone: the second bill settles.
	h.start()
	t.Cleanup(h.stop)
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", second); status != 200 {
		t.Fatalf("the second bill after the restart: %d %s, want 200 (the first visit was never written)", status, out)
	}
}

// TestR7ReadsOfASettlementWhoseReversalFailed: a reversal whose write
// failed stays visible to reads until the restart, and GET of the
// settlement it reversed waited for that reversal to become durable, so
// it answered 503 ledger_unavailable until the restart (as did a retry of
// the settlement, and every region replay over it), although the
// settlement is on disk and reads are to keep working while the ledger
// cannot write. They now answer from what is durable: the settlement, not
// reversed (the reversal was answered 503; its retry says what happened).
func TestR7ReadsOfASettlementWhoseReversalFailed(t *testing.T) {
	mem := vfs.NewMem()
	fault := walFault("write")
	h := &harness{tb: t, fs: errorfs.Wrap(mem, fault), dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, map[string][]string{"371600": {empActive}})}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	body := settleBody("R7-REV-1", "EMP1", "371600", chronicVisit, oneLine)
	first := mustSettle(t, h, "H3716020001", body)

	fault.On()
	if status, out := h.do("POST", "/v1/settlements/"+first.SettlementID+"/reversal", "tok-H3716020001", []byte(`{"request_id":"R7-REV-1-X"}`)); status != 503 {
		t.Fatalf("the reversal while the WAL fails: %d %s, want 503", status, out)
	}
	fault.Off()
	check := func(when string) {
		t.Helper()
		status, out := h.do("GET", "/v1/settlements/"+first.SettlementID, "tok-H3716020001", nil)
		if a := decodeAnswer(t, out); status != 200 || a.Seq != first.Seq || a.ReversedBy != "" {
			t.Errorf("%s: GET of the settlement: %d %s, want 200, not reversed", when, status, out)
		}
		status, out = h.do("POST", "/v1/settlements", "tok-H3716020001", body)
		if a := decodeAnswer(t, out); status != 200 || !a.Replayed || a.Seq != first.Seq || a.ReversedBy != "" {
			t.Errorf("%s: retry of the settlement: %d %s, want 200 replayed, not reversed", when, status, out)
		}
	}
	check("after the failed reversal")
	h.stopAfterFailure()
	h.start()
	t.Cleanup(h.stop)
	check("after the restart") // the reversal never reached the WAL
}
