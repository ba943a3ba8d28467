package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/ledger"
)

// Server is the gateway's HTTP face (fasthttp): it authenticates, decodes,
// calls the Service, and renders answers and errors.
type Server struct {
	svc        *Service
	db         *ledger.DB
	versions   *Versions
	policies   *engine.Policies
	principals *Principals
	log        zerolog.Logger
	access     zerolog.Logger // the access log: the logger, successes sampled
	metrics    *Metrics
	http       *fasthttp.Server
	cfg        ServerConfig

	inflight    atomic.Int64
	maxInflight int64
	refused     atomic.Uint64 // requests answered unread (transportError)
	bufs        sync.Pool
	regionBusy  sync.Map // region → *sync.Mutex, see regionWork
	detailsBusy sync.Map // hospital → *sync.Mutex, see reconcileDetails
	conns       *conns   // open connections, see listener
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Service    *Service
	DB         *ledger.DB
	Versions   *Versions // policy versions: schedule, uploads, replays
	Principals *Principals
	Logger     zerolog.Logger
	// Now is the clock of the clearing endpoints (is a month over, the
	// time of checkpoints); nil: time.Now.
	Now func() time.Time
	// CheckpointKey is the ed25519 seed that signs ledger checkpoints;
	// nil: the public demo key (checkpoint.go).
	CheckpointKey []byte
	// MaxInflight bounds requests being worked on at once; beyond it the
	// gateway answers 503 with Retry-After at once. 0: 4096.
	MaxInflight int
	// MaxConns bounds the connections open at once, idle keep-alive ones
	// included; one past it is answered 503 too_many_connections with
	// Retry-After and closed. 0: DefaultMaxConns.
	MaxConns int
	// MaxConnsPerIP bounds the connections open at once from one IP
	// address (429 too_many_connections past it), so that one client
	// (a leak, a flood, a slow sender) cannot take every connection; 0:
	// no bound (a proxy in front, whose address every connection shares).
	MaxConnsPerIP int
	// Metrics receives the server's measurements (nil: a fresh one).
	Metrics *Metrics
	// AccessLog samples the access log's lines of successful requests.
	AccessLog AccessLogSampling
}

// NewServer builds a Server; call Serve to run it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	s := &Server{conns: newConns(cfg.MaxConns, cfg.MaxConnsPerIP), svc: cfg.Service, db: cfg.DB, versions: cfg.Versions, policies: cfg.Versions.Policies(), principals: cfg.Principals,
		log: cfg.Logger, access: cfg.AccessLog.logger(cfg.Logger), metrics: cfg.Metrics, maxInflight: int64(cfg.MaxInflight), cfg: cfg}
	cfg.Metrics.bind(s)
	if s.svc != nil && s.svc.metrics == nil {
		s.svc.metrics = cfg.Metrics
	}
	if s.svc != nil && s.svc.now == nil {
		s.svc.now = cfg.Now
	}
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.http = &fasthttp.Server{
		Handler: s.Handle,
		Name:    "medgate",
		// Each request's limit is bodyLimit's (HeaderReceived).
		MaxRequestBodySize: MaxUploadBytes + MaxBodyBytes,
		// Connection-level errors (a body past its limit, a reset) are
		// answered or counted already: logged at debug level only.
		Logger: fasthttpLogger{cfg.Logger},
		// fasthttp's errors about a request it could not read quote the
		// request's bytes (the path may hold a person's id, the header a
		// token): not their snippet, and fasthttpLogger masks the rest.
		SecureErrorLogMessage: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		ErrorHandler:          s.transportError,
		HeaderReceived:        s.bodyLimit,
		ExpectHandler:         s.expect,
		// Bodies are read as sent, whatever their Content-Type: fasthttp
		// would parse a multipart one (spooling large parts to temporary
		// files) and refuse a JSON body so labelled as unreadable.
		DisablePreParseMultipartForm: true,
		NoDefaultDate:                false,
		// An answer given while shutting down says "Connection: close",
		// as the connection is closed after it: a keep-alive client then
		// opens a new connection (refused) for its next request instead
		// of sending it on this one and getting a reset.
		CloseOnShutdown: true,
	}
	return s
}

