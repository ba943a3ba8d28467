package gateway

import (
	"fmt"

	"github.com/valyala/fasthttp"
)

// Error is an answer other than 200: the status, a stable snake_case code,
// a message safe to show the client, the field to blame (api.md's error
// model), and an optional cause that is only logged.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
	Cause   error
	// Allow, for a 405, lists the methods the path takes (the Allow
	// header, which RFC 9110 requires with a 405).
	Allow string
	// RetryAfter, if set, is the Retry-After header (seconds).
	RetryAfter string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("gateway: %s (%s): %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("gateway: %s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

func badRequest(code, field, format string, args ...any) *Error {
	return &Error{Status: fasthttp.StatusBadRequest, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *Error {
	return badRequest("invalid_field", field, format, args...)
}

func missing(field string) *Error {
	return badRequest("missing_field", field, "%s is required", field)
}

func unprocessable(code, field, format string, args ...any) *Error {
	return &Error{Status: fasthttp.StatusUnprocessableEntity, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func conflict(code, field, format string, args ...any) *Error {
	return &Error{Status: fasthttp.StatusConflict, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *Error {
	return &Error{Status: fasthttp.StatusNotFound, Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

func unavailable(code, format string, args ...any) *Error {
	return &Error{Status: fasthttp.StatusServiceUnavailable, Code: code, Message: fmt.Sprintf(format, args...)}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// lowDisk is the answer to a write refused because the ledger's disk is
// nearly full (ledger.ErrLowDisk): nothing was written, and the same
// request may be sent again once an operator has freed space.
func lowDisk(err error) *Error {
	return &Error{Status: 503, Code: "ledger_disk_full", RetryAfter: "60", Cause: err,
		Message: "the ledger's disk is nearly full: nothing was written; retry later with the same request_id"}
}
