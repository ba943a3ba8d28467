package gateway

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/engine/abi"
)

// blockingPolicy is a policy of 371600 whose first call signals entered
// and waits for release before answering (nothing paid, nothing counted):
// a settlement held between reading its state and committing.
func blockingPolicy(h *harness) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	pol := engine.NewNative("371600", "vblock", func(in *abi.Input, out *abi.Output) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	h.policies.Put("371600", engine.Version{Name: "vblock", EffectiveFrom: 20250101, Module: pol})
	return entered, release
}

// ndjson sends an NDJSON body and returns the status and body.
func (h *harness) ndjson(method, path, token string, body []byte) (int, []byte) {
	h.tb.Helper()
	resp, err := h.roundTrip(method, path, token, "application/x-ndjson", body, 10*time.Second)
	if err != nil {
		h.tb.Errorf("%s %s: %v", method, path, err)
		return 0, []byte(err.Error())
	}
	defer fasthttp.ReleaseResponse(resp)
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

// TestR9CatalogChangeAnsweredIsSeenBySettlementsCommittedAfter: a region's
// catalog change answered while a settlement of one of its hospitals was
// being computed must not be followed by that settlement committing with
// the catalog it replaced, as a persons upsert (TestRaceUpsertDuringSettlement)
// and a rollback (TestWithdrawWaitsForSettlementsInFlight) are not. Here
// the region delists XA01 (class A to C) while a bill of XA01 is in its
// policy: answered first, the bill then settled the drug as class A.
func TestR9CatalogChangeAnsweredIsSeenBySettlementsCommittedAfter(t *testing.T) {
	for _, method := range []string{"POST", "PUT"} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
			entered, release := blockingPolicy(h)
			settled := make(chan *raceCall, 1)
			go func() {
				c := &raceCall{path: "/v1/settlements", token: "tok-H3716020001",
					body: settleBody("CAT-1", "EMP1", "371600", chronicVisit, oneLine)}
				c.status, c.raw = h.do("POST", c.path, c.token, c.body)
				c.answer = decodeAnswer(t, c.raw)
				settled <- c
			}()
			<-entered // the settlement has read the catalog and is in its policy
			changed := make(chan int, 1)
			go func() {
				status, raw := h.ndjson(method, "/v1/regions/371602/catalog", "tok-region-371600", []byte(`{"code":"XA01","class":"C"}`+"\n"))
				if status != 200 {
					t.Errorf("catalog: %d %s", status, raw)
				}
				changed <- status
			}()
			changeFirst := false
			select {
			case <-changed:
				changeFirst = true
			case <-time.After(300 * time.Millisecond):
			}
			close(release)
			c := <-settled
			if !changeFirst {
				<-changed
			}
			if c.status != 200 {
				t.Fatalf("settle: %d %s", c.status, c.raw)
			}
			if class := c.answer.Lines[0]["class"]; changeFirst && class != "C" {
				t.Fatalf("the catalog change making XA01 class C was answered before the settlement committed (seq %d), yet the settlement counted it as class %v", c.answer.Seq, class)
			}
			// The next bill sees the change.
			status, raw := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("CAT-2", "EMP1", "371600", chronicVisit, oneLine))
			if a := decodeAnswer(t, raw); status != 200 || a.Lines[0]["class"] != "C" {
				t.Fatalf("a bill after the change: %d %s", status, raw)
			}
		})
	}
}

// TestR9TraceCodeRefusalWaitsForItsOwnersSync: a settlement whose trace
// code is held by another settlement applied to Pebble but not yet synced
// was refused 409 trace_code_reused at once, from a write that may never
// reach the disk; when that sync then failed (its own settlement answered
// 503), the refusal stood for a code nobody had settled, and the hospital,
// told the box was settled, had no reason to send the bill again. The
// refusal now waits for the owner to be durable: 409 once it is, 503
// ledger_unavailable if its write fails (as for a retry or a reused
// request id, TestRaceRetryWaitsForSync).
func TestR9TraceCodeRefusalWaitsForItsOwnersSync(t *testing.T) {
	for _, failSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", failSync), func(t *testing.T) {
			g := &syncGate{blocked: make(chan struct{}, 1)}
			h := &harness{tb: t, fs: errorfs.Wrap(vfs.NewMem(), g.injector()), dir: "ledger", policies: &engine.Policies{},
				world: refWorld(t, map[string][]string{"371600": {smallBalance, empActive}})}
			h.versions = referenceVersions(t, h.policies)
			h.start()
			t.Cleanup(h.stopAfterFailure)
			g.mu.Lock()
			hold := make(chan struct{})
			g.hold = hold
			g.mu.Unlock()

			items := `[{"code":"XA01","unit_price":"50.00","quantity":"1","amount":"50.00","trace_codes":["83900000000009990001"]}]`
			first := &raceCall{path: "/v1/settlements", token: "tok-H3716020001", body: settleBody("TCS-1", "EMPS", "371600", chronicVisit, items)}
			other := &raceCall{path: "/v1/settlements", token: "tok-H3716210001", body: settleBody("TCS-2", "EMP1", "371600", chronicVisit, items)}
			done := make(chan *raceCall, 2)
			send := func(c *raceCall) {
				c.status, c.raw = h.do("POST", c.path, c.token, c.body)
				json.Unmarshal(c.raw, &c.answer)
				done <- c
			}
			go send(first)
			select {
			case <-g.blocked:
			case <-time.After(5 * time.Second):
				t.Fatal("the settlement's sync never started")
			}
			// first is applied (its code visible in Pebble), not durable.
			go send(other)
			var early *raceCall
			select {
			case early = <-done:
			case <-time.After(300 * time.Millisecond):
			}
			g.fail.Store(failSync)
			g.mu.Lock()
			g.hold = nil
			g.mu.Unlock()
			close(hold)
			for n := 0; n < 2; n++ {
				if early != nil && n == 0 {
					continue
				}
				<-done
			}
			if early != nil && failSync {
				t.Fatalf("answered while its code's owner was not durable, which then failed: %d %s (the first: %d %s)",
					other.status, other.raw, first.status, first.raw)
			}
			if failSync {
				if first.status != 503 {
					t.Fatalf("first, its sync failed: %d %s", first.status, first.raw)
				}
				if other.status != 503 || other.answer.Error == nil || other.answer.Error.Code != "ledger_unavailable" {
					t.Fatalf("the bill reusing the code of a settlement whose write failed: %d %s, want 503 ledger_unavailable", other.status, other.raw)
				}
				return
			}
			if first.status != 200 {
				t.Fatalf("first: %d %s", first.status, first.raw)
			}
			if other.status != 409 || other.answer.Error == nil || other.answer.Error.Code != "trace_code_reused" {
				t.Fatalf("the bill reusing the code: %d %s, want 409 trace_code_reused", other.status, other.raw)
			}
		})
	}
}
