package gateway

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestExpectContinueOverTheLimit: a request with "Expect: 100-continue"
// whose Content-Length is past what the gateway would read is refused
// before the client sends its body: the JSON 413 (or 401 for an unknown
// token on an upload route), never "100 Continue" followed by a refusal
// of the body it asked for. A body within the limit is still invited.
func TestExpectContinueOverTheLimit(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	ask := func(path, token string, length int) (int, string, bool) {
		t.Helper()
		c, err := h.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req := "POST " + path + " HTTP/1.1\r\nHost: gateway\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(length) + "\r\n"
		if token != "" {
			req += "Authorization: Bearer " + token + "\r\n"
		}
		if _, err := c.Write([]byte(req + "\r\n")); err != nil {
			t.Fatal(err)
		}
		// fasthttp's Response.Read would skip a "100 Continue": the
		// first status line is read here.
		br := bufio.NewReader(c)
		if line, _ := br.Peek(13); strings.HasPrefix(string(line), "HTTP/1.1 100 ") {
			return 100, "", false
		}
		var resp fasthttp.Response
		if err := resp.Read(br); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return resp.StatusCode(), string(resp.Body()), resp.ConnectionClose()
	}
	for _, tt := range []struct {
		path, token string
		length      int
		status      int
		want        string
	}{
		{"/v1/settlements", "tok-H3716020001", 5 << 20, 413, `"body_too_large"`},
		{"/v1/settlements", "", 5 << 20, 413, `"body_too_large"`},
		{"/v1/regions/371600/policies", "", 40 << 20, 401, `"unauthorized"`},
		{"/v1/regions/371600/policies", "tok-region-371600", 40 << 20, 413, "exceeds 32 MiB"},
	} {
		head := h.head()
		status, body, closed := ask(tt.path, tt.token, tt.length)
		if status != tt.status || !strings.Contains(body, tt.want) || !closed {
			t.Errorf("POST %s with %q, Expect: 100-continue, %d bytes: %d %s (closed %v), want %d %s and the connection closed",
				tt.path, tt.token, tt.length, status, body, closed, tt.status, tt.want)
		}
		if got := h.head(); got != head {
			t.Errorf("the ledger moved from %d to %d", head, got)
		}
	}
	// Within the limit the client is asked for its body.
	c, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nExpect: 100-continue\r\nAuthorization: Bearer tok-H3716020001\r\nContent-Length: 2\r\n\r\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Errorf("a small body with Expect: 100-continue: %q %v, want 100 Continue", line, err)
	}
}
