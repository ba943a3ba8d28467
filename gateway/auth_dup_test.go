package gateway

import (
	"bufio"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestDuplicateAuthorizationRefused: a request with two Authorization
// headers has no one principal. fasthttp reads the first; a proxy in front
// may read (or add) the last, so the two would disagree on who is asking.
// It is refused 401 whichever header carries which token, and nothing is
// written.
func TestDuplicateAuthorizationRefused(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	base := h.head() // EMP1's opening balance
	body := string(settleBody("D-1", "EMP1", "371600", chronicVisit, oneLine))
	send := func(headers ...string) (int, string) {
		c := h.rawConn(t)
		defer c.Close()
		req := "POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
		for _, hd := range headers {
			req += "Authorization: " + hd + "\r\n"
		}
		if _, err := c.Write([]byte(req + "\r\n" + body)); err != nil {
			t.Fatal(err)
		}
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode(), string(resp.Body())
	}
	for _, hs := range [][]string{
		{"Bearer tok-H3716020001", "Bearer tok-clearing"},
		{"Bearer tok-clearing", "Bearer tok-H3716020001"},
		{"Bearer tok-H3716020001", "Bearer tok-H3716020001"},
		{"Bearer tok-H3716020001", "Bearer tok-H3716210001"},
	} {
		status, answer := send(hs...)
		if status != 401 || !strings.Contains(answer, `"unauthorized"`) {
			t.Errorf("Authorization %q: %d %s, want 401 unauthorized", hs, status, answer)
		}
	}
	if h.head() != base {
		t.Fatal("a request with two Authorization headers wrote to the ledger")
	}
	// One header still works.
	if status, answer := send("Bearer tok-H3716020001"); status != 200 {
		t.Fatalf("one Authorization header: %d %s", status, answer)
	}
}
