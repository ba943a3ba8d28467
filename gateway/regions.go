package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"medgate/engine/money"
	"medgate/ledger"
)

// Region endpoints (api.md "Regions"): a region token manages its own
// persons and policies; catalogs are the treating side's, and a region
// manages the catalogs of its own code and of the codes under it (a
// prefecture 371600 manages 371602's), as a prefecture's bureau does.
func init() {
	registerRoutes(
		Route{Method: "POST", Pattern: "/v1/regions/{}/persons", Role: RoleRegion, MaxBody: MaxUploadBytes, Handle: (*Server).upsertPersons},
		Route{Method: "POST", Pattern: "/v1/regions/{}/persons/{}/credits", Role: RoleRegion, Handle: (*Server).creditAccount},
		Route{Method: "POST", Pattern: "/v1/regions/{}/catalog", Role: RoleRegion, MaxBody: MaxUploadBytes, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, params []string) error {
			return s.putCatalog(ctx, p, params[0], false)
		}},
		Route{Method: "PUT", Pattern: "/v1/regions/{}/catalog", Role: RoleRegion, MaxBody: MaxUploadBytes, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, params []string) error {
			return s.putCatalog(ctx, p, params[0], true)
		}},
	)
}

// ownRegion refuses a region token acting for another region.
func ownRegion(p Principal, region string) error {
	if !isRegion(region) {
		return notFound("%q is not a region code", region)
	}
	if p.ID != region {
		return &Error{Status: fasthttp.StatusForbidden, Code: "forbidden", Message: "this token acts for region " + p.ID + " only"}
	}
	return nil
}

// coversRegion refuses a region token acting for a region outside its own
// code (its code stripped of trailing "00" pairs must prefix region).
func coversRegion(p Principal, region string) error {
	if !isRegion(region) {
		return notFound("%q is not a region code", region)
	}
	if isOffsite(p.ID, region) {
		return &Error{Status: fasthttp.StatusForbidden, Code: "forbidden", Message: "this token acts for region " + p.ID + " and the regions under it only"}
	}
	return nil
}

// LineError is a refused NDJSON line.
type LineError struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// eachLine calls fn for every non-empty line of body with its 1-based
// number; fn's error refuses that line only. The body is in memory and
// bounded already, so a line of any length is just a line (a scanner's
// limit would have stopped at a long one and dropped every line after it).
// A UTF-8 byte order mark opening the body (a file saved by a Windows
// tool) is not part of its first line.
//
// At most MaxRejectedListed refused lines are listed; total counts them
// all. A body of 32 MiB holds 16 million lines, and listing each with its
// reason built an answer of about 1.8 GB.
func eachLine(body []byte, fn func(n int, line []byte) error) (bad []LineError, total int) {
	body = bytes.TrimPrefix(body, utf8BOM)
	for n := 1; len(body) > 0; n++ {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			if total++; len(bad) < MaxRejectedListed {
				bad = append(bad, LineError{Line: n, Reason: clipReason(err.Error())})
			}
		}
	}
	return bad, total
}

// MaxRejectedListed bounds the refused lines an NDJSON answer lists
// (the first ones, in line order); rejected_total counts them all.
const MaxRejectedListed = 1000

// clipReason is reason cut to MaxReasonBytes at a character's start,
// marked "…" where it was cut.
func clipReason(reason string) string {
	if len(reason) <= MaxReasonBytes {
		return reason
	}
	n := MaxReasonBytes
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n] + "…"
}

// MaxReasonBytes bounds a listed line's reason, which may quote the value
// it refused: a value of the whole body's length made each listed line as
// long as the body (longer, quoted).
const MaxReasonBytes = 256