// readSlack is how many times MaxBodyBytes the server still reads on a
// route that takes no uploads: a body a little too large is read whole and
// answered 413 by the route (the connection stays open, and a client that
// writes the whole body before it reads gets the answer); past it fasthttp
// stops reading, transportError answers 413 and the connection closes.
const readSlack = 2

// anonymousBodyBytes is the most body the server reads for a request
// without a known token (whose answer is a 401 whatever its body): fasthttp
// allocates a body's whole Content-Length, or a chunk's size, once it has
// the header, before any of it arrives, and a header alone would otherwise
// hold readSlack MiB a connection for the read timeout.
const anonymousBodyBytes = 64 << 10

// keptBodyBytes is the largest request or answer body buffer a connection
// keeps for its next request. fasthttp keeps each connection's buffers at
// the largest size they ever grew to, and hands them with its request
// context to the next connection when this one closes: one long bill or
// upload on each of a hospital's keep-alive connections would otherwise
// hold up to 2 MiB (33 MiB for an upload) apiece for as long as the
// gateway runs. A larger buffer is dropped after its request (the request
// body) or before the next one (the answer, which is written after
// Handle returns); a request or answer past this size then costs a fresh
// buffer from fasthttp's pool, a small one nothing more than a comparison.
const keptBodyBytes = 64 << 10

// bodyLimit is fasthttp's HeaderReceived: how many body bytes the server
// reads for a request, decided from its header before any is read. Past
// anonymousBodyBytes, only for a known token; only the routes that take
// uploads (Route.MaxBody) read more than MaxBodyBytes: otherwise anyone
// could make the gateway buffer 33 MiB on every connection before it
// checks a token. Past the limit, an unknown token is answered 401 and the
// connection closes. The path is matched as sent (query removed); a path
// that only matches once fasthttp normalizes it gets the common limit.
func (s *Server) bodyLimit(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	conf := fasthttp.RequestConfig{MaxRequestBodySize: readSlack * MaxBodyBytes}
	if n := h.ContentLength(); n == -2 || n >= 0 && n <= anonymousBodyBytes {
		return conf // no body (-2), or a small one: no token to look up
	}
	if !s.knownToken(h) {
		conf.MaxRequestBodySize = anonymousBodyBytes
		return conf
	}
	if m := h.Method(); string(m) == fasthttp.MethodGet || string(m) == fasthttp.MethodHead {
		return conf
	}
	if r := s.uploadRoute(h); r != nil {
		// A token of another role is refused (403) once the body is read:
		// its memory is a known principal's.
		conf.MaxRequestBodySize = r.MaxBody
		conf.ReadTimeout = s.uploadReadTimeout(h.ContentLength(), r.MaxBody)
	}
	return conf
}

// minUploadRate is the slowest link (bytes a second: 1 Mbit/s) an upload
// may come over. The read timeout (30 s for a whole request) alone asked
// 9 Mbit/s of a 32 MiB roster or catalog: over a slower line a region's
// upload was refused 408 every time it was sent.
const minUploadRate = 128 << 10

// uploadReadTimeout is how long an upload's body of n bytes (-1: chunked,
// up to max) may take to arrive once its header has: the read timeout,
// and the time n bytes take at minUploadRate. Only a known token's upload
// gets it (bodyLimit), so an anonymous client still cannot hold a
// connection past the read timeout.
func (s *Server) uploadReadTimeout(n, max int) time.Duration {
	if n < 0 {
		n = max
	}
	return s.http.ReadTimeout + time.Duration(n)*time.Second/minUploadRate
}

