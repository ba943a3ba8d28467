package gateway

import (
	"sync/atomic"
	"testing"
	"time"

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
