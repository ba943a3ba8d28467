package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// Service settles: it validates nothing of the wire format (decode* did),
// looks up the registry, runs the catalog step and the insured region's
// policy, and appends the result to the ledger. It is safe for concurrent
// use; settlements of one person are serialized so that each sees the
// accumulators and balance left by the previous one.
type Service struct {
	db       *ledger.DB
	policies *engine.Policies
	log      zerolog.Logger
	metrics  *Metrics // set by NewServer; nil: not measured
	// now is the clock that says which settlement dates are still to come
	// (set by NewServer from its Now; nil: time.Now).
	now func() time.Time

	seed  maphash.Seed
	locks [1024]sync.Mutex // person stripes, held from reading a person's state until its entry is synced

	work sync.Pool // *work
}

// NewService returns a Service over db and policies.
func NewService(db *ledger.DB, policies *engine.Policies, log zerolog.Logger) *Service {
	s := &Service{db: db, policies: policies, log: log, seed: maphash.MakeSeed()}
	s.work.New = func() any { return new(work) }
	return s
}

// work is the per-request scratch space, pooled.
type work struct {
	in      abi.Input
	out     abi.Output
	encoded []byte
	canon   []byte
}

// Past these, a request's work is not pooled again: a pooled work keeps its
// buffers at the size they grew to, and one long bill (a megabyte of
// canonical form and encoded input) would then be held by every work it
// passed through for as long as traffic keeps them in use. A typical bill
// (a few dozen lines, a few KiB) stays far below; a bill past them costs
// a fresh work.
const (
	keptWorkBytes = 64 << 10
	keptWorkLines = 256
)

// putWork returns w to the pool, unless a long bill grew it, without what
// it points to: its lines' codes, visit and person point into the request's
// body, which a work left in the pool would otherwise keep alive, all of
// it, past its request.
func (s *Service) putWork(w *work) {
	if cap(w.canon) > keptWorkBytes || cap(w.encoded) > keptWorkBytes || cap(w.in.Lines) > keptWorkLines {
		return
	}
	clear(w.in.Lines)
	clear(w.in.Counters)
	w.in = abi.Input{Lines: w.in.Lines[:0], Counters: w.in.Counters[:0]}
	s.work.Put(w)
}

// Result is what a settlement, quote, reversal or lookup answers.
type Result struct {
	Entry    *ledger.Entry
	Replayed bool
	Quote    bool
	// ReversedBy is the reversal of a settlement that was reversed, as
	// GET shows it (a hospital queries before it reverses, domain.md §0).
	ReversedBy string
}

func (s *Service) lockPerson(region, id string) *sync.Mutex {
	mu := &s.locks[s.stripe(region, id)]
	mu.Lock()
	return mu
}

func (s *Service) stripe(region, id string) int {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(region)
	h.WriteByte('/')
	h.WriteString(id)
	return int(h.Sum64() % uint64(len(s.locks)))
}

// lockPersons holds the stripes of every person of region in ids (in
// stripe order, so that two callers cannot deadlock) until unlock.
func (s *Service) lockPersons(region string, ids []string) (unlock func()) {
	var held [len(Service{}.locks)]bool
	for _, id := range ids {
		held[s.stripe(region, id)] = true
	}
	for i, h := range held {
		if h {
			s.locks[i].Lock()
		}
	}
	return func() {
		for i, h := range held {
			if h {
				s.locks[i].Unlock()
			}
		}
	}
}