// expect is fasthttp's ExpectHandler: a request with "Expect:
// 100-continue" whose Content-Length is past bodyLimit's is answered (413,
// or 401 for an unknown token on an upload route) before the client is
// asked for a body the gateway would refuse; fasthttp then closes the
// connection. Otherwise the client gets its "100 Continue".
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	if ctx.Request.Header.ContentLength() > s.bodyLimit(&ctx.Request.Header).MaxRequestBodySize {
		s.transportError(ctx, fasthttp.ErrBodyTooLarge)
		return ctx.Response.StatusCode()
	}
	return fasthttp.StatusContinue
}

// knownToken reports whether the request carries a principal's token.
func (s *Server) knownToken(h *fasthttp.RequestHeader) bool {
	token, ok := bearer(h)
	if ok {
		_, ok = s.principals.Lookup(token)
	}
	return ok
}

// bearer is the request's Bearer token, if it has one. A request with
// two Authorization headers has none: fasthttp would read the first, a
// proxy in front of the gateway may read (or have added) the last, and the
// two would disagree on who is asking.
func bearer(hdr *fasthttp.RequestHeader) ([]byte, bool) {
	all := hdr.PeekAll("Authorization")
	if len(all) != 1 {
		return nil, false
	}
	h := all[0]
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return nil, false
	}
	// Only the blanks HTTP puts around a token (SP, HTAB) are taken off:
	// bytes.TrimSpace also took Unicode spaces (U+00A0, U+3000), so that a
	// header of such a space alone presented the empty token, which a
	// principals.json written from an unset variable holds the hash of.
	token := bytes.Trim(h[len(prefix):], " \t")
	if len(token) == 0 {
		return nil, false
	}
	return token, true
}

// uploadRoute is the route of a request whose body may be larger than
// MaxBodyBytes, or nil.
func (s *Server) uploadRoute(h *fasthttp.RequestHeader) *Route {
	path := h.RequestURI()
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	// Only the upload routes are tried (no literal route shares their
	// shape): a settlement's header is checked against a few patterns
	// instead of the whole table.
	var buf [4]string
	for _, r := range uploadRoutes() {
		if string(h.Method()) != r.Method {
			continue
		}
		if _, ok := matchPath(r.segs, path, buf[:0]); ok {
			return r
		}
	}
	return nil
}

// uploadRoutes are the routes whose body may exceed MaxBodyBytes, listed
// once the route table is complete (at the first request).
var uploadRoutes = sync.OnceValue(func() []*Route {
	var rs []*Route
	for _, r := range routes {
		if r.MaxBody > MaxBodyBytes {
			rs = append(rs, r)
		}
	}
	return rs
})

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(&listener{Listener: ln, cs: s.conns, log: s.log})
}

// Shutdown stops accepting and waits for in-flight requests to finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.ShutdownWithContext(ctx) }

// transportError answers a request fasthttp could not read, with the
// status fasthttp's own error handler (which this one replaces) would give.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	// fasthttp closes the connection after this answer, with what the
	// client still sends (a body past the limit) unread: read it first,
	// or the client gets a reset instead of the answer (lingerClose).
	if c, ok := ctx.Conn().(*conn); ok {
		c.linger.Store(true)
	}
	ctx.Request.ReleaseBody(keptBodyBytes) // what was read of it
	ctx.Response.ReleaseBody(keptBodyBytes)
	e := s.transportErrorAnswer(ctx, err)
	s.writeError(ctx, e)
	// Counted and logged like any answer (Handle): a flood of oversized
	// or unreadable requests must show on the dashboard and in the logs.
	// Its duration is 0: it was answered without being read, and
	// fasthttp's ctx.Time() is then the connection's or the previous
	// request's time, not this one's.
	buf := paramBufs.Get().(*[4]string)
	r, _, _ := s.match(ctx.Method(), ctx.Path(), buf[:0])
	*buf = [4]string{}
	paramBufs.Put(buf)
	// fasthttp numbers a request only once it has read it: its ID is 0
	// here, or the connection's previous request's. Such a request gets
	// an id of its own, marked by the top bit.
	id := refusedIDBit | s.refused.Add(1)
	setRequestID(ctx, id)
	s.metrics.observeRequest(r, e.Status, 0)
	s.logAccess(ctx, id, r, Principal{}, e.Status, e.Code, 0)
}

