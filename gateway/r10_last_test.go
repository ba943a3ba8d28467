package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/wasmgen"
	"medgate/gateway/internal/testenv"
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
	settled, release := settleHeldInPolicy(t, h, "CATK-1")
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

// TestR10UnavailableAnswerDoesNotQuoteStderr: a version whose module
// refused at start (its start function panicked) stays in force as
// unavailable, and its bills are answered 503 policy_unavailable saying
// why. Since a failed start quotes what the module wrote to stderr, that
// answer carried the module's own text (a panic's value, its author's
// source paths, what it made of its data) to every hospital whose bill
// fell on its dates, which README says a hospital's answer never carries.
func TestR10UnavailableAnswerDoesNotQuoteStderr(t *testing.T) {
	eng, _ := testenv.Engine(t)
	store, err := engine.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const secret = "panic: /home/author/410100/rules.go:42 table C50.9"
	write := wasmgen.Concat(
		wasmgen.I32Const(2), wasmgen.I32Const(0), wasmgen.I32Const(1), wasmgen.I32Const(8),
		[]byte{wasmgen.OpCall, 0, wasmgen.OpDrop, wasmgen.OpUnreachable})
	mod := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	mod.Imports = []wasmgen.Import{{Module: "wasi_snapshot_preview1", Name: "fd_write",
		Params: []byte{wasmgen.I32, wasmgen.I32, wasmgen.I32, wasmgen.I32}, Results: []byte{wasmgen.I32}}}
	mod.Data = []wasmgen.Data{{Offset: 0, Bytes: []byte{16, 0, 0, 0, byte(len(secret)), 0, 0, 0}}, {Offset: 16, Bytes: []byte(secret)}}
	mod.Funcs = append(mod.Funcs, wasmgen.Func{Body: write, Export: "_initialize"})
	policies := &engine.Policies{}
	w := &World{Policies: []PolicyFile{{Region: "371600", Version: "v2024", EffectiveFrom: 20240101, Wasm: mod.Bytes()}}}
	NewVersions(eng, store, policies, zerolog.Nop()).LoadWorld(context.Background(), w)
	ver, ok := policies.Lookup("371600", 20251109)
	if !ok {
		t.Fatal("no version")
	}
	var in abi.Input
	var out abi.Output
	err = ver.Module.Call(context.Background(), &in, nil, &out)
	if !strings.Contains(err.Error(), "C50") {
		t.Fatalf("Call = %v: want the start's failure, quoting the module", err)
	}
	e, ok := (&Service{log: zerolog.Nop()}).policyError(err, 0).(*Error)
	if !ok || e.Status != 503 || e.Code != "policy_unavailable" {
		t.Fatalf("answer %#v, want 503 policy_unavailable", e)
	}
	if strings.Contains(e.Message, "C50") || strings.Contains(e.Message, "/home/author") {
		t.Fatalf("the hospital's answer quotes what the module wrote: %s", e.Message)
	}
}
