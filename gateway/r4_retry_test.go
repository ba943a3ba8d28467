package gateway

import (
	"strings"
	"testing"
)

// Retry semantics of the writes, as a client whose answer was lost sees
// them: the identical request again must be answered with something the
// client can act on, never a second effect, never a misleading answer.

// TestSettleReplayOfAReversedSettlementSaysSo: a hospital whose settle call
// timed out re-sends it (same request_id and body) to learn the outcome,
// as README "Faults and guarantees" tells it to. If the settlement was
// reversed meanwhile (domain.md: query → reverse; another terminal of the
// hospital, or its own compensation step), answering the first answer
// again with nothing more tells it the bill stands as settled: it would
// collect the patient's share of a bill whose fund share was taken back.
// The replay says by which reversal, as GET does.
func TestSettleReplayOfAReversedSettlementSaysSo(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	body := settleBody("R-REV-1", "EMP1", "371600", chronicVisit, oneLine)
	first := mustSettle(t, h, "H3716020001", body)
	rev := mustReverse(t, h, "H3716020001", first.SettlementID, "R-REV-1-X")
	check := func(when string) {
		t.Helper()
		status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body)
		a := decodeAnswer(t, out)
		if status != 200 || !a.Replayed || a.SettlementID != first.SettlementID {
			t.Fatalf("%s: retry of the settlement = %d %s, want 200 replayed", when, status, out)
		}
		if a.ReversedBy != rev.SettlementID {
			t.Fatalf("%s: the replay of a reversed settlement does not say it was reversed (reversed_by %q, want %q): %s", when, a.ReversedBy, rev.SettlementID, out)
		}
		// The reversal's own retry is its answer again, not "reversed by".
		status, out = h.do("POST", "/v1/settlements/"+first.SettlementID+"/reversal", "tok-H3716020001", []byte(`{"request_id":"R-REV-1-X","reason":"test"}`))
		if a := decodeAnswer(t, out); status != 200 || !a.Replayed || a.SettlementID != rev.SettlementID || a.ReversedBy != "" || strings.Contains(string(out), "reversed_by") {
			t.Fatalf("%s: retry of the reversal = %d %s", when, status, out)
		}
	}
	check("before restart")
	h.restart()
	check("after restart")
}