// transportErrorAnswer is the answer to a request fasthttp could not read.
func (s *Server) transportErrorAnswer(ctx *fasthttp.RequestCtx, err error) *Error {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		limit := MaxBodyBytes // what the route allows, not readSlack's
		if len(ctx.Request.Header.RawHeaders()) == 0 {
			// fasthttp resets the header of a chunked body past the
			// limit: which limit it was is not known.
			return &Error{Status: fasthttp.StatusRequestEntityTooLarge, Code: "body_too_large",
				Message: "the request body exceeds what the gateway reads: 1 MiB, 32 MiB on an upload route, 64 KiB without a known token"}
		}
		if n := ctx.Request.Header.ContentLength(); n <= readSlack*MaxBodyBytes && !s.knownToken(&ctx.Request.Header) {
			// Refused for want of a token (anonymousBodyBytes), not for
			// its size: the token is what is wrong (a 401).
			_, err := s.authHeader(&ctx.Request.Header, "")
			return s.toError(ctx, err)
		}
		if r := s.uploadRoute(&ctx.Request.Header); r != nil {
			if _, err := s.authHeader(&ctx.Request.Header, r.Role); err != nil {
				// An upload's own limit is only for its role's tokens:
				// the token is what is wrong.
				return s.toError(ctx, err)
			}
			limit = r.MaxBody
		}
		return &Error{Status: fasthttp.StatusRequestEntityTooLarge, Code: "body_too_large",
			Message: "the request body exceeds " + strconv.Itoa(limit>>20) + " MiB"}
	case errors.As(err, &small):
		return &Error{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Code: "header_too_large", Message: "the request line and headers are too large"}
	case errors.As(err, &netErr) && netErr.Timeout():
		return &Error{Status: fasthttp.StatusRequestTimeout, Code: "request_timeout", Message: "the request was not received in time"}
	default:
		return badRequest("malformed_request", "", "the HTTP request could not be read")
	}
}

// Handle serves one request, then counts it (metrics) and logs it (the
// access log: one line with the request's id, method, route pattern,
// status and duration; never the raw path, which may hold a person's id).
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	began := time.Now()
	ctx.Response.ReleaseBody(keptBodyBytes) // the previous answer's buffer
	defer ctx.Request.ReleaseBody(keptBodyBytes)
	buf := paramBufs.Get().(*[4]string) // handlers' params escape: pooled, not allocated
	r, params, err := s.match(ctx.Method(), ctx.Path(), buf[:0])
	if identityEncoded(&ctx.Request.Header) {
		// What follows may be this request's body as a proxy in front
		// framed it, not a request: the connection closes after the answer.
		ctx.SetConnectionClose()
		if c, ok := ctx.Conn().(*conn); ok {
			c.linger.Store(true) // what follows is unread (lingerClose)
		}
		err = badRequest("malformed_request", "", "Transfer-Encoding identity is not supported: send Content-Length or chunked")
	}
	var p Principal
	if err == nil {
		p, err = s.routeRecovered(ctx, r, params)
	}
	*buf = [4]string{}
	paramBufs.Put(buf)
	var code string
	if err != nil {
		e := s.toError(ctx, err)
		code = e.Code
		s.writeError(ctx, e)
	}
	setRequestID(ctx, ctx.ID())
	took := time.Since(began)
	status := ctx.Response.StatusCode()
	s.metrics.observeRequest(r, status, took)
	s.logAccess(ctx, ctx.ID(), r, p, status, code, took)
}