func (s *Server) upsertPersons(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	region := params[0]
	if err := ownRegion(p, region); err != nil {
		return err
	}
	key, err := regionKey(ctx, p, "POST /v1/regions/"+region+"/persons")
	if err != nil {
		return err
	}
	if done, err := s.replayed(ctx, key); done || err != nil {
		return err
	}
	var good []ledger.Person
	var lines []int         // good[i]'s line
	var balanceGiven []bool // good[i]'s line gave an account_balance
	seen := map[string]int{}
	bad, badTotal := eachLine(ctx.PostBody(), func(n int, line []byte) error {
		person, given, err := parsePerson(region, line)
		if err != nil {
			return err
		}
		if prev, dup := seen[person.ID]; dup {
			return errorf("person %s is also on line %d", person.ID, prev)
		}
		seen[person.ID] = n
		good = append(good, person)
		lines = append(lines, n)
		balanceGiven = append(balanceGiven, given)
		return nil
	})
	// A settlement of a person computes with the registry record it reads
	// under the person's lock and commits before releasing it: the upsert
	// waits, so that it comes before or after the settlement, not between.
	// It holds them a chunk at a time (ledger.PersonsChunk): a roster's
	// persons hold about every stripe, and every settlement waited for the
	// whole roster.
	lock := func(ps []ledger.Person) (unlock func()) {
		ids := make([]string, len(ps))
		for i := range ps {
			ids[i] = ps[i].ID
		}
		return s.svc.lockPersons(region, ids)
	}
	answer := func(ws []ledger.PersonWrite) map[string]any {
		// account_balance opens a new person's account only: a line
		// that gave one for a known person is listed with the opening
		// balance recorded, so that a region reading "updated" does not
		// take its balance as applied (and credit the difference on top
		// of it). Listed as rejected is: a roster re-sent whole lists
		// every known person, and a keyed answer is stored with its key.
		created, notAppliedTotal := 0, 0
		notApplied := []balanceNotApplied{}
		for i, w := range ws {
			if w.Created {
				created++
			} else if balanceGiven[i] {
				if notAppliedTotal++; len(notApplied) < MaxRejectedListed {
					notApplied = append(notApplied, balanceNotApplied{Line: lines[i], ID: good[i].ID,
						AccountBalance: money.FormatFen(good[i].OpeningBalance), OpeningBalance: money.FormatFen(w.Opening)})
				}
			}
		}
		return map[string]any{"region": region, "written": len(good), "created": created,
			"updated": len(good) - created, "rejected": nonNil(bad), "rejected_total": badTotal,
			"balance_not_applied": notApplied, "balance_not_applied_total": notAppliedTotal}
	}
	if key == nil {
		ws, _, err := s.db.UpsertPersonsLocking(nil, good, lock, nil)
		if err != nil {
			return s.upsertStopped(ctx, err, ws, lines, badTotal)
		}
		return s.writeJSON(ctx, 200, answer(ws))
	}
	// The answer is recorded in the write's batch: built there, from
	// what the write found.
	var first []byte
	ws, replay, err := s.db.UpsertPersonsLocking(key, good, lock, func(ws []ledger.PersonWrite) []byte {
		first = keyedAnswer(answer(ws))
		return first
	})
	if err != nil {
		return s.upsertStopped(ctx, regionKeyError(err), ws, lines, badTotal)
	}
	return s.keyedDone(ctx, first, replay, err)
}

// upsertStopped is the answer to a persons upsert the ledger refused with
// err after it had written the chunks of ws (ledger.PersonsChunk persons
// each, durable): err's status and code, but not its "nothing was
// written", which is untrue once a chunk was. lines are the good lines'
// numbers, in the order written.
func (s *Server) upsertStopped(ctx *fasthttp.RequestCtx, err error, ws []ledger.PersonWrite, lines []int, rejected int) error {
	if len(ws) == 0 {
		return err
	}
	e := *s.toError(ctx, err)
	e.Field = ""
	e.Message = sprintf("the upsert stopped after line %d: the persons of its first %d good lines were written, the %d after them were not (%s); "+
		"send the same body again (with the same Idempotency-Key, if any) to write the rest: the persons written already are then updated, and an account_balance given for them is listed in balance_not_applied, not applied twice",
		lines[len(ws)-1], len(ws), len(lines)-len(ws), e.Code)
	if rejected > 0 {
		e.Message += sprintf("; %d lines were rejected as bad (the same body again lists them)", rejected)
	}
	return &e
}