// Settle computes a settlement for hospital h and, unless quote, appends it.
func (s *Service) Settle(ctx context.Context, h ledger.Hospital, req *SettleRequest, quote bool) (*Result, error) {
	w := s.work.Get().(*work)
	defer s.putWork(w)

	var bodyHash [32]byte
	if !quote {
		w.canon = req.appendCanonical(w.canon[:0])
		bodyHash = sha256.Sum256(w.canon)
		if res, err := s.replay(h.ID, req.RequestID, bodyHash); res != nil || err != nil {
			return res, err
		}
	}

	if err := s.checkNotFuture(req); err != nil {
		return nil, err
	}
	// From here on the person's state is read and, for a settlement,
	// written: hold the person's stripe until the entry is on disk. The
	// registry record is read under it too: an upsert of the person (which
	// holds it, upsertPersons) is then wholly before or after this
	// settlement, never between its reading and its commit.
	mu := s.lockPerson(req.InsuredRegion, req.PersonID)
	defer mu.Unlock()
	if !quote && s.db.Failed() {
		// A failed batch stays visible to reads (Pebble shows a batch
		// before its sync) until the restart, and the person's state
		// read below may come from it: a refusal computed on it would be
		// a final answer resting on a write that may never have reached
		// the disk, and nothing can be settled anyway. Checked under the
		// lock: a write of this person that failed set Failed before its
		// writer let the lock go.
		return s.appendError(ledger.ErrWriteFailed, h.ID, req.RequestID, bodyHash, req)
	}
	person, ok, err := s.db.Person(req.InsuredRegion, req.PersonID)
	if err != nil {
		return nil, err
	}
	date := req.Date()
	if !ok {
		if len(s.policies.Versions(req.InsuredRegion)) == 0 {
			// No region the gateway settles for: the region is what is
			// wrong (a county's code sent for its pool's), not the id.
			return s.lateReplay(quote, h.ID, req, bodyHash, s.noPolicy(req, date))
		}
		return s.lateReplay(quote, h.ID, req, bodyHash, unprocessable("unknown_person", "person.id", "no insured person with this id in region %s", req.InsuredRegion))
	}
	// Held until the settlement is committed: a rollback or an upload
	// (Versions), and a catalog change (writeCatalog), answer only once
	// no settlement computed with the version or catalog it replaced can
	// still commit. The catalog is read below, under it.
	defer s.policies.Hold().Release()
	pol, ok := s.policies.Lookup(req.InsuredRegion, date)
	if !ok {
		return s.lateReplay(quote, h.ID, req, bodyHash, s.noPolicy(req, date))
	}

	in := &w.in
	*in = abi.Input{Lines: in.Lines[:0], Counters: in.Counters[:0]}
	in.Date = date
	in.UseAccount = req.UseAccount
	in.Person = person.Facts
	in.Visit = req.Visit
	in.Hospital = abi.Hospital{
		Level:                h.Level,
		AssistanceDesignated: h.AssistanceDesignated,
		Offsite:              isOffsite(req.InsuredRegion, h.Region),
		TreatingRegion:       h.Region,
		InsuredRegion:        req.InsuredRegion,
	}
	cat, haveCatalog := catalogFor(s.db, h.Region)
	if !haveCatalog {
		// policies.md §1 gives no answer for a treating region without any
		// catalog on its chain. Settling every line as unlisted would charge
		// the patient the whole bill as a direct settlement that the fund
		// paid nothing of; a refusal leaves the usual way out (pay, claim at
		// home) and tells the hospital what to fix.
		chain, n := catalogChain(h.Region)
		return s.lateReplay(quote, h.ID, req, bodyHash, unprocessable("no_catalog", "",
			"the treating region %s has no catalog (looked up: %s); ask the treating region to upload one", h.Region, strings.Join(chain[:n], ", ")))
	}
	for i := range req.Items {
		it := &req.Items[i]
		entry, listed := cat.Lookup(it.Code)
		line, ok := splitLine(entry, listed, it)
		if !ok {
			return nil, invalid("items["+strconv.Itoa(i)+"]", "the line's amounts are out of range")
		}
		in.Lines = append(in.Lines, line)
		sm := &in.Sums
		sm.Total += line.Amount
		sm.FullSelfPay += line.FullSelfPay
		sm.OverLimit += line.OverLimit
		sm.PreSelfPay += line.PreSelfPay
		sm.Eligible += line.Eligible
	}
	if in.Sums.Total > money.MaxFen {
		return nil, invalid("items", "the bill's total is out of range")
	}

	if in.Person.AccountBalance, err = s.db.Balance(req.InsuredRegion, req.PersonID); err != nil {
		return nil, err
	}
	if in.Counters, err = s.db.Counters(req.InsuredRegion, req.PersonID, date.Year(), in.Counters); err != nil {
		return nil, err
	}
	w.encoded = in.AppendBinary(w.encoded[:0])
	out := &w.out
	called := time.Now()
	err = pol.Module.Call(ctx, in, w.encoded, out)
	if s.metrics != nil {
		s.metrics.policyCall(pol.Module, req.InsuredRegion, pol.Name, time.Since(called), err)
	}
	if err != nil {
		return s.lateReplay(quote, h.ID, req, bodyHash, s.policyError(err, req.LogID))
	}

	e := &ledger.Entry{
		Kind:           ledger.KindSettlement,
		RequestID:      req.RequestID,
		BodyHash:       bodyHash,
		Hospital:       h.ID,
		TreatingRegion: h.Region,
		InsuredRegion:  req.InsuredRegion,
		PersonID:       req.PersonID,
		Date:           date,
		VisitType:      req.Visit.Type,
		PolicyVersion:  pol.Name,
		ModuleSHA256:   pol.Module.Sum(),
		Input:          append([]byte(nil), w.encoded...),
		InputHash:      sha256.Sum256(w.encoded),
		Lines:          make([]ledger.Line, len(in.Lines)),
		Changes:        append([]abi.Counter(nil), out.Changes...),
		BalanceChange:  -out.Account,
		Notes:          append([]string(nil), out.Notes...),
	}
	for i, l := range in.Lines {
		e.Lines[i] = ledger.Line(l)
	}
	e.TraceCodes = req.TraceCodes // the lines' codes in order (decodeItems)
	fund := out.FundTotal()
	e.Amounts = ledger.Amounts{
		Total: in.Sums.Total, FullSelfPay: in.Sums.FullSelfPay, OverLimit: in.Sums.OverLimit,
		PreSelfPay: in.Sums.PreSelfPay, Eligible: in.Sums.Eligible,
		Deductible: out.Deductible, BasicFund: out.Basic, SeriousIllness: out.Serious,
		MedicalAssistance: out.Assistance, FundTotal: fund, PersonalAccount: out.Account,
		Cash: in.Sums.Total - fund - out.Account, PersonalTotal: in.Sums.Total - fund,
	}
	// A quote must refuse a settled trace code itself; a settlement's codes
	// are reserved and checked by ledger.Append, race-free with their
	// marking (appendError names the code), so they are not looked up twice.
	// Looked up after the policy's call, as Append does: a quote answers
	// what the settlement of the same bill would.
	for i := 0; quote && i < len(req.Items); i++ {
		for j, code := range req.Items[i].TraceCodes {
			owner, inUse, err := s.db.TraceCodeOwner(code)
			if err != nil {
				return nil, err
			}
			if inUse {
				return nil, conflict("trace_code_reused", "items["+strconv.Itoa(i)+"].trace_codes["+strconv.Itoa(j)+"]",
					"trace code %s was already settled%s and not reversed", code, s.ownSettlement(h.ID, owner))
			}
		}
	}
	if quote {
		return &Result{Entry: e, Quote: true}, nil
	}
	if err := s.db.Append(ctx, e); err != nil {
		return s.appendError(err, h.ID, req.RequestID, bodyHash, req)
	}
	return &Result{Entry: e}, nil
}

