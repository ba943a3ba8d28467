package gateway

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"

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