// keyedDone answers a write under a key: first, the answer it recorded,
// or replay, the first answer of a retry, or err.
func (s *Server) keyedDone(ctx *fasthttp.RequestCtx, first, replay []byte, err error) error {
	switch {
	case err != nil:
		return regionKeyError(err)
	case replay != nil:
		return s.writeReplay(ctx, replay)
	}
	return s.writeJSON(ctx, 200, json.RawMessage(first))
}

// balanceNotApplied is a persons line whose account_balance was not
// applied because the person was already known: OpeningBalance is the
// one recorded when the person was created (the running balance is that,
// plus credits, minus what settlements paid from the account).
type balanceNotApplied struct {
	Line           int    `json:"line"`
	ID             string `json:"id"`
	AccountBalance string `json:"account_balance"`
	OpeningBalance string `json:"opening_balance"`
}

func (s *Server) putCatalog(ctx *fasthttp.RequestCtx, p Principal, region string, replace bool) error {
	if err := coversRegion(p, region); err != nil {
		return err
	}
	method := "POST"
	if replace {
		method = "PUT"
	}
	key, err := regionKey(ctx, p, method+" /v1/regions/"+region+"/catalog")
	if err != nil {
		return err
	}
	// Before anything that depends on the catalogs as they are now: a
	// retry is answered as the first was, whatever changed since.
	if done, err := s.replayed(ctx, key); done || err != nil {
		if done && err == nil {
			// Answered (once the handler returns) as the first attempt,
			// which may still be waiting for settlements computed with
			// the catalog it replaced (writeCatalog): so does the retry.
			s.svc.policies.Quiesce()
		}
		return err
	}
	var good []ledger.CatalogEntry
	seen := map[string]int{}
	bad, badTotal := eachLine(ctx.PostBody(), func(n int, line []byte) error {
		e, err := ParseCatalogEntry(line)
		if err != nil {
			return err
		}
		if prev, dup := seen[e.Code]; dup {
			return errorf("code %s is also on line %d", e.Code, prev)
		}
		seen[e.Code] = n
		good = append(good, e)
		return nil
	})
	if replace && len(bad) > 0 {
		// A replacement with lines missing would silently turn listed codes
		// into class C: refuse it whole.
		return s.writeJSON(ctx, 400, map[string]any{
			"error":    map[string]string{"code": "invalid_catalog", "message": "a catalog replacement must be valid in full; nothing was written"},
			"rejected": bad, "rejected_total": badTotal})
	}
	_, hadOwn := s.db.Catalog(region)
	parent := parentCatalog(s.db, region)
	if replace && len(good) == 0 {
		// An empty replacement removes the region's own catalog, so that
		// its hospitals use the one above it again (policies.md §1): only
		// when there is one, or every code would become class C.
		if parent == "" {
			return badRequest("invalid_catalog", "", "a catalog replacement must have at least one line (an empty one removes a region's own catalog only where a prefecture's or province's catalog is there to fall back on)")
		}
		if !hadOwn {
			res := map[string]any{"region": region, "replaced": false, "written": 0, "rejected": []LineError{},
				"note": region + " has no catalog of its own: nothing was removed; its hospitals use " + parent + "'s"}
			if key == nil {
				return s.writeJSON(ctx, 200, res)
			}
			first := keyedAnswer(res)
			replay, err := s.db.RecordRegionKey(key, first)
			return s.keyedDone(ctx, first, replay, err)
		}
		return s.writeCatalog(ctx, key, region, nil, true, map[string]any{"region": region, "replaced": true, "written": 0, "rejected": []LineError{},
			"note": "removed " + region + "'s own catalog: its hospitals use " + parent + "'s"})
	}
	res := map[string]any{"region": region, "replaced": replace, "written": len(good), "rejected": nonNil(bad), "rejected_total": badTotal}
	if !hadOwn && len(good) > 0 && parent != "" {
		// Say so: from now on this catalog, not the one above, decides
		// for the region's hospitals, however few codes it has.
		res["note"] = "created " + region + "'s own catalog: its hospitals no longer use " + parent + "'s (an empty PUT removes it)"
	}
	return s.writeCatalog(ctx, key, region, good, replace, res)
}