// lateReplay answers a settlement refused after it took the person's lock.
// A retry sent while its first attempt held the lock found no key, waited,
// and computed on the state the first attempt left, which the policy may
// refuse (a benefit used once a year, a cap reached): if that attempt
// committed, the retry is its replay, not a refusal of a bill that was
// settled. Only refusals pay for the lookup.
func (s *Service) lateReplay(quote bool, hospital string, req *SettleRequest, bodyHash [32]byte, err error) (*Result, error) {
	if !quote {
		if res, rerr := s.replay(hospital, req.RequestID, bodyHash); res != nil || rerr != nil {
			return res, rerr
		}
	}
	return nil, err
}

// checkNotFuture refuses a bill dated after today (UTC+8, with a day's
// grace for clocks around midnight). Its date picks the calendar year whose
// deductible and caps it counts against (policies.md §2), so a slip such as
// 2062 for 2026 would give the person a fresh year's deductible and caps;
// and a visit that has not happened cannot be settled. Checked after the
// replay, so that a retry of a settlement already written is still answered.
func (s *Service) checkNotFuture(req *SettleRequest) error {
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	t := now().In(ledger.ChinaTime).AddDate(0, 0, 1)
	latest := abi.MakeDate(int32(t.Year()), int32(t.Month()), int32(t.Day()))
	if d := req.Date(); d > latest {
		field := req.dateField()
		return invalid(field, "%s %s is in the future (today is %s in UTC+8): only a visit that has happened is settled",
			field, AppendDate(nil, d), now().In(ledger.ChinaTime).Format("2006-01-02"))
	}
	return nil
}

