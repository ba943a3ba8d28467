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
		c := h.rawConn(t)
		defer c.Close()
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
	c := h.rawConn(t)
	defer c.Close()
	c.Write([]byte("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nExpect: 100-continue\r\nAuthorization: Bearer tok-H3716020001\r\nContent-Length: 2\r\n\r\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Errorf("a small body with Expect: 100-continue: %q %v, want 100 Continue", line, err)
	}
}

// TestContentTypeDoesNotChangeTheReading: the body is read as sent,
// whatever Content-Type says (curl -d labels JSON as a form): a JSON body
// labelled multipart/form-data settles like any other, on a connection
// that stays open, and a real multipart body is the route's 400
// malformed_json, not a body fasthttp parsed (and spooled to temporary
// files) before the gateway saw it.
func TestContentTypeDoesNotChangeTheReading(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	body := settleBody("ct-1", "EMP1", "371600", chronicVisit, oneLine)
	for _, ctype := range []string{"multipart/form-data; boundary=xx", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-8"} {
		resp, err := h.roundTrip("POST", "/v1/settlements", "tok-H3716020001", ctype, body, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", ctype, err)
		}
		if resp.StatusCode() != 200 || resp.ConnectionClose() {
			t.Errorf("a settlement labelled %s: %d %s (close %v), want 200 on an open connection", ctype, resp.StatusCode(), resp.Body(), resp.ConnectionClose())
		}
		fasthttp.ReleaseResponse(resp)
	}
	head := h.head()
	mp := []byte("--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + string(body) + "\r\n--xx--\r\n")
	resp, err := h.roundTrip("POST", "/v1/settlements", "tok-H3716020001", "multipart/form-data; boundary=xx", mp, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer fasthttp.ReleaseResponse(resp)
	if resp.StatusCode() != 400 || !strings.Contains(string(resp.Body()), `"malformed_json"`) || resp.ConnectionClose() {
		t.Errorf("a multipart body: %d %s (close %v), want 400 malformed_json", resp.StatusCode(), resp.Body(), resp.ConnectionClose())
	}
	if got := h.head(); got != head {
		t.Errorf("the ledger moved from %d to %d", head, got)
	}
}

// TestTransferEncodingIdentityRefused: "Transfer-Encoding: identity" (no
// longer a transfer coding, RFC 9112 §6.1) is refused, 400 on a connection
// then closed. fasthttp drops it and takes the body as empty (or as its
// Content-Length): the bytes a proxy in front would send as this request's
// body were read as the next request on the connection, a smuggled one.
func TestTransferEncodingIdentityRefused(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	body := settleBody("te-smuggled", "EMP1", "371600", chronicVisit, oneLine)
	smuggled := "POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-H3716020001\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
	for _, framing := range []string{
		"Transfer-Encoding: identity\r\n",
		"Transfer-Encoding: Identity\r\n",
		"Transfer-Encoding: identity\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n",
	} {
		head := h.head()
		c, err := h.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-H3716020001\r\n" + framing + "\r\n" + smuggled))
		br := bufio.NewReader(c)
		var resp fasthttp.Response
		if err := resp.Read(br); err != nil {
			t.Fatalf("%q: %v", framing, err)
		}
		if resp.StatusCode() != 400 || !strings.Contains(string(resp.Body()), `"error"`) || !resp.ConnectionClose() {
			t.Errorf("%q: %d %s (close %v), want a JSON 400 and the connection closed", framing, resp.StatusCode(), resp.Body(), resp.ConnectionClose())
		}
		var next fasthttp.Response
		if err := next.Read(br); err == nil {
			t.Errorf("%q: the body was answered as a request: %d %s", framing, next.StatusCode(), next.Body())
		}
		c.Close()
		if got := h.head(); got != head {
			t.Errorf("%q: the ledger moved from %d to %d", framing, head, got)
		}
	}
	// Chunked, in any letter case, is still read.
	for _, te := range []string{"chunked", "Chunked"} {
		c, err := h.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-H3716020001\r\nTransfer-Encoding: " + te +
			"\r\n\r\n" + strconv.FormatInt(int64(len(body)), 16) + "\r\n" + string(body) + "\r\n0\r\n\r\n"))
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			t.Fatalf("chunked: %v", err)
		}
		if resp.StatusCode() != 200 || resp.ConnectionClose() {
			t.Errorf("Transfer-Encoding: %s: %d %s (close %v), want 200", te, resp.StatusCode(), resp.Body(), resp.ConnectionClose())
		}
		c.Close()
	}
}