// writeCatalog writes entries, under key if there is one, and answers res.
// It answers once no settlement computed with the catalog it replaced can
// still commit: a settlement reads the catalog under its policies hold
// (Service.Settle), so a change answered before a settlement commits is
// the catalog that settlement used, as a persons upsert and a rollback are.
func (s *Server) writeCatalog(ctx *fasthttp.RequestCtx, key *ledger.RegionKey, region string, entries []ledger.CatalogEntry, replace bool, res map[string]any) error {
	if key == nil {
		if err := s.db.PutCatalog(region, entries, replace); err != nil {
			return err
		}
		s.svc.policies.Quiesce()
		return s.writeJSON(ctx, 200, res)
	}
	first := keyedAnswer(res)
	replay, err := s.db.PutCatalogKeyed(key, region, entries, replace, func() []byte { return first })
	if err == nil {
		// A replay too: its first attempt may still be waiting here
		// (a retry sent when the client gave up on it).
		s.svc.policies.Quiesce()
	}
	return s.keyedDone(ctx, first, replay, err)
}

// parentCatalog is the region above region whose catalog its hospitals
// would use without one of their own (prefecture, then province), or "".
func parentCatalog(db *ledger.DB, region string) string {
	chain, n := catalogChain(region)
	for _, r := range chain[1:n] {
		if _, ok := db.Catalog(r); ok {
			return r
		}
	}
	return ""
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type stringError string

func (e stringError) Error() string { return string(e) }

func errorf(format string, args ...any) error {
	return stringError(sprintf(format, args...))
}

// writeJSON answers v with encoding/json (the region, clearing and admin
// endpoints are not on the hot path).
func (s *Server) writeJSON(ctx *fasthttp.RequestCtx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
	return nil
}

// creditAccount credits a person's personal account, once per reference.
func (s *Server) creditAccount(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	region, person := params[0], params[1]
	if err := ownRegion(p, region); err != nil {
		return err
	}
	var req struct {
		Reference string `json:"reference"`
		Amount    string `json:"amount"`
	}
	if err := strictJSON(ctx.PostBody(), &req); err != nil {
		return bodyJSONError(err, ctx.PostBody(), "body")
	}
	// Absent or empty, as a settlement's request_id: missing_field.
	if req.Reference == "" {
		return missing("reference")
	}
	if len(req.Reference) > MaxIDLen {
		return invalid("reference", "reference must be 1 to %d characters", MaxIDLen)
	}
	// The reference is the credit's idempotency key, held to a
	// request_id's rule: " CR-1" and "CR-1" must not be two credits.
	for i := 0; i < len(req.Reference); i++ {
		if c := req.Reference[i]; c <= ' ' || c == 0x7f {
			return invalid("reference", "reference must not contain spaces or control characters")
		}
	}
	if req.Amount == "" {
		return missing("amount")
	}
	// The parse error says what is wrong: too many decimals, or too large
	// for an amount, are not the same fix.
	amount, err := money.Parse([]byte(req.Amount), 2)
	if err != nil {
		return invalid("amount", "amount %q %v: it must be a positive amount in yuan with at most two decimals", req.Amount, err)
	}
	if amount == 0 {
		return invalid("amount", "amount %q is not positive: a credit adds to the account", req.Amount)
	}
	mu := s.svc.lockPerson(region, person)
	balance, replayed, err := s.db.Credit(region, person, req.Reference, amount)
	mu.Unlock()
	var ce *ledger.CreditConflictError
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return notFound("region %s has no person %s", region, person)
	case errors.As(err, &ce):
		return conflict("idempotency_conflict", "reference", "%v", err)
	case errors.Is(err, ledger.ErrCounterRange):
		return unprocessable("balance_out_of_range", "amount", "this credit would take the balance past what an account can hold; nothing was credited")
	case err != nil:
		return err
	}
	return s.writeJSON(ctx, 200, map[string]any{"region": region, "person": person, "reference": req.Reference,
		"amount": money.FormatFen(amount), "balance": money.FormatFen(balance), "replayed": replayed})
}
