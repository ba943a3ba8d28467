package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/valyala/fasthttp"
)

// heapInuse is the heap in use after two collections (sync.Pool keeps
// what was put in it through one).
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rawRequest writes req on c and reads the answer's status.
func rawRequest(tb testing.TB, c net.Conn, br *bufio.Reader, req []byte) int {
	tb.Helper()
	if _, err := c.Write(req); err != nil {
		tb.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode()
}

// One large request on a keep-alive connection must not leave its body's
// buffer held by the connection (and, once it closes, by fasthttp's pool of
// request contexts, reused by the next connection) for good: fasthttp keeps
// a request's body buffer, at the largest size it ever grew to, from one
// request to the next unless told otherwise. A hospital's pool of
// keep-alive connections that each once carried a long bill would hold
// 2 MiB apiece for as long as the gateway runs.
func TestR4LargeBodyNotKeptByTheConnection(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	const conns = 16
	cs := make([]net.Conn, conns)
	brs := make([]*bufio.Reader, conns)
	small := []byte("GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
	for i := range cs {
		cs[i] = h.rawConn(t)
		defer cs[i].Close()
		brs[i] = bufio.NewReader(cs[i])
		if st := rawRequest(t, cs[i], brs[i], small); st != 200 {
			t.Fatalf("healthz: %d", st)
		}
	}
	before := heapInuse()
	// A body a little past 1 MiB from a known token: read whole and
	// answered 413 on a connection that stays open.
	body := bytes.Repeat([]byte(" "), MaxBodyBytes+MaxBodyBytes/2)
	big := append([]byte(fmt.Sprintf("POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-H3716020001\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))), body...)
	for i := range cs {
		if st := rawRequest(t, cs[i], brs[i], big); st != 413 {
			t.Fatalf("large body: %d", st)
		}
		for range 3 {
			if st := rawRequest(t, cs[i], brs[i], small); st != 200 {
				t.Fatalf("healthz after: %d", st)
			}
		}
	}
	body, big = nil, nil
	after := heapInuse()
	grown := int64(after) - int64(before)
	t.Logf("heap in use: %d KiB before, %d KiB after (%+d KiB)", before>>10, after>>10, grown>>10)
	if limit := int64(conns) * MaxBodyBytes / 4; grown > limit {
		t.Fatalf("after one large request on each of %d connections and small ones since, the heap holds %d KiB more (limit %d KiB)", conns, grown>>10, limit>>10)
	}
}