// noPolicy is the refusal of a bill whose insured region has no version
// in force on its date: a region with versions has none before its first,
// so the bill's date is the cause, and the hospital is told from when the
// region has a policy; a region with none is the cause itself.
func (s *Service) noPolicy(req *SettleRequest, date abi.Date) error {
	if vs := s.policies.Versions(req.InsuredRegion); len(vs) > 0 {
		field := req.dateField()
		return unprocessable("no_policy", field, "%s %s is before region %s's first policy version (%s, in force from %s): no policy of the region applies to the bill",
			field, AppendDate(nil, date), req.InsuredRegion, vs[0].Name, AppendDate(nil, vs[0].EffectiveFrom))
	}
	return unprocessable("no_policy", "person.insured_region", "region %s has no policy in force on %s", req.InsuredRegion, AppendDate(nil, date))
}

// replay answers a request whose idempotency key was already used: the
// first answer again when the body is the same, 409 otherwise. It returns
// nil, nil when the key is new.
func (s *Service) replay(hospital, requestID string, bodyHash [32]byte) (*Result, error) {
	idem, ok, err := s.db.Idempotency(hospital, requestID)
	if err != nil || !ok {
		return nil, err
	}
	if idem.BodyHash != bodyHash {
		return nil, conflict("idempotency_conflict", "request_id",
			"request_id %s was already used with another body (settlement %s)", requestID, idem.SettlementID)
	}
	e, err := s.db.Entry(idem.Seq)
	if err != nil {
		return nil, err
	}
	// A hospital re-sends a settlement to learn its outcome: the first
	// answer alone would tell it the bill stands when it has since been
	// reversed, so the replay says by which reversal, as Get does.
	return s.withReversal(&Result{Entry: e, Replayed: true})
}

// withReversal sets res.ReversedBy when res is a settlement since reversed.
func (s *Service) withReversal(res *Result) (*Result, error) {
	if res.Entry.Kind != ledger.KindSettlement {
		return res, nil
	}
	rid, reversed, err := s.db.ReversedBy(res.Entry.SettlementID)
	if err != nil {
		return nil, err
	}
	if reversed {
		res.ReversedBy = rid
	}
	return res, nil
}

func (s *Service) appendError(err error, hospital, requestID string, bodyHash [32]byte, req *SettleRequest) (*Result, error) {
	var dup *ledger.DuplicateError
	var tc *ledger.TraceCodeError
	var ar *ledger.AlreadyReversedError
	switch {
	case errors.As(err, &dup):
		// Another request with the same key won the race; answer as it.
		return s.replay(hospital, requestID, bodyHash)
	case errors.As(err, &tc), errors.As(err, &ar):
		// A retry that overlapped its first attempt waited for the
		// person's lock and finds the codes (or the reversal) taken by
		// that very attempt: it is a replay, not a conflict.
		if res, rerr := s.replay(hospital, requestID, bodyHash); res != nil || rerr != nil {
			return res, rerr
		}
		if ar != nil {
			return nil, conflict("already_reversed", "", "the settlement was already reversed by %s", ar.ReversalID)
		}
		field := ""
		if req != nil {
			for i := range req.Items {
				for j, c := range req.Items[i].TraceCodes {
					if c == tc.Code {
						field = "items[" + strconv.Itoa(i) + "].trace_codes[" + strconv.Itoa(j) + "]"
					}
				}
			}
		}
		if tc.SettlementID == "" {
			return nil, conflict("trace_code_reused", field, "trace code %s is being settled by another request", tc.Code)
		}
		return nil, conflict("trace_code_reused", field, "trace code %s was already settled%s and not reversed", tc.Code, s.ownSettlement(hospital, tc.SettlementID))
	case errors.Is(err, ledger.ErrLowDisk):
		return nil, lowDisk(err)
	case errors.Is(err, ledger.ErrWriteFailed):
		return nil, &Error{Status: 503, Code: "ledger_unavailable", Message: "the ledger cannot write; retry later with the same request_id (a write that reached the disk before the failure is then answered as a replay)", RetryAfter: "1", Cause: err}
	case errors.Is(err, ledger.ErrCounterRange), errors.Is(err, ledger.ErrInsufficientBalance):
		return nil, conflict("accumulator_conflict", "", "the person's accumulators or balance changed meanwhile; nothing was settled, retry")
	}
	return nil, err
}

// ownSettlement is " (id)" when settlement id is hospital's own, and
// nothing otherwise: a trace-code refusal tells another hospital that the
// code is taken, not which settlement took it (its existence is not that
// hospital's business, as in Get).
func (s *Service) ownSettlement(hospital, id string) string {
	if e, ok, err := s.db.EntryByID(id); err == nil && ok && e.Hospital == hospital {
		return " (" + id + ")"
	}
	return ""
}

