package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
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

// TestR9ConnectionRefusalReachesAClientStillWriting: a connection past
// --max-conns-per-ip (or --max-conns) is answered 429 (503)
// too_many_connections and closed at once. A client writing a long bill on
// it then met a reset ("broken pipe", "connection reset by peer") and
// never saw the answer or its Retry-After; now the refusal reads what the
// client sends, for a bounded time, before it closes. (The fasthttp
// client here dials, then waits a moment before it writes, as a client
// whose body is not ready yet does: the refusal is then written and closed
// first. net/http's takes an answer before its request for a stray one.)
func TestR9ConnectionRefusalReachesAClientStillWriting(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	body := settleBody("R9-refused", "EMP1", "371600", chronicVisit,
		`[`+strings.Repeat(`{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00","trace_codes":["`+strings.Repeat("8", 900)+`"]},`, 999)+
			`{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"}]`)
	slowDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		time.Sleep(50 * time.Millisecond)
		return c, err
	}
	for _, c := range []struct {
		name          string
		maxConns, per int
		status        int
	}{{"per address", 100, 1, 429}, {"in all", 1, 0, 503}} {
		_, addr := limitedServer(t, h, c.maxConns, c.per)
		held := dialFrom(t, "127.0.0.1", addr)
		held.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"))
		readAnswer(t, bufio.NewReader(held))
		head := h.head()
		for i := range 2 {
			cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			req, _ := http.NewRequest("POST", "http://"+addr+"/v1/settlements", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer tok-H3716020001")
			resp, err := cl.Do(req)
			if err != nil {
				t.Errorf("%s (net/http, try %d): %v, want %d too_many_connections", c.name, i, err, c.status)
			} else {
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				checkRefusal(t, c.name+" (net/http)", resp.StatusCode, got, c.status, "too_many_connections")
				if resp.Header.Get("Retry-After") != "1" {
					t.Errorf("%s: Retry-After %q", c.name, resp.Header.Get("Retry-After"))
				}
			}

			fc := &fasthttp.Client{Dial: func(addr string) (net.Conn, error) { return slowDial(context.Background(), "tcp", addr) }}
			freq := fasthttp.AcquireRequest()
			freq.SetRequestURI("http://" + addr + "/v1/settlements")
			freq.Header.SetMethod("POST")
			freq.Header.Set("Authorization", "Bearer tok-H3716020001")
			freq.SetBody(body)
			var fresp fasthttp.Response
			if err := fc.DoTimeout(freq, &fresp, 10*time.Second); err != nil {
				t.Errorf("%s (fasthttp, try %d): %v, want %d too_many_connections", c.name, i, err, c.status)
			} else {
				checkRefusal(t, c.name+" (fasthttp)", fresp.StatusCode(), fresp.Body(), c.status, "too_many_connections")
			}
			fasthttp.ReleaseRequest(freq)
		}
		if got := h.head(); got != head {
			t.Errorf("%s: the ledger moved from %d to %d", c.name, head, got)
		}
		held.Close()
	}
}

// TestR9SlowUploadIsNotCutByTheReadTimeout: a request must arrive within
// the read timeout (30 s), which asked 9 Mbit/s of a region's 32 MiB
// roster: over a slower line the upload was answered 408 every time it was
// sent. Now a known token's upload gets the read timeout plus the time
// its length takes at 1 Mbit/s; any other request still gets the read
// timeout alone. (The server here has a read timeout of 1 s, and the
// roster of about 600 KiB arrives at about 160 KiB/s.)
func TestR9SlowUploadIsNotCutByTheReadTimeout(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	srv := NewServer(ServerConfig{Service: NewService(h.db, h.policies, zerolog.Nop()), DB: h.db, Versions: h.versions,
		Principals: h.srv.principals, Logger: zerolog.Nop()})
	srv.http.ReadTimeout = time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ln.Close()
	})
	trickle := func(path, token string, body []byte, piece int) (*fasthttp.Response, time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		began := time.Now()
		c.Write([]byte("POST " + path + " HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + token +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"))
		for len(body) > 0 {
			n := min(len(body), piece)
			if _, err := c.Write(body[:n]); err != nil {
				break // answered (408) and closed
			}
			body = body[n:]
			time.Sleep(100 * time.Millisecond)
		}
		resp := readAnswer(t, bufio.NewReader(c))
		return resp, time.Since(began)
	}

	var roster bytes.Buffer
	for i := 0; roster.Len() < 600<<10; i++ {
		roster.WriteString(strings.Replace(empActive, `"EMP1"`, `"SLOW`+strconv.Itoa(i)+`"`, 1) + "\n")
	}
	resp, took := trickle("/v1/regions/371600/persons", "tok-region-371600", roster.Bytes(), 16<<10)
	if resp.StatusCode() != 200 {
		t.Errorf("a roster of %d KiB over %v: %d %.200s, want 200", roster.Len()>>10, took.Round(time.Millisecond), resp.StatusCode(), resp.Body())
	}
	// A settlement is no upload: sent slowly (about 20 KiB/s), it is cut
	// at the read timeout.
	bill := settleBody("R9-slow", "EMP1", "371600", chronicVisit,
		`[`+strings.Repeat(`{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"},`, 700)+
			`{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"}]`)
	head := h.head()
	resp, took = trickle("/v1/settlements", "tok-H3716020001", bill, 2<<10)
	if resp.StatusCode() != 408 {
		t.Errorf("a bill of %d KiB over %v: %d %.200s, want 408", len(bill)>>10, took.Round(time.Millisecond), resp.StatusCode(), resp.Body())
	}
	if got := h.head(); got != head {
		t.Errorf("the ledger moved from %d to %d", head, got)
	}
}
