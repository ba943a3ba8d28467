package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestR9RefusedBodyAnswerReachesAClientStillWriting: a body past what the
// gateway reads is answered at once (413, or 401 without a known token)
// and the connection closed. Closed with the rest of the body unread, the
// socket sent a reset, which reached the client while it was still
// writing: net/http's and fasthttp's clients (which write the whole body
// before they read) reported "connection reset by peer" or "broken pipe"
// instead of the JSON answer, so a hospital never learned that its bill
// was too large and a client retrying transport errors sent it again for
// ever. Now the gateway stops writing (FIN) and reads what the client
// still sends, for a bounded time, before it closes.
func TestR9RefusedBodyAnswerReachesAClientStillWriting(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	addr, _ := serveTCP(t, h)
	head := h.head()
	for _, c := range []struct {
		name, token string
		size        int
		status      int
		code        string
	}{
		{"a 3 MiB bill", "tok-H3716020001", 3 << 20, 413, "body_too_large"},
		{"an 8 MiB bill", "tok-H3716020001", 8 << 20, 413, "body_too_large"},
		{"1 MiB without a known token", "not-a-token", 1 << 20, 401, "unauthorized"},
	} {
		body := []byte(`{"request_id":"big","pad":"` + strings.Repeat("a", c.size) + `"}`)
		for i := range 3 {
			cl := &http.Client{Timeout: 10 * time.Second}
			req, _ := http.NewRequest("POST", "http://"+addr+"/v1/settlements", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+c.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := cl.Do(req)
			if err != nil {
				t.Errorf("%s (net/http, try %d): %v, want %d %s", c.name, i, err, c.status, c.code)
			} else {
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				checkRefusal(t, c.name+" (net/http)", resp.StatusCode, got, c.status, c.code)
			}

			freq := fasthttp.AcquireRequest()
			freq.SetRequestURI("http://" + addr + "/v1/settlements")
			freq.Header.SetMethod("POST")
			freq.Header.Set("Authorization", "Bearer "+c.token)
			freq.Header.SetContentType("application/json")
			freq.SetBody(body)
			var fresp fasthttp.Response
			if err := (&fasthttp.Client{}).DoTimeout(freq, &fresp, 10*time.Second); err != nil {
				t.Errorf("%s (fasthttp, try %d): %v, want %d %s", c.name, i, err, c.status, c.code)
			} else {
				checkRefusal(t, c.name+" (fasthttp)", fresp.StatusCode(), fresp.Body(), c.status, c.code)
			}
			fasthttp.ReleaseRequest(freq)
		}
	}
	if got := h.head(); got != head {
		t.Errorf("the ledger moved from %d to %d", head, got)
	}
}

func checkRefusal(t *testing.T, what string, status int, body []byte, want int, code string) {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); status != want || err != nil || e.Error.Code != code {
		t.Errorf("%s: %d %s, want %d %s", what, status, body, want, code)
	}
}