// policyError is the answer to a policy call's failure, which it logs
// under the request's id (logID, 0: none) so that the line can be matched
// with the request's access line.
func (s *Service) policyError(err error, logID uint64) error {
	var ce *engine.CallError
	if !errors.As(err, &ce) {
		return err
	}
	ev := s.log.Warn().Str("region", ce.Region).Str("version", ce.Version).Str("kind", ce.Kind.String())
	if logID != 0 {
		ev.Uint64("req", logID)
	}
	switch ce.Kind {
	case engine.FailRefused:
		ev := s.log.Info().Str("region", ce.Region).Str("version", ce.Version)
		if logID != 0 {
			ev.Uint64("req", logID)
		}
		ev.Msg("policy refused a settlement")
		return &Error{Status: 422, Code: "policy_refused", Message: "the insured region's policy refused this settlement: " + ce.Err.Error(), Cause: err}
	case engine.FailTimeout:
		ev.Msg("policy call timed out")
		return &Error{Status: 422, Code: "policy_timeout", Message: "the insured region's policy " + ce.Region + "/" + ce.Version + " did not answer within its time limit; nothing was settled", Cause: err}
	case engine.FailCheck:
		// The detail may quote a counter name, which the policy chose
		// and may have made of the visit (a diagnosis): quoted text is
		// masked, its amounts kept.
		ev.Str("rule", ce.Rule).Str("error", clipLogged(redactQuoted(ce.Err.Error()))).Msg("policy answer broke a host check")
		return &Error{Status: 422, Code: "policy_answer_invalid", Message: "the insured region's policy " + ce.Region + "/" + ce.Version + " gave an answer that breaks rule " + ce.Rule + "; nothing was settled", Cause: err}
	case engine.FailUnavailable:
		// Why may be a start that failed (a version refused at start),
		// quoting what the module wrote to stderr: the region's, never
		// the hospital's to read (masked, as in the log).
		return &Error{Status: 503, Code: "policy_unavailable", Message: "the insured region's policy " + ce.Region + "/" + ce.Version + " is unavailable (" + redactQuoted(ce.Err.Error()) + "); nothing was settled, retry later", RetryAfter: "1", Cause: err}
	}
	// The error quotes what the module wrote to stderr, which may be of
	// the visit (a diagnosis): masked like a counter name above.
	ev.Str("error", clipLogged(redactQuoted(ce.Err.Error()))).Msg("policy call failed")
	return &Error{Status: 422, Code: "policy_failed", Message: "the insured region's policy " + ce.Region + "/" + ce.Version + " failed (" + ce.Kind.String() + "); nothing was settled", Cause: err}
}

// maxLoggedError bounds the text of a policy's failure that a log line
// quotes. wazero's trap error ends with a stack trace of up to 30 frames,
// each naming its function as the module's name section does: the
// region's text, bounded only by the module's size, so a module with a
// 1 MiB function name wrote a 1 MiB line (30 MiB, recursing) for each
// failed settlement of its insured persons.
const maxLoggedError = 2048

