package gateway

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// listener is the gateway's side of accepting connections, in front of
// fasthttp's accept loop.
type listener struct {
	net.Listener
	log zerolog.Logger
}

// Accept waits out the errors a busy machine gives (no file descriptor
// or socket buffer left, a connection reset before it was accepted):
// fasthttp ends Serve on any accept error but a timeout, and the gateway
// would exit for every hospital because some clients held too many
// connections. The wait doubles from 5 ms to 1 s (as net/http's), so the
// loop neither spins on a full descriptor table nor stays asleep long
// once descriptors are free.
func (l *listener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		if !temporaryAcceptError(err) {
			return nil, err
		}
		if wait == 0 {
			wait = 5 * time.Millisecond
			l.log.Error().Err(err).Msg("accepting connections failed; retrying (raise the file descriptor limit, or lower --max-conns)")
		} else if wait *= 2; wait > time.Second {
			wait = time.Second
		}
		time.Sleep(wait)
	}
}

// temporaryAcceptError reports whether an accept error is the machine's
// state, which passes, rather than the listener's end.
func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
