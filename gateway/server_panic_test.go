package gateway

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// TestHandlerPanicIs500: a bug that panics in a handler is that request's
// 500 internal, counted and logged as JSON; it does not reach fasthttp,
// which does not recover it and would end the process with every request
// in flight.
func TestHandlerPanicIs500(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	var logs syncBuffer
	h.srv.log = zerolog.New(&logs)
	h.srv.access = AccessLogSampling{Every: 1}.logger(zerolog.New(&logs))
	h.srv.svc = nil // the bug: a handler dereferences nil
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/v1/settlements")
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.Header.Set("Authorization", "Bearer tok-H3701020001")
	ctx.Request.SetBody(settleBody("P-1", "EMP1", "371600", chronicVisit, oneLine))
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("the handler's panic reached fasthttp (it would end the process): %v", r)
			}
		}()
		h.srv.Handle(&ctx)
	}()
	if ctx.Response.StatusCode() != 500 || !bytes.Contains(ctx.Response.Body(), []byte(`"internal"`)) {
		t.Fatalf("answer %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if !strings.Contains(logs.String(), `"status":500`) || !strings.Contains(logs.String(), "panic") {
		t.Errorf("logs:\n%s", logs.String())
	}
	var b bytes.Buffer
	h.srv.metrics.WriteText(&b)
	if want := `medgate_http_requests_total{method="POST",route="/v1/settlements",status="500"} 1`; !strings.Contains(b.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if n := h.srv.inflight.Load(); n != 0 {
		t.Errorf("%d requests still counted in flight", n)
	}
}