// identityEncoded reports whether the request says "Transfer-Encoding:
// identity", which fasthttp accepts and drops: it then frames the body by
// Content-Length, or as empty without one, where a proxy may read on until
// the connection closes (RFC 9112 §6.1 removed identity; §6.3 has an
// unknown coding refused). fasthttp refuses every other coding but chunked,
// and a second Transfer-Encoding header.
func identityEncoded(h *fasthttp.RequestHeader) bool {
	if h.ContentLength() == -1 { // chunked
		return false
	}
	raw := h.RawHeaders()
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if k, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Transfer-Encoding")) {
			return true
		}
	}
	return false
}

var paramBufs = sync.Pool{New: func() any { return new([4]string) }}

// routeRecovered is route with a panic (a bug) turned into that request's
// 500 internal, logged with its stack: fasthttp does not recover a
// handler's panic, which would end the process and every request in
// flight with it. Handlers release what they hold (person locks, trace
// code reservations, policy instances) with defer.
func (s *Server) routeRecovered(ctx *fasthttp.RequestCtx, r *Route, params []string) (p Principal, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
		}
	}()
	return s.route(ctx, r, params)
}

// route runs a matched route: the in-flight limit, the body limit, the
// token, the handler. Routes without a role (health, metrics, the OpenAPI
// file) are cheap and answer even at capacity.
func (s *Server) route(ctx *fasthttp.RequestCtx, r *Route, params []string) (Principal, error) {
	if r.Role != "" {
		if n := s.inflight.Add(1); n > s.maxInflight {
			s.inflight.Add(-1)
			ctx.Response.Header.Set("Retry-After", "1")
			return Principal{}, unavailable("overloaded", "the gateway is at capacity; retry shortly")
		}
		defer s.inflight.Add(-1)
	}
	limit := r.MaxBody
	if limit == 0 {
		limit = MaxBodyBytes
	}
	if len(ctx.PostBody()) > limit {
		return Principal{}, &Error{Status: fasthttp.StatusRequestEntityTooLarge, Code: "body_too_large",
			Message: "the request body exceeds " + strconv.Itoa(limit>>20) + " MiB"}
	}
	if ce := ctx.Request.Header.ContentEncoding(); len(ctx.PostBody()) > 0 && len(ce) > 0 && !bytes.EqualFold(ce, []byte("identity")) {
		// Bodies are read as sent: a compressed one would only be
		// "not valid JSON" about bytes the client never wrote.
		return Principal{}, &Error{Status: fasthttp.StatusUnsupportedMediaType, Code: "unsupported_content_encoding",
			Message: "the request body must not be compressed (Content-Encoding " + string(ce) + ")"}
	}
	var p Principal
	if r.Role != "" {
		var err error
		if p, err = s.auth(ctx, r.Role); err != nil {
			return Principal{}, err
		}
		if len(ctx.URI().QueryString()) > 0 {
			if err := queryParams(ctx, r.Query...); err != nil {
				return p, err
			}
		}
	}
	return p, r.Handle(s, ctx, p, params)
}

// auth returns the token's principal, requiring role.
func (s *Server) auth(ctx *fasthttp.RequestCtx, role Role) (Principal, error) {
	return s.authHeader(&ctx.Request.Header, role)
}

// authHeader is auth from the request's header alone.
func (s *Server) authHeader(hdr *fasthttp.RequestHeader, role Role) (Principal, error) {
	token, ok := bearer(hdr)
	if !ok {
		return Principal{}, &Error{Status: fasthttp.StatusUnauthorized, Code: "unauthorized", Message: "one Authorization: Bearer <token> header is required"}
	}
	p, ok := s.principals.Lookup(token)
	if !ok {
		return Principal{}, &Error{Status: fasthttp.StatusUnauthorized, Code: "unauthorized", Message: "the token is not known"}
	}
	if p.Role != role {
		return Principal{}, &Error{Status: fasthttp.StatusForbidden, Code: "forbidden", Message: "this endpoint is for " + string(role) + " tokens; this token is a " + string(p.Role) + "'s"}
	}
	return p, nil
}

