package gateway

import (
	"crypto/sha256"
	"encoding/json"
	"errors"

	"github.com/valyala/fasthttp"

	"medgate/ledger"
)

// IdempotencyKeyHeader makes a region's registry write (persons upsert,
// catalog upsert or replacement) safe to retry, as request_id makes a
// settlement: the same key with the same body on the same route answers
// the first answer again ("replayed": true) and writes nothing, so that a
// retry of a write that timed out but was applied cannot undo a change
// made since. The name is the IETF draft's
// (draft-ietf-httpapi-idempotency-key-header); the key is taken byte for
// byte (quotes included), scoped to the token's region.
const IdempotencyKeyHeader = "Idempotency-Key"

// regionKey is the request's idempotency key for route, or nil without
// the header: 1 to MaxIDLen printable ASCII characters, no space, sent
// once.
func regionKey(ctx *fasthttp.RequestCtx, p Principal, route string) (*ledger.RegionKey, error) {
	all := ctx.Request.Header.PeekAll(IdempotencyKeyHeader)
	switch {
	case len(all) == 0:
		return nil, nil
	case len(all) > 1:
		return nil, badRequest("duplicate_field", IdempotencyKeyHeader, "%s must be sent once", IdempotencyKeyHeader)
	}
	key := all[0]
	if len(key) == 0 || len(key) > MaxIDLen {
		return nil, invalid(IdempotencyKeyHeader, "%s must be 1 to %d characters", IdempotencyKeyHeader, MaxIDLen)
	}
	for _, c := range key {
		// Printable ASCII only: a key that looks like another (a
		// no-break space, a full-width digit) must not be another.
		if c <= ' ' || c >= 0x7f {
			return nil, invalid(IdempotencyKeyHeader, "%s must be printable ASCII without spaces", IdempotencyKeyHeader)
		}
	}
	return &ledger.RegionKey{Region: p.ID, Key: string(key), Route: route, Body: sha256.Sum256(ctx.PostBody())}, nil
}

// regionKeyError is the answer to a key the ledger refused, or err.
func regionKeyError(err error) error {
	var ce *ledger.RegionKeyConflictError
	if !errors.As(err, &ce) {
		return err
	}
	if ce.OtherRoute {
		return conflict("idempotency_conflict", IdempotencyKeyHeader, "%s %s was already used for %s; nothing was written", IdempotencyKeyHeader, ce.Key, ce.Route)
	}
	return conflict("idempotency_conflict", IdempotencyKeyHeader, "%s %s was already used for %s with another body; nothing was written", IdempotencyKeyHeader, ce.Key, ce.Route)
}

// replayed answers a write under k seen before with its first answer, and
// says whether it did (err: a conflict, or the ledger's error).
func (s *Server) replayed(ctx *fasthttp.RequestCtx, k *ledger.RegionKey) (bool, error) {
	if k == nil {
		return false, nil
	}
	ans, found, err := s.db.RegionKeyAnswer(k)
	if err != nil || !found {
		return false, regionKeyError(err)
	}
	return true, s.writeReplay(ctx, ans)
}

// keyedAnswer is res as recorded under a key: "replayed": false.
func keyedAnswer(res map[string]any) []byte {
	res["replayed"] = false
	// A map of strings, numbers and slices of plain structs: Marshal
	// cannot fail.
	b, _ := json.Marshal(res)
	return b
}

// writeReplay answers ans, a first answer recorded under a key, saying
// it is a replay. Both are maps marshalled by encoding/json, keys sorted:
// the replay is the first answer byte for byte but for "replayed".
func (s *Server) writeReplay(ctx *fasthttp.RequestCtx, ans []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ans, &m); err != nil {
		return err
	}
	m["replayed"] = json.RawMessage("true")
	return s.writeJSON(ctx, 200, m)
}
