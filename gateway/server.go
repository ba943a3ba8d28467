package gateway

import (
	"bytes"
	"context"
	"errors"
	"net"
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
	http       *fasthttp.Server
	cfg        ServerConfig

	inflight    atomic.Int64
	maxInflight int64
	bufs        sync.Pool
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Service    *Service
	DB         *ledger.DB
	Versions   *Versions // policy versions: schedule, uploads, replays
	Principals *Principals
	Logger     zerolog.Logger
	// MaxInflight bounds requests being worked on at once; beyond it the
	// gateway answers 503 with Retry-After at once. 0: 4096.
	MaxInflight int
}

// NewServer builds a Server; call Serve to run it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 4096
	}
	s := &Server{svc: cfg.Service, db: cfg.DB, versions: cfg.Versions, policies: cfg.Versions.Policies(), principals: cfg.Principals,
		log: cfg.Logger, maxInflight: int64(cfg.MaxInflight), cfg: cfg}
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.http = &fasthttp.Server{
		Handler: s.Handle,
		Name:    "medgate",
		// fasthttp cuts the connection past its own limit; below it the
		// handler answers bodies over MaxBodyBytes with a JSON 413.
		MaxRequestBodySize: MaxUploadBytes + MaxBodyBytes,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        120 * time.Second,
		ErrorHandler:       s.transportError,
		NoDefaultDate:      false,
	}
	return s
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(ln) }

// Shutdown stops accepting and waits for in-flight requests to finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.ShutdownWithContext(ctx) }

func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		s.writeError(ctx, &Error{Status: fasthttp.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "the request body exceeds 1 MiB"})
		return
	}
	s.writeError(ctx, badRequest("malformed_request", "", "the HTTP request could not be read"))
}

// Handle serves one request.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	began := time.Now()
	path := ctx.Path()
	if string(path) == "/healthz" {
		s.health(ctx)
		return
	}
	if n := s.inflight.Add(1); n > s.maxInflight {
		s.inflight.Add(-1)
		ctx.Response.Header.Set("Retry-After", "1")
		s.writeError(ctx, unavailable("overloaded", "the gateway is at capacity; retry shortly"))
		return
	}
	defer s.inflight.Add(-1)
	if err := s.route(ctx, path); err != nil {
		s.writeError(ctx, s.toError(ctx, err))
	}
	status := ctx.Response.StatusCode()
	ev := s.log.Debug()
	if status >= 500 {
		ev = s.log.Error()
	}
	ev.Str("method", string(ctx.Method())).Bytes("path", path).Int("status", status).
		Dur("took", time.Since(began)).Uint64("req", ctx.ID()).Msg("request")
}

func (s *Server) route(ctx *fasthttp.RequestCtx, path []byte) error {
	var buf [4]string
	r, params, err := s.match(ctx.Method(), path, buf[:0])
	if err != nil {
		return err
	}
	limit := r.MaxBody
	if limit == 0 {
		limit = MaxBodyBytes
	}
	if len(ctx.PostBody()) > limit {
		return &Error{Status: fasthttp.StatusRequestEntityTooLarge, Code: "body_too_large",
			Message: "the request body exceeds " + strconv.Itoa(limit>>20) + " MiB"}
	}
	var p Principal
	if r.Role != "" {
		if p, err = s.auth(ctx, r.Role); err != nil {
			return err
		}
	}
	return r.Handle(s, ctx, p, params)
}

// auth returns the token's principal, requiring role.
func (s *Server) auth(ctx *fasthttp.RequestCtx, role Role) (Principal, error) {
	h := ctx.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return Principal{}, &Error{Status: fasthttp.StatusUnauthorized, Code: "unauthorized", Message: "an Authorization: Bearer <token> header is required"}
	}
	p, ok := s.principals.Lookup(bytes.TrimSpace(h[len(prefix):]))
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
	res, err := s.svc.Settle(context.Background(), h, req, quote)
	if err != nil {
		return err
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

func (s *Server) health(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	if s.db.Failed() {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBodyString(`{"status":"degraded","ledger":"read_only"}`)
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
	*bp = b
	s.bufs.Put(bp)
}

// toError turns any error into the answer; errors that are not *Error are
// bugs or storage faults: logged with their cause, answered with a generic
// 500 that leaks nothing.
func (s *Server) toError(ctx *fasthttp.RequestCtx, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, ledger.ErrWriteFailed) {
		return &Error{Status: 503, Code: "ledger_unavailable", Message: "the ledger cannot write; retry later", Cause: err}
	}
	s.log.Error().Err(err).Uint64("req", ctx.ID()).Msg("internal error")
	return &Error{Status: fasthttp.StatusInternalServerError, Code: "internal", Message: "internal error", Cause: err}
}

func (s *Server) writeError(ctx *fasthttp.RequestCtx, e *Error) {
	if e.Cause != nil && e.Status != 500 {
		s.log.Debug().Err(e.Cause).Str("code", e.Code).Msg("request refused")
	}
	bp := s.bufs.Get().(*[]byte)
	b := appendError((*bp)[:0], e)
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(e.Status)
	ctx.SetBody(b)
	*bp = b
	s.bufs.Put(bp)
}