func (s *Server) hospital(p Principal) (ledger.Hospital, error) {
	h, ok := s.db.Hospital(p.ID)
	if !ok {
		return ledger.Hospital{}, &Error{Status: fasthttp.StatusForbidden, Code: "forbidden", Message: "the token's hospital is not in the registry"}
	}
	return h, nil
}

func (s *Server) settle(ctx *fasthttp.RequestCtx, p Principal, quote bool) error {
	h, err := s.hospital(p)
	if err != nil {
		return err
	}
	req, derr := decodeSettle(ctx.PostBody(), quote)
	if derr != nil {
		return derr
	}
	req.LogID = ctx.ID()
	res, err := s.svc.Settle(context.Background(), h, req, quote)
	if err != nil {
		return err
	}
	if !res.Quote && !res.Replayed {
		s.metrics.settled(res.Entry)
	}
	s.writeResult(ctx, res)
	return nil
}

func (s *Server) reverse(ctx *fasthttp.RequestCtx, p Principal, id string) error {
	h, err := s.hospital(p)
	if err != nil {
		return err
	}
	req, derr := decodeReversal(ctx.PostBody())
	if derr != nil {
		return derr
	}
	res, err := s.svc.Reverse(context.Background(), h.ID, id, req)
	if err != nil {
		return err
	}
	if !res.Replayed {
		s.metrics.settled(res.Entry)
	}
	s.writeResult(ctx, res)
	return nil
}

func (s *Server) get(ctx *fasthttp.RequestCtx, p Principal, id string) error {
	h, err := s.hospital(p)
	if err != nil {
		return err
	}
	res, err := s.svc.Get(h.ID, id)
	if err != nil {
		return err
	}
	s.writeResult(ctx, res)
	return nil
}

func init() {
	registerRoutes(Route{Method: "GET", Pattern: "/healthz", Handle: func(s *Server, ctx *fasthttp.RequestCtx, _ Principal, _ []string) error {
		s.health(ctx)
		return nil
	}})
}

// commitStalledAfter is how long a group commit may wait (to be written,
// or for its WAL sync) before /healthz says the ledger is stalled: a
// healthy disk commits in milliseconds, and a write stall of Pebble's
// lasts seconds at worst.
var commitStalledAfter = 10 * time.Second

func (s *Server) health(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	if s.versions != nil && s.policies.HasUnavailable() { // asked first: it allocates nothing
		if un := s.versions.Unavailable(); len(un) > 0 {
			// A version in the schedule that cannot run refuses every
			// bill of its dates (503 policy_unavailable) until the
			// world or the store is fixed: an operator's matter.
			res := map[string]any{"status": "degraded", "policies_unavailable": un}
			switch {
			case s.db.Failed():
				res["ledger"] = "read_only"
			case s.db.LowDisk():
				res["ledger"] = "disk_full"
			case s.db.CommitWaiting() > commitStalledAfter:
				res["ledger"] = "commit_stalled"
			case s.db.Unreadable():
				res["ledger"] = "read_errors"
			}
			b, _ := json.Marshal(res)
			ctx.SetBody(b)
			return
		}
	}
	if s.db.Failed() {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBodyString(`{"status":"degraded","ledger":"read_only"}`)
		return
	}
	if s.db.LowDisk() {
		ctx.SetBodyString(`{"status":"degraded","ledger":"disk_full"}`)
		return
	}
	if s.db.CommitWaiting() > commitStalledAfter {
		// A commit hangs (the disk's writes or syncs do not return):
		// every write waits behind it.
		ctx.SetBodyString(`{"status":"degraded","ledger":"commit_stalled"}`)
		return
	}
	if s.db.Unreadable() {
		// A read of the store failed within the last minute (a disk
		// error, a corrupt block): some requests are answered 503.
		ctx.SetBodyString(`{"status":"degraded","ledger":"read_errors"}`)
		return
	}
	ctx.SetBodyString(`{"status":"ok"}`)
}

