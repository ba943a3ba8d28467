package gateway

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestR10CatalogKeyedRetryWaitsLikeItsFirst: a keyed catalog write answers
// once no settlement computed with the catalog it replaced can commit
// (TestR9CatalogChangeAnsweredIsSeenBySettlementsCommittedAfter), but a
// retry with the same Idempotency-Key, sent while the first attempt was
// still waiting for such a settlement (its client gave up), was answered
// at once as a replay: the region was told its change was written, and a
// bill computed with the catalog it replaced committed after that answer.
func TestR10CatalogKeyedRetryWaitsLikeItsFirst(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	entered, release := blockingPolicy(h)
	settled := make(chan *raceCall, 1)
	go func() {
		c := &raceCall{path: "/v1/settlements", token: "tok-H3716020001",
			body: settleBody("CATK-1", "EMP1", "371600", chronicVisit, oneLine)}
		c.status, c.raw = h.do("POST", c.path, c.token, c.body)
		c.answer = decodeAnswer(t, c.raw)
		settled <- c
	}()
	<-entered // the settlement has read the catalog and is in its policy
	keyed := func() int {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://gateway/v1/regions/371602/catalog")
		req.Header.Set("Authorization", "Bearer tok-region-371600")
		req.Header.Set(IdempotencyKeyHeader, "cat-delist-XA01")
		req.Header.SetContentType("application/x-ndjson")
		req.SetBody([]byte(`{"code":"XA01","class":"C"}` + "\n"))
		if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Errorf("catalog: %v", err)
			return 0
		}
		checkAnswer(h.tb, "POST", "/v1/regions/371602/catalog", req.Body(), resp)
		return resp.StatusCode()
	}
	first := make(chan int, 1)
	go func() { first <- keyed() }()
	select {
	case s := <-first:
		close(release)
		<-settled
		t.Fatalf("the first attempt was answered %d with the settlement in flight", s)
	case <-time.After(300 * time.Millisecond): // written, waiting for the settlement
	}
	retry := make(chan int, 1)
	go func() { retry <- keyed() }()
	retryFirst := false
	select {
	case <-retry:
		retryFirst = true
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	c := <-settled
	<-first
	if !retryFirst {
		<-retry
	}
	if c.status != 200 {
		t.Fatalf("settle: %d %s", c.status, c.raw)
	}
	if class := c.answer.Lines[0]["class"]; retryFirst && class != "C" {
		t.Fatalf("the retry of the change making XA01 class C was answered before the settlement committed (seq %d), yet the settlement counted it as class %v", c.answer.Seq, class)
	}
}
