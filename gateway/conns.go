package gateway

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// DefaultMaxConns is the default of ServerConfig.MaxConns (--max-conns):
// room for a fleet of about a thousand hospitals keeping a pool of
// keep-alive connections each, at about 30 KiB an idle connection.
const DefaultMaxConns = 10000

// conns counts the server's open connections, in all, and from each IP
// address when MaxConnsPerIP is set: fasthttp's own bounds (Concurrency,
// 256 Ki connections, and MaxConnsPerIP) answer a refused client in plain
// text, and the first is past the file descriptors a process has, where
// the ledger then fails to open its files.
type conns struct {
	max, perIP int64
	open       atomic.Int64
	refused    [2]atomic.Uint64 // by refusal: refusedTotal, refusedPerIP
	answers    [2][]byte        // the HTTP answer to each refusal
	mu         sync.Mutex
	byIP       map[netip.Addr]int64
	logged     [2]atomic.Int64 // unix second of each refusal's last log line
	lingering  atomic.Int64    // refused connections in lingerClose
}

// maxLingeringRefusals bounds the refused connections read before they
// close (lingerClose), each a file descriptor past MaxConns for up to
// lingerMax: well within what fdReserve leaves beyond the ledger's files.
// Past it a refusal closes at once, as a flood's would.
const maxLingeringRefusals = 64

const (
	refusedTotal = iota
	refusedPerIP
)

func newConns(max, perIP int) *conns {
	c := &conns{max: int64(max), perIP: int64(perIP), byIP: map[netip.Addr]int64{}}
	c.answers[refusedTotal] = refusalAnswer(unavailable("too_many_connections",
		"the gateway has %d connections open, the most it takes; retry shortly or reuse a connection", max))
	c.answers[refusedPerIP] = refusalAnswer(&Error{Status: fasthttp.StatusTooManyRequests, Code: "too_many_connections",
		Message: "this address has " + strconv.Itoa(perIP) + " connections open, the most the gateway takes from one address; reuse them"})
	return c
}

// refusalAnswer is a whole HTTP answer to a connection refused before
// any request was read: e as JSON, like every other error, with
// Retry-After, and the connection closing.
func refusalAnswer(e *Error) []byte {
	body := appendError(nil, e)
	b := []byte("HTTP/1.1 " + strconv.Itoa(e.Status) + " " + fasthttp.StatusMessage(e.Status) + "\r\n" +
		"Server: medgate\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	return append(b, body...)
}

// admit counts c in, or says which bound it is past.
func (cs *conns) admit(c net.Conn) (ip netip.Addr, refusal int, ok bool) {
	if cs.open.Add(1) > cs.max {
		cs.open.Add(-1)
		return ip, refusedTotal, false
	}
	if cs.perIP > 0 {
		if a, isTCP := c.RemoteAddr().(*net.TCPAddr); isTCP {
			ip, _ = netip.AddrFromSlice(a.IP)
			ip = ip.Unmap()
			cs.mu.Lock()
			n := cs.byIP[ip]
			if n >= cs.perIP {
				cs.mu.Unlock()
				cs.open.Add(-1)
				return ip, refusedPerIP, false
			}
			cs.byIP[ip] = n + 1
			cs.mu.Unlock()
		}
	}
	return ip, 0, true
}

func (cs *conns) release(ip netip.Addr) {
	if ip.IsValid() {
		cs.mu.Lock()
		if n := cs.byIP[ip] - 1; n > 0 {
			cs.byIP[ip] = n
		} else {
			delete(cs.byIP, ip)
		}
		cs.mu.Unlock()
	}
	cs.open.Add(-1)
}

// conn is an admitted connection: closing it lets another one in.
type conn struct {
	net.Conn
	cs     *conns
	ip     netip.Addr
	closed atomic.Bool
	// linger is set when the server answers a request it did not read
	// whole and closes the connection (transportError): see lingerClose.
	linger atomic.Bool
}

func (c *conn) Close() error {
	if c.linger.Swap(false) {
		lingerClose(c.Conn)
	}
	if !c.closed.Swap(true) {
		c.cs.release(c.ip)
	}
	return c.Conn.Close()
}

// How long lingerClose reads what a client still sends: until it stops
// for lingerIdle, and at most lingerMax in all.
const (
	lingerIdle = time.Second
	lingerMax  = 10 * time.Second
)

// lingerClose stops writing to c (FIN, after the answer already written)
// and reads and drops what the client still sends, until it closes, stops
// sending for lingerIdle, or lingerMax passes. A socket closed with
// unread input sends a reset instead, which reaches a client still
// writing its body (a bill past the size limit, refused from its header)
// before it has read the answer: net/http's and fasthttp's clients then
// report "connection reset by peer" or "broken pipe", not the 413 or 401.
// The connection stays counted (MaxConns) until it is closed.
func lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	end := time.Now().Add(lingerMax)
	buf := make([]byte, 32<<10) // only on a refusal, not per request
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		deadline := now.Add(lingerIdle)
		if deadline.After(end) {
			deadline = end
		}
		if c.SetReadDeadline(deadline) != nil {
			return
		}
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// listener is the gateway's side of accepting connections, in front of
// fasthttp's accept loop.
type listener struct {
	net.Listener
	cs  *conns
	log zerolog.Logger
}

// Accept returns the next connection within the server's bounds. One past
// them is answered (503, or 429 past the bound of its address) and closed
// here: the answer is a few hundred bytes into a fresh socket's empty
// buffer, and a short deadline keeps a peer that shrank its window from
// holding the loop.
//
// Accept also waits out the errors a busy machine gives (no file
// descriptor or socket buffer left, a connection reset before it was
// accepted): fasthttp ends Serve on any accept error but a timeout, and
// the gateway would exit for every hospital because some clients held
// too many connections. The wait doubles from 5 ms to 1 s (as net/http's),
// so the loop neither spins on a full descriptor table nor stays asleep
// long once descriptors are free.
func (l *listener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
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
			continue
		}
		wait = 0
		ip, refusal, ok := l.cs.admit(c)
		if ok {
			return &conn{Conn: c, cs: l.cs, ip: ip}, nil
		}
		l.refuse(c, ip, refusal)
	}
}

