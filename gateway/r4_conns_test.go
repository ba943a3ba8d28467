package gateway

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// serveTCP serves h's gateway on a loopback TCP listener as well (the
// harness's own listener is in memory, without addresses or descriptors)
// and returns its address and what Serve returned, once it has.
func serveTCP(t *testing.T, h *harness) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ln) }()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), served
}

// TestAcceptErrorsDoNotStopServing: when the process runs out of file
// descriptors (many clients connected at once), accept fails with EMFILE.
// fasthttp took every accept error but a timeout as the listener's end:
// Serve returned, Run returned its error, and the gateway exited, for every
// hospital. Now the gateway waits (backing off, not spinning) and serves
// again once descriptors are free.
func TestAcceptErrorsDoNotStopServing(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	addr, served := serveTCP(t, h)

	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Skip(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	low := saved
	low.Cur = uint64(len(fds) + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	// Each connection takes a descriptor here (the client's) and one in
	// the server once accepted: the server's accept runs out first or
	// the client's dial does; either way the table fills.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 64 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond) // the server meets EMFILE
	restore()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	select {
	case err := <-served:
		t.Fatalf("Serve returned on running out of file descriptors: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/healthz", 5*time.Second)
	if err != nil || status != 200 {
		t.Fatalf("GET /healthz once descriptors are free: %d %s %v", status, body, err)
	}
}

// limitedServer is a second gateway over h's ledger with connection
// bounds, served on loopback TCP (per-address bounds need addresses).
func limitedServer(t *testing.T, h *harness, maxConns, perIP int) (*Server, string) {
	t.Helper()
	srv := NewServer(ServerConfig{Service: NewService(h.db, h.policies, zerolog.Nop()), DB: h.db, Versions: h.versions,
		Principals: h.srv.principals, Logger: zerolog.Nop(), MaxConns: maxConns, MaxConnsPerIP: perIP})
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
	return srv, ln.Addr().String()
}

// dialFrom opens a connection to addr from the loopback address from
// (127.0.0.x: every 127/8 address is the machine's own).
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// healthOn sends GET /healthz on c and reads the answer.
func healthOn(t *testing.T, c net.Conn, br *bufio.Reader) *fasthttp.Response {
	t.Helper()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")); err != nil {
		t.Fatalf("writing a request: %v", err)
	}
	return readAnswer(t, br)
}

func readAnswer(t *testing.T, br *bufio.Reader) *fasthttp.Response {
	t.Helper()
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	return &resp
}

// TestConnectionLimits: connections are bounded in all (MaxConns) and
// from one address (MaxConnsPerIP), idle keep-alive ones included. One
// past a bound gets a JSON error at once (503 in all, 429 for its
// address) with Retry-After, and is closed; the connections already open
// go on being served; a closed one makes room. Before, the only bound was
// fasthttp's 256 Ki connections, past the process's file descriptors,
// and one client could hold every connection the gateway could open.
func TestConnectionLimits(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	refused := func(t *testing.T, c net.Conn, status int) {
		t.Helper()
		// The gateway answers before any request is sent.
		br := bufio.NewReader(c)
		resp := readAnswer(t, br)
		if resp.StatusCode() != status || !strings.Contains(string(resp.Body()), `"code":"too_many_connections"`) ||
			string(resp.Header.Peek("Retry-After")) != "1" || !resp.ConnectionClose() ||
			!strings.HasPrefix(string(resp.Header.ContentType()), "application/json") {
			t.Fatalf("a connection past the bound: %d %s %s, want %d too_many_connections with Retry-After: 1 and Connection: close",
				resp.StatusCode(), resp.Header.Header(), resp.Body(), status)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("the refused connection stays open")
		}
	}
	served := func(t *testing.T, c net.Conn) *bufio.Reader {
		t.Helper()
		br := bufio.NewReader(c)
		if resp := healthOn(t, c, br); resp.StatusCode() != 200 {
			t.Fatalf("GET /healthz: %d %s", resp.StatusCode(), resp.Body())
		}
		return br
	}

	t.Run("in all", func(t *testing.T) {
		_, addr := limitedServer(t, h, 3, 0)
		var open []net.Conn
		var readers []*bufio.Reader
		for i := range 3 {
			c := dialFrom(t, "127.0.0."+strconv.Itoa(i+1), addr)
			open = append(open, c)
			readers = append(readers, served(t, c))
		}
		refused(t, dialFrom(t, "127.0.0.9", addr), 503)
		// The open ones are still served, on the same connections.
		for i, c := range open {
			if resp := healthOn(t, c, readers[i]); resp.StatusCode() != 200 {
				t.Fatalf("an open connection at the bound: %d", resp.StatusCode())
			}
		}
		open[0].Close()
		deadline := time.Now().Add(3 * time.Second)
		for {
			c := dialFrom(t, "127.0.0.9", addr)
			br := bufio.NewReader(c)
			c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"))
			var resp fasthttp.Response
			if err := resp.Read(br); err == nil && resp.StatusCode() == 200 {
				// The refusal is counted where an operator looks.
				c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: gateway\r\n\r\n"))
				m := string(readAnswer(t, br).Body())
				// (at least 1: the tries above may have come before the
				// closed connection was counted out)
				if !regexp.MustCompile(`medgate_http_connections_refused_total\{limit="max_conns"\} [1-9]`).MatchString(m) {
					t.Errorf("/metrics does not count the refused connection")
				}
				for _, want := range []string{`medgate_http_connections_open 3`, `medgate_http_connections_limit 3`} {
					if !strings.Contains(m, want) {
						t.Errorf("/metrics lacks %s", want)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a closed connection did not make room for another")
			}
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("per address", func(t *testing.T) {
		_, addr := limitedServer(t, h, 100, 2)
		served(t, dialFrom(t, "127.0.0.1", addr))
		served(t, dialFrom(t, "127.0.0.1", addr))
		refused(t, dialFrom(t, "127.0.0.1", addr), 429)
		// Another address is not held back by the first one's.
		served(t, dialFrom(t, "127.0.0.2", addr))
		served(t, dialFrom(t, "127.0.0.2", addr))
	})
}

// TestConnectionSettings: the bounds are settings with their defaults,
// checked, in --help, and carried to the server; --max-conns is lowered
// to leave the ledger its file descriptors.
func TestConnectionSettings(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	s, err := LoadSettings(nil, none)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.Config(zerolog.Nop()); cfg.MaxConns != DefaultMaxConns || cfg.MaxConnsPerIP != 512 {
		t.Errorf("defaults: max-conns %d, max-conns-per-ip %d", cfg.MaxConns, cfg.MaxConnsPerIP)
	}
	s, err = LoadSettings([]string{"--max-conns", "50", "--max-conns-per-ip", "0"}, none)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.Config(zerolog.Nop()); cfg.MaxConns != 50 || cfg.MaxConnsPerIP != 0 {
		t.Errorf("--max-conns 50 --max-conns-per-ip 0: %d, %d", cfg.MaxConns, cfg.MaxConnsPerIP)
	}
	s, _ = LoadSettings([]string{"--max-conns", "0", "--max-conns-per-ip", "-1"}, none)
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--max-conns: must be at least 1") ||
		!strings.Contains(err.Error(), "--max-conns-per-ip: must not be negative") {
		t.Errorf("Validate: %v", err)
	}
	var help strings.Builder
	WriteUsage(&help)
	for _, want := range []string{"--max-conns ", "(default 10000; env MEDGATE_MAX_CONNS)", "--max-conns-per-ip", "behind a proxy"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	limit, ok := fdLimit()
	if !ok {
		return
	}
	if got := fitConns(1<<30, zerolog.Nop()); uint64(got) > limit-min(fdReserve, limit/2) {
		t.Errorf("fitConns(2^30) = %d with %d file descriptors", got, limit)
	}
	if got := fitConns(10, zerolog.Nop()); got != 10 {
		t.Errorf("fitConns(10) = %d", got)
	}
}

// TestBodyClaimNeedsAToken: fasthttp allocates a body's whole
// Content-Length (or a chunk's size) as soon as it has read the header,
// before any of the body arrives. Any client, without a token, could claim
// 2 MiB a connection with a header alone and hold it for the 30 s read
// timeout: 64 connections, 128 MiB; the connection bound, 20 GiB. A body
// past 64 KiB is now read only for a known token: without one the request
// is answered 401 at once and the connection closed. A hospital's large
// bill is read as before.
func TestBodyClaimNeedsAToken(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const conns = 64
	type answer struct {
		status int
		body   string
		err    error
	}
	answers := make(chan answer, conns)
	var open []net.Conn
	for i := range conns {
		c := h.rawConn(t)
		open = append(open, c)
		path, method := "/v1/settlements", "POST"
		switch i % 3 {
		case 1:
			path, method = "/healthz", "GET"
		case 2:
			path = "/v1/settlements/quote"
		}
		token := ""
		if i%2 == 1 {
			token = "Authorization: Bearer not-a-token\r\n"
		}
		c.Write([]byte(method + " " + path + " HTTP/1.1\r\nHost: gateway\r\n" + token + "Content-Length: 2097152\r\n\r\n"))
		go func() {
			var resp fasthttp.Response
			err := resp.Read(bufio.NewReader(c))
			answers <- answer{resp.StatusCode(), string(resp.Body()), err}
		}()
	}
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond) // the server reads every header
	if grew := int64(heap()) - int64(before); grew > 16<<20 {
		t.Errorf("%d connections claiming 2 MiB bodies without a token took %d MiB before sending any", conns, grew>>20)
	}
	for range conns {
		select {
		case a := <-answers:
			if a.err != nil || a.status != 401 || !strings.Contains(a.body, `"unauthorized"`) {
				t.Fatalf("a 2 MiB claim without a known token: %d %s %v, want 401 at once", a.status, a.body, a.err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a 2 MiB claim without a known token was not answered before its body")
		}
	}
	// A hospital's body past 64 KiB is read (and judged by the route).
	big := append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), 200<<10)...)
	big = append(big, `"}`...)
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", big)
	if status != 400 || !strings.Contains(string(body), `"unknown_field"`) && !strings.Contains(string(body), `"field"`) {
		t.Errorf("a hospital's 200 KiB body: %d %s, want it read and refused by the route", status, body)
	}
	// Chunked, the same: a chunk's size is allocated before its bytes.
	// (fasthttp forgets the header of a chunked body it refuses: the
	// answer is a 413 that names every limit.)
	c := h.rawConn(t)
	defer c.Close()
	c.Write([]byte("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n"))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil || resp.StatusCode() != 413 || !strings.Contains(string(resp.Body()), "64 KiB without a known token") {
		t.Errorf("a chunk of 128 KiB without a token: %d %s %v, want 413 at once", resp.StatusCode(), resp.Body(), err)
	}
}

// TestHugeNumbersNameTheField: a number where a field wants another type
// is refused naming the field, whatever its size: 1e9999 or a literal of
// 400 digits is valid JSON, but the lexer checked a skipped number with
// strconv.ParseFloat, whose range error answered "the body is not valid
// JSON" without a field. What is no number at all stays malformed_json.
func TestHugeNumbersNameTheField(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	for _, n := range []string{"1e9999", "-1e9999", "1E+400", "2.5e-400", strings.Repeat("9", 400), "-" + strings.Repeat("9", 400) + ".5", "-0", "0.0e0", "1e99999999999"} {
		status, body := h.do("POST", "/v1/settlements/quote", "tok-H3716020001", []byte(`{"items":[{"code":"A","quantity":`+n+`}]}`))
		a := decodeAnswer(t, body)
		if status != 400 || a.Error == nil || a.Error.Code != "invalid_field" || a.Error.Field != "items[0].quantity" {
			t.Errorf("quantity %.20s: %d %s, want 400 invalid_field items[0].quantity", n, status, body)
		}
	}
	for _, n := range []string{".5", "1e", "1e+", "--1", "1e5e5", "-"} {
		_, err := decodeSettle([]byte(`{"items":[{"code":"A","quantity":`+n+`}]}`), true)
		if err == nil || err.Code != "malformed_json" {
			t.Errorf("quantity %s (not a JSON number): %v, want malformed_json", n, err)
		}
	}
}