func (s *Server) writeResult(ctx *fasthttp.RequestCtx, r *Result) {
	bp := s.bufs.Get().(*[]byte)
	b := appendResult((*bp)[:0], r)
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(b) // copies
	// A long answer's buffer is not kept (keptBodyBytes).
	if cap(b) <= keptBodyBytes {
		*bp = b
		s.bufs.Put(bp)
	}
}

// toError turns any error into the answer; errors that are not *Error are
// bugs or storage faults: logged with their cause, answered with a generic
// 500 that leaks nothing.
func (s *Server) toError(ctx *fasthttp.RequestCtx, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, ledger.ErrLowDisk) {
		return lowDisk(err)
	}
	if errors.Is(err, ledger.ErrWriteFailed) {
		return &Error{Status: 503, Code: "ledger_unavailable", Message: "the ledger cannot write; retry later", RetryAfter: "1", Cause: err}
	}
	if errors.Is(err, ledger.ErrUnreadable) {
		// A disk fault, not a bug (api.md: 500 only for bugs): what the
		// request needed could not be read, so nothing was done. Logged,
		// as it needs an operator; /healthz says so too.
		s.log.Error().Str("error", redactIDs(err.Error())).Uint64("req", ctx.ID()).Msg("ledger read failed")
		s.db.ReportUnreadable(err)
		return &Error{Status: 503, Code: "ledger_unreadable", Message: "the ledger could not read what this request needs; nothing was written; retry later with the same request_id", RetryAfter: "1", Cause: err}
	}
	if errors.Is(err, ledger.ErrClosed) {
		// Shutting down: a request still running when the ledger closed.
		ctx.Response.Header.Set("Retry-After", "1")
		return &Error{Status: 503, Code: "shutting_down", Message: "the gateway is shutting down; retry shortly", Cause: err}
	}
	// The cause may quote stored records: long digit runs (ids) are masked.
	s.log.Error().Str("error", redactIDs(err.Error())).Uint64("req", ctx.ID()).Msg("internal error")
	return &Error{Status: fasthttp.StatusInternalServerError, Code: "internal", Message: "internal error", Cause: err}
}

// writeError answers e. Its cause is not logged: the access log line has
// the code, and a policy's refusal text may quote the visit (diagnoses).
func (s *Server) writeError(ctx *fasthttp.RequestCtx, e *Error) {
	bp := s.bufs.Get().(*[]byte)
	b := appendError((*bp)[:0], e)
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(e.Status)
	if e.Allow != "" {
		ctx.Response.Header.Set("Allow", e.Allow)
	}
	if e.RetryAfter != "" {
		ctx.Response.Header.Set("Retry-After", e.RetryAfter)
	}
	if e.Status == fasthttp.StatusUnauthorized {
		// RFC 9110 §15.5.2: a 401 names the scheme to authenticate with.
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="medgate"`)
	}
	ctx.SetBody(b)
	// A long answer's buffer is not kept (keptBodyBytes).
	if cap(b) <= keptBodyBytes {
		*bp = b
		s.bufs.Put(bp)
	}
}

// fasthttpLogger writes fasthttp's own messages into the gateway's log.
type fasthttpLogger struct{ log zerolog.Logger }

// Its messages about a request it could not read quote parts of it
// ("invalid request uri %q", a header line): quoted text and long digit
// runs are masked.
func (l fasthttpLogger) Printf(format string, args ...any) {
	ev := l.log.Debug()
	if ev == nil {
		return
	}
	ev.Str("component", "fasthttp").Msg(redactIDs(redactQuoted(fmt.Sprintf(format, args...))))
}
