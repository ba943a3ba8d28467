package gateway

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestShutdownAnswersConnectionClose: a request in flight when the
// shutdown begins is answered, and its answer says "Connection: close".
// Without it a keep-alive client (the gateway then closes the connection
// after the answer) sends its next request on that connection and gets a
// reset or a broken pipe: a write it cannot tell from a cut one, where a
// refused new connection says plainly that nothing was sent.
func TestShutdownAnswersConnectionClose(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	conn, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The first bytes make the connection active (no longer idle).
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHo")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := conn.Write([]byte("st: gateway\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatalf("the request in flight at shutdown was not answered: %v", err)
	}
	if resp.StatusCode() != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
	}
	if !resp.ConnectionClose() {
		t.Errorf("the answer during shutdown keeps the connection alive (no Connection: close), and then the gateway closes it:\n%s", resp.Header.String())
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection stays open after the answer during shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