// clipLogged is s cut to maxLoggedError bytes at a character's start,
// marked "…" where it was cut.
func clipLogged(s string) string {
	if len(s) <= maxLoggedError {
		return s
	}
	n := maxLoggedError
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Get returns hospital's own settlement or reversal id.
func (s *Service) Get(hospital, id string) (*Result, error) {
	e, ok, err := s.db.EntryByID(id)
	if err != nil {
		return nil, err
	}
	if !ok || e.Hospital != hospital {
		// Another hospital's settlement is not found, not forbidden: its
		// existence is not this hospital's business.
		return nil, notFound("no settlement %s for this hospital", id)
	}
	return s.withReversal(&Result{Entry: e})
}

// Reverse books the reversal of hospital's settlement id (policies.md §6).
func (s *Service) Reverse(ctx context.Context, hospital, id string, req *ReversalRequest) (*Result, error) {
	// Only a settlement id can name a settlement, and only one can be
	// part of the request's content below: an id holding a NUL would let
	// (id, reason) pairs read as each other.
	if _, ok := ledger.ParseSettlementID(id); !ok {
		return nil, notFound("no settlement %s for this hospital", id)
	}
	w := s.work.Get().(*work)
	defer s.putWork(w)
	w.canon = append(append(append(w.canon[:0], "reversal\x00"...), id...), 0)
	w.canon = append(w.canon, req.Reason...)
	bodyHash := sha256.Sum256(w.canon)
	if res, err := s.replay(hospital, req.RequestID, bodyHash); res != nil || err != nil {
		return res, err
	}
	orig, ok, err := s.db.EntryByID(id)
	if err != nil {
		return nil, err
	}
	if !ok || orig.Hospital != hospital {
		return nil, notFound("no settlement %s for this hospital", id)
	}
	if orig.Kind != ledger.KindSettlement {
		return nil, conflict("not_reversible", "", "%s is a reversal; a reversal cannot be reversed", id)
	}
	mu := s.lockPerson(orig.InsuredRegion, orig.PersonID)
	defer mu.Unlock()
	if rid, done, err := s.db.ReversedBy(id); err != nil {
		return nil, err
	} else if done {
		// Perhaps by this very request, sent again while its first
		// attempt held the lock: then it is a replay.
		if res, err := s.replay(hospital, req.RequestID, bodyHash); res != nil || err != nil {
			return res, err
		}
		return nil, conflict("already_reversed", "", "settlement %s was already reversed by %s", id, rid)
	}
	e := &ledger.Entry{
		Kind:           ledger.KindReversal,
		Reverses:       orig.SettlementID,
		RequestID:      req.RequestID,
		BodyHash:       bodyHash,
		Hospital:       orig.Hospital,
		TreatingRegion: orig.TreatingRegion,
		InsuredRegion:  orig.InsuredRegion,
		PersonID:       orig.PersonID,
		Date:           orig.Date,
		VisitType:      orig.VisitType,
		PolicyVersion:  orig.PolicyVersion,
		ModuleSHA256:   orig.ModuleSHA256,
		Amounts:        orig.Amounts.Negated(),
		Lines:          make([]ledger.Line, len(orig.Lines)),
		Changes:        make([]abi.Counter, len(orig.Changes)),
		BalanceChange:  -orig.BalanceChange,
	}
	for i, l := range orig.Lines {
		l.Amount, l.FullSelfPay, l.OverLimit, l.PreSelfPay, l.Eligible = -l.Amount, -l.FullSelfPay, -l.OverLimit, -l.PreSelfPay, -l.Eligible
		e.Lines[i] = l
	}
	for i, c := range orig.Changes {
		e.Changes[i] = abi.Counter{Name: c.Name, Value: -c.Value}
	}
	note := "reversal of " + orig.SettlementID
	if req.Reason != "" {
		note += ": " + req.Reason
	}
	e.Notes = []string{note}
	if err := s.db.Append(ctx, e); err != nil {
		if errors.Is(err, ledger.ErrCounterRange) {
			// Under the person's lock nothing changes meanwhile: a later
			// settlement lowered a counter this one raised (a policy may
			// record decreases), and retrying cannot help.
			return nil, conflict("reversal_blocked", "", "reversing %s would take one of the person's counters below zero: a later settlement lowered what this one added; reverse the later settlements of this person first", id)
		}
		return s.appendError(err, hospital, req.RequestID, bodyHash, nil)
	}
	return &Result{Entry: e}, nil
}

// appendCanonical appends a canonical form of r: the same request in any
// key order or spacing hashes the same, any change of content does not.
func (r *SettleRequest) appendCanonical(b []byte) []byte {
	str := func(b []byte, s string) []byte {
		b = append(strconv.AppendInt(b, int64(len(s)), 10), ':')
		return append(b, s...)
	}
	num := func(b []byte, v int64) []byte { return append(strconv.AppendInt(b, v, 10), ';') }
	b = append(b, "settle\x00"...)
	b = str(b, r.RequestID)
	b = str(b, r.PersonID)
	b = str(b, r.InsuredRegion)
	v := &r.Visit
	b = num(b, int64(v.Type))
	b = num(b, int64(v.AdmittedOn))
	b = num(b, int64(v.DischargedOn))
	b = num(b, int64(v.VisitDate))
	b = num(b, int64(v.BirthOrder))
	if v.Emergency {
		b = append(b, 'E')
	}
	if r.UseAccount {
		b = append(b, 'A')
	}
	b = num(b, int64(len(v.Diagnoses)))
	for _, d := range v.Diagnoses {
		b = str(b, d)
	}
	b = num(b, int64(len(r.Items)))
	for i := range r.Items {
		it := &r.Items[i]
		b = str(b, it.Code)
		b = num(b, it.UnitPrice)
		b = num(b, it.Quantity)
		b = num(b, it.Amount)
		b = num(b, int64(len(it.TraceCodes)))
		for _, c := range it.TraceCodes {
			b = str(b, c)
		}
	}
	return b
}
