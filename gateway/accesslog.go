package gateway

import (
	"math"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// AccessLogSampling bounds the access log under load. Every request that
// failed (status ≥ 400: warn, ≥ 500: error) is logged; of the successful
// ones (info), the first Burst of each second are logged, then one in
// Every.
type AccessLogSampling struct {
	Burst int // 0: 100; negative: no burst, sample from the first
	Every int // 0: 100; 1: log every successful request
}

// logger is base with the access log's sampler on its info level.
func (a AccessLogSampling) logger(base zerolog.Logger) zerolog.Logger {
	burst, every := a.Burst, a.Every
	if burst == 0 {
		burst = 100
	}
	if burst < 0 {
		burst = 0
	}
	if every <= 0 {
		every = 100
	}
	if every == 1 {
		return base
	}
	// zerolog's samplers count in uint32: a larger setting would wrap
	// (2^32+1 to 1, logging everything; 2^32 to 0, nothing).
	b, n := uint32(burst), uint32(every)
	if uint64(burst) > math.MaxUint32 {
		b = math.MaxUint32
	}
	if uint64(every) > math.MaxUint32 {
		n = math.MaxUint32
	}
	return base.Sample(zerolog.LevelSampler{InfoSampler: &zerolog.BurstSampler{
		Burst: b, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: n}}})
}

// logAccess writes the request's access log line. It holds no personal
// data: the route pattern stands for the path, and no body is quoted.
func (s *Server) logAccess(ctx *fasthttp.RequestCtx, id uint64, r *Route, p Principal, status int, code string, took time.Duration) {
	var ev *zerolog.Event
	switch {
	case status >= 500:
		ev = s.access.Error()
	case status >= 400:
		ev = s.access.Warn()
	default:
		ev = s.access.Info()
	}
	if ev == nil {
		return // sampled out, or below the level
	}
	route := "unmatched"
	if r != nil {
		route = r.Pattern
	}
	ev.Uint64("req", id).Bytes("method", ctx.Method()).Str("route", route).Int("status", status).Dur("took", took)
	if code != "" {
		ev.Str("code", code)
	}
	if p.ID != "" {
		ev.Str("role", string(p.Role)).Str("principal", p.ID)
	}
	ev.Msg("request")
}

// setRequestID answers the request's id (the access log's "req") in the
// X-Request-Id header, so a caller can quote it.
func setRequestID(ctx *fasthttp.RequestCtx, id uint64) {
	var b [20]byte
	ctx.Response.Header.SetCanonical(headerRequestID, strconv.AppendUint(b[:0], id, 10))
}

// refusedIDBit marks the ids of requests answered before they were read
// (a body too large, a malformed request line): fasthttp's own ids are
// the connection's number << 32 | the request's number on it, far below.
const refusedIDBit = 1 << 63

var headerRequestID = []byte("X-Request-Id")

// redactIDs masks every run of 15 or more digits (optionally ending in X,
// as an identity card number does) with "[redacted]": an error string of the
// ledger can quote a person's id, which must not reach a log.
func redactIDs(s string) string {
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	out := []byte(nil)
	i := 0
	for j := 0; j < len(s); {
		if !isDigit(s[j]) {
			j++
			continue
		}
		k := j
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k < len(s) && (s[k] == 'X' || s[k] == 'x') {
			k++
		}
		if k-j >= 15 {
			out = append(append(out, s[i:j]...), "[redacted]"...)
			i = k
		}
		j = k
	}
	if out == nil {
		return s
	}
	return string(append(out, s[i:]...))
}

// redactQuoted replaces every Go-quoted string ("…", as %q writes it) in s
// with "[redacted]": a host check's error quotes what the policy wrote.
func redactQuoted(s string) string {
	out := []byte(nil)
	i := 0
	for j := 0; j < len(s); j++ {
		if s[j] != '"' {
			continue
		}
		k := j + 1
		for k < len(s) && s[k] != '"' {
			if s[k] == '\\' {
				k++
			}
			k++
		}
		if k >= len(s) {
			break // unterminated: left as it is
		}
		out = append(append(out, s[i:j]...), `"[redacted]"`...)
		i, j = k+1, k
	}
	if out == nil {
		return s
	}
	return string(append(out, s[i:]...))
}
