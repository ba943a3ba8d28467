package gateway

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/cases"
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

// TestOverlappingRetryOfAStateDependentRefusal: a retry sent while its
// first attempt still holds the person's lock waits for it, then computes
// on the state the first attempt left. A policy may refuse on that state
// (here: one visit a year, as a region's cap on a benefit may be written);
// the retry was then answered 422 policy_refused, telling the hospital
// its bill was refused when it had been settled. It is a replay.
func TestOverlappingRetryOfAStateDependentRefusal(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	base := h.head() // EMP1's opening balance
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	pol := engine.NewNative("371600", "vonce", func(in *abi.Input, out *abi.Output) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		for _, c := range in.Counters {
			if c.Name == "visits" && c.Value > 0 {
				out.Refusal = "one visit a year: this person's visit of the year was already settled"
				return
			}
		}
		out.Changes = append(out.Changes, abi.Counter{Name: "visits", Value: 1})
		out.Notes = append(out.Notes, "first visit of the year")
	})
	h.policies.Put("371600", engine.Version{Name: "vonce", EffectiveFrom: 20250101, Module: pol})

	body := settleBody("R-ONCE-1", "EMP1", "371600", chronicVisit, oneLine)
	type reply struct {
		status int
		out    []byte
	}
	firstC, retryC := make(chan reply, 1), make(chan reply, 1)
	go func() {
		status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body)
		firstC <- reply{status, out}
	}()
	<-entered // the first attempt holds the person's lock, inside the policy
	go func() {
		status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body)
		retryC <- reply{status, out}
	}()
	time.Sleep(300 * time.Millisecond) // the retry has found no key and waits for the lock
	close(release)
	first, retry := <-firstC, <-retryC
	a1, a2 := decodeAnswer(t, first.out), decodeAnswer(t, retry.out)
	if first.status != 200 || a1.Replayed {
		t.Fatalf("first attempt: %d %s", first.status, first.out)
	}
	if retry.status != 200 || !a2.Replayed || a2.SettlementID != a1.SettlementID {
		t.Fatalf("the retry that overlapped a settled first attempt: %d %s, want 200 replayed %s", retry.status, retry.out, a1.SettlementID)
	}
	if h.head() != base+1 {
		t.Fatalf("ledger head %d, want 1 entry after %d", h.head(), base)
	}
	// Another bill of the person is still refused by the policy.
	status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("R-ONCE-2", "EMP1", "371600", chronicVisit, oneLine))
	if a := decodeAnswer(t, out); status != 422 || a.Error == nil || a.Error.Code != "policy_refused" {
		t.Fatalf("a second visit: %d %s, want 422 policy_refused", status, out)
	}
}

// TestWithdrawRetryIsAReplay: a region whose rollback's answer was lost
// sends it again. The version is withdrawn, as it asked; the retry was a
// 409 (and `medgate policy rollback` exited 1), so a deployment that
// retries on a lost answer reported a failed rollback that had taken
// effect. Like an upload's retry it is now answered 200 "replayed": true,
// with the time of the withdrawal (the first answer carries it too), so
// that a region can tell its own rollback from an earlier one. api.md is
// silent; the identical request names the same version and has the same
// effect, and nothing else identifies it.
func TestWithdrawRetryIsAReplay(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	const path = "/v1/regions/371600/policies/v2024/withdraw"
	status, out := h.do("POST", path, "tok-region-371600", nil)
	var first, again map[string]any
	if err := json.Unmarshal(out, &first); status != 200 || err != nil || first["replayed"] != false || first["withdrawn_at"] == nil {
		t.Fatalf("withdraw: %d %s, want 200 with replayed false and withdrawn_at", status, out)
	}
	check := func(when string) {
		t.Helper()
		status, out := h.do("POST", path, "tok-region-371600", nil)
		if err := json.Unmarshal(out, &again); status != 200 || err != nil || again["replayed"] != true {
			t.Fatalf("%s: the same withdrawal again: %d %s, want 200 replayed", when, status, out)
		}
		for _, k := range []string{"region", "withdrawn", "withdrawn_at", "in_force_today"} {
			if again[k] != first[k] {
				t.Errorf("%s: the replay's %s is %v, the first answer's %v", when, k, again[k], first[k])
			}
		}
		list, _ := h.versions.List("371600", 20261123)
		for _, v := range list {
			if v.Version == "v2024" && (v.Status != "withdrawn" || v.WithdrawnAt.Format(time.RFC3339) != first["withdrawn_at"]) {
				t.Errorf("%s: v2024 listed as %+v", when, v)
			}
		}
	}
	check("right after")
	h.restart()
	check("after a restart")
	// A version the region never had is still 404, not a replay.
	if status, out := h.do("POST", "/v1/regions/371600/policies/v2099/withdraw", "tok-region-371600", nil); status != 404 {
		t.Fatalf("withdrawing an unknown version: %d %s", status, out)
	}
}

// TestUploadWithOtherCasesIsNotAReplay: the same version, module and date
// sent again with other example cases is another request under a used
// version name, not a retry: it was answered 200 "replayed" without its
// cases being run, so a region that corrected an expected answer (or
// added the case that shows a defect) was told all was well by cases the
// module may fail. It is 409 version_exists saying the cases differ. The
// same cases reformatted (other spacing and key order, signed again) are
// the same content and still a replay.
func TestUploadWithOtherCasesIsNotAReplay(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	good := referenceWasm(t, "371600", "v2023")
	cases := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2031", "2031-01-01", good, cases, key)); status != 201 {
		t.Fatalf("first upload: %d %s", status, out)
	}
	// The first case's name changed, and one expected answer: cases the
	// module fails.
	var parsed []map[string]any
	if err := json.Unmarshal(cases, &parsed); err != nil || len(parsed) == 0 {
		t.Fatalf("cases: %v", err)
	}
	parsed[0]["name"] = "corrected expectation"
	parsed[0]["expect"].(map[string]any)["basic_fund"] = "99999.99"
	other, _ := json.Marshal(parsed)
	if _, rep := CheckVersion(t.Context(), h.versions.eng, "371600", "x", good, mustParseCases(t, other)); rep.OK {
		t.Fatalf("the changed cases pass: the test would not show anything")
	}
	status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2031", "2031-01-01", good, other, key))
	if status != 409 || !strings.Contains(string(out), "version_exists") || !strings.Contains(string(out), "cases") {
		t.Fatalf("the same version with other cases: %d %s, want 409 version_exists saying the cases differ", status, out)
	}
	// The same content in another layout (json.Marshal sorts the keys and
	// drops the spacing of the file) is the same upload.
	var again []any
	json.Unmarshal(cases, &again)
	relaid, _ := json.Marshal(again)
	status, out = h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2031", "2031-01-01", good, relaid, key))
	if status != 200 || !strings.Contains(string(out), `"replayed":true`) {
		t.Fatalf("the same cases reformatted: %d %s, want 200 replayed", status, out)
	}
}

func mustParseCases(t *testing.T, b []byte) []cases.Case {
	t.Helper()
	cs, err := cases.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