func (l *listener) refuse(c net.Conn, ip netip.Addr, refusal int) {
	n := l.cs.refused[refusal].Add(1)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(l.cs.answers[refusal])
	// The client may be writing its request: closed with that unread,
	// the socket resets and the client may never read the answer
	// (lingerClose), which is read off here, not in the accept loop.
	if l.cs.lingering.Add(1) <= maxLingeringRefusals {
		go func() {
			defer l.cs.lingering.Add(-1)
			lingerClose(c)
			c.Close()
		}()
	} else {
		l.cs.lingering.Add(-1)
		c.Close()
	}
	// A line a minute at most: a flood must not flood the log.
	now := time.Now().Unix()
	if last := l.cs.logged[refusal].Load(); now-last >= 60 && l.cs.logged[refusal].CompareAndSwap(last, now) {
		ev := l.log.Warn().Uint64("refused_total", n)
		if refusal == refusedPerIP {
			ev.Str("ip", ip.String()).Int64("max_conns_per_ip", l.cs.perIP).Msg("connections refused: too many from one address")
		} else {
			ev.Int64("max_conns", l.cs.max).Msg("connections refused: the gateway is at its connection limit")
		}
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

// fdReserve is how many file descriptors fitConns leaves to the rest of
// the gateway: Pebble keeps up to 1,000 table files open (its
// MaxOpenFiles), plus its WAL and manifest, the policy store, the admin
// listener and logs. A connection flood that took them would fail the
// ledger's next file open, and a failed write leaves the ledger
// read-only until a restart.
const fdReserve = 1536

// fitConns is max (0: DefaultMaxConns), lowered if need be so that the
// connections and fdReserve fit the process's file descriptor limit.
func fitConns(n int, log zerolog.Logger) int {
	if n == 0 {
		n = DefaultMaxConns
	}
	limit, ok := fdLimit()
	if !ok {
		return n
	}
	room := limit / 2 // a small limit: half for connections
	if limit > 2*fdReserve {
		room = limit - fdReserve
	}
	if uint64(n) > room {
		log.Warn().Int("max_conns", n).Uint64("fd_limit", limit).Uint64("max_conns_used", room).
			Msg("--max-conns is past the file descriptor limit (ulimit -n) less what the ledger needs: lowered; raise the limit to keep it")
		n = int(max(room, 1))
	}
	return n
}
