package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/cases"
	"medgate/engine/money"
	"medgate/ledger"
)

func init() {
	registerRoutes(
		Route{Method: "POST", Pattern: "/v1/regions/{}/policies", Role: RoleRegion, MaxBody: MaxUploadBytes, Handle: (*Server).uploadPolicy},
		Route{Method: "POST", Pattern: "/v1/regions/{}/policies/check", Role: RoleRegion, MaxBody: MaxUploadBytes, Handle: (*Server).checkPolicy},
		Route{Method: "GET", Pattern: "/v1/regions/{}/policies", Role: RoleRegion, Handle: (*Server).listPolicies},
		Route{Method: "POST", Pattern: "/v1/regions/{}/policies/{}/withdraw", Role: RoleRegion, Handle: (*Server).withdrawPolicy},
		Route{Method: "POST", Pattern: "/v1/regions/{}/shadow", Role: RoleRegion, MaxBody: MaxUploadBytes, Handle: (*Server).shadow},
		Route{Method: "POST", Pattern: "/v1/regions/{}/replay", Role: RoleRegion, Handle: (*Server).replayRegion},
		Route{Method: "POST", Pattern: "/v1/ledger/replay", Role: RoleClearing, Handle: (*Server).replayAll},
	)
}

// Upload is a policy version as a region sends it. Module is the wasm in
// base64; Cases the region's example cases (engine/cases); Signature the
// hex ed25519 signature of UploadMessage by the region's key.
type Upload struct {
	Version       string          `json:"version"`
	EffectiveFrom string          `json:"effective_from"`
	Module        string          `json:"module"`
	Cases         json.RawMessage `json:"cases"`
	Signature     string          `json:"signature"`
}

// UploadMessage is what a region signs: the region, version, effective date,
// and the sha256 of the module bytes and of the cases exactly as sent.
func UploadMessage(region, version, effectiveFrom string, module, casesJSON []byte) []byte {
	ms := sha256.Sum256(module)
	cs := sha256.Sum256(casesJSON)
	return fmt.Appendf(nil, "medgate-policy-upload-v1\nregion=%s\nversion=%s\neffective_from=%s\nmodule_sha256=%s\ncases_sha256=%s\n",
		region, version, effectiveFrom, hex.EncodeToString(ms[:]), hex.EncodeToString(cs[:]))
}

// CheckReport is the outcome of the check a version must pass before it can
// take effect: every failed load check and every failed case.
type CheckReport struct {
	OK     bool                  `json:"ok"`
	SHA256 string                `json:"module_sha256,omitempty"`
	Checks []engine.CheckFailure `json:"failed_checks"`
	Cases  []cases.Failure       `json:"failed_cases"`
	Passed int                   `json:"cases_passed"`
	Total  int                   `json:"cases_total"`
}

// CheckVersion runs the whole check on a candidate module: size, validity,
// imports, memory, exports, ABI version, instantiation within the time limit,
// then every example case. On success the loaded module is returned (the
// caller owns it); on failure the report says everything that failed.
func CheckVersion(ctx context.Context, eng *engine.Engine, region, version string, wasm []byte, cs []cases.Case) (*engine.Module, CheckReport) {
	rep := CheckReport{Checks: []engine.CheckFailure{}, Cases: []cases.Failure{}, Total: len(cs)}
	sum := sha256.Sum256(wasm)
	rep.SHA256 = hex.EncodeToString(sum[:])
	m, err := eng.LoadCandidate(ctx, region, version, wasm)
	if err != nil {
		var le *engine.LoadError
		if errors.As(err, &le) {
			rep.Checks = le.All
		} else {
			rep.Checks = []engine.CheckFailure{{Check: "load", Message: err.Error()}}
		}
		return nil, rep
	}
	if len(cs) == 0 {
		rep.Checks = append(rep.Checks, engine.CheckFailure{Check: "cases", Message: "an upload must ship at least one example case"})
	}
	rep.Cases = nonNil(cases.Run(ctx, m, cs))
	rep.Passed = len(cs) - len(rep.Cases)
	rep.OK = len(rep.Checks) == 0 && len(rep.Cases) == 0
	if !rep.OK {
		m.Close(ctx)
		return nil, rep
	}
	return m, rep
}

var versionChars = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-" {
		t[c] = true
	}
	return
}()

// ValidVersion reports whether v may name a version (validVersion), for
// the region CLI to refuse before signing what an upload would be refused.
func ValidVersion(v string) bool { return validVersion(v) }

// validVersion: 1–32 of [A-Za-z0-9._-], and not "." or "..", which a URL
// path cannot carry as a segment (fasthttp normalises them away), so such
// a version could never be withdrawn.
func validVersion(v string) bool {
	if v == "" || len(v) > 32 || v == "." || v == ".." {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !versionChars[v[i]] {
			return false
		}
	}
	return true
}

// decodeUpload parses and authenticates an upload; signed says whether the
// signature is required (the check endpoint is a dry run and takes none).
func decodeUpload(body []byte, p Principal, region string, signed bool) (*Upload, []byte, []cases.Case, abi.Date, error) {
	var up Upload
	if err := strictJSON(body, &up); err != nil {
		return nil, nil, nil, 0, bodyJSONError(err, body, "upload")
	}
	if !validVersion(up.Version) {
		return nil, nil, nil, 0, invalid("version", "version must be 1 to 32 characters of letters, digits, '.', '_' or '-'")
	}
	eff, ok := ParseDate([]byte(up.EffectiveFrom))
	if !ok {
		return nil, nil, nil, 0, invalid("effective_from", "effective_from %q is not a date YYYY-MM-DD", up.EffectiveFrom)
	}
	wasm, err := base64.StdEncoding.DecodeString(up.Module)
	if err != nil || len(wasm) == 0 {
		return nil, nil, nil, 0, invalid("module", "module must be the wasm bytes in standard base64")
	}
	if len(up.Cases) == 0 {
		return nil, nil, nil, 0, missing("cases")
	}
	cs, err := cases.Parse(up.Cases)
	if err != nil {
		field := "cases"
		if pe := (*cases.ParseError)(nil); errors.As(err, &pe) {
			field = pe.Path
		}
		return nil, nil, nil, 0, invalid(field, "%v", err)
	}
	if signed {
		if up.Signature == "" {
			return nil, nil, nil, 0, missing("signature")
		}
		sig, err := hex.DecodeString(up.Signature)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return nil, nil, nil, 0, invalid("signature", "signature must be an ed25519 signature in 128 hex digits")
		}
		if len(p.PublicKey) == 0 {
			return nil, nil, nil, 0, &Error{Status: fasthttp.StatusForbidden, Code: "no_signing_key", Message: "region " + region + " has no public key configured; it cannot publish policies"}
		}
		if !ed25519.Verify(p.PublicKey, UploadMessage(region, up.Version, up.EffectiveFrom, wasm, up.Cases), sig) {
			return nil, nil, nil, 0, &Error{Status: fasthttp.StatusForbidden, Code: "bad_signature", Field: "signature",
				Message: "the signature does not verify with region " + region + "'s key over this version, date, module and cases"}
		}
	}
	return &up, wasm, cs, eff, nil
}

// regionWork lets one policy check, upload, shadow or replay run of a
// region at a time (the caller has checked the region is the token's):
// each runs modules for as long as its cases or settlements last, and a
// region running many at once would take every CPU from the other regions'
// settlements. A second one meanwhile is 429 region_busy.
func (s *Server) regionWork(region string) (release func(), err error) {
	return oneAtATime(&s.regionBusy, region, "region_busy",
		"another policy check, upload, shadow or replay of region "+region+" is running; retry once it has answered")
}

// oneAtATime takes busy's lock of key, or refuses with 429 code and msg
// (Retry-After 1) while another holder has it.
func oneAtATime(busy *sync.Map, key, code, msg string) (release func(), err error) {
	v, _ := busy.LoadOrStore(key, new(sync.Mutex))
	mu := v.(*sync.Mutex)
	if !mu.TryLock() {
		return nil, &Error{Status: fasthttp.StatusTooManyRequests, Code: code, RetryAfter: "1", Message: msg}
	}
	return mu.Unlock, nil
}

func (s *Server) uploadPolicy(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	region := params[0]
	if err := ownRegion(p, region); err != nil {
		return err
	}
	release, err := s.regionWork(region)
	if err != nil {
		return err
	}
	defer release()
	up, wasm, cs, eff, err := decodeUpload(ctx.PostBody(), p, region, true)
	if err != nil {
		return err
	}
	casesSum := CasesSum(cs)
	if rec, found, err := s.versions.record(region, up.Version); err != nil {
		return err
	} else if found {
		// The same upload again (its first answer lost, say): answered as
		// published, like a settlement's retry, so that a region's
		// deployment can simply be retried. Anything else under the name
		// is a conflict: versions are never reused.
		diff := versionDiffers(rec, eff, wasm, casesSum)
		if diff == "" {
			res := map[string]any{"region": region, "version": up.Version, "effective_from": up.EffectiveFrom,
				"module_sha256": rec.SHA256, "replayed": true}
			if s.versions.isUnavailable(region, up.Version) {
				// Its stored module was missing or refused at start: the
				// same upload again is the region's repair, not a no-op
				// answered as one while its bills stay refused.
				if s.db.LowDisk() {
					return &Error{Status: fasthttp.StatusServiceUnavailable, Code: "ledger_disk_full", RetryAfter: "60",
						Message: "the disk of the ledger and the policy store is nearly full: the version's module was not restored; send the same upload again once there is room"}
				}
				m, rep := CheckVersion(context.Background(), s.versions.eng, region, up.Version, wasm, cs)
				if !rep.OK {
					return s.writeJSON(ctx, 422, map[string]any{
						"error":  map[string]string{"code": "policy_check_failed", "message": "the version is unavailable and its module failed its check again; it stays unavailable"},
						"report": rep})
				}
				if err := s.versions.restore(m, wasm, rec.EffectiveFrom); err != nil {
					m.Close(context.Background())
					return err
				}
				res["note"] = "version " + up.Version + " was unavailable (its stored module missing or refused at start): its module was checked again, stored and restored; the bills of its dates are settled under it again"
			}
			return s.writeJSON(ctx, 200, res)
		}
		return conflict("version_exists", "version", "region %s already has a version %s%s (versions are never reused, withdrawn ones included)",
			region, up.Version, diff)
	}
	if s.db.LowDisk() {
		// The policy store is on the ledger's disk (<db>/policies): its
		// module would take the room the ledger keeps for what is in
		// flight, as a settlement's write would.
		return &Error{Status: fasthttp.StatusServiceUnavailable, Code: "ledger_disk_full", RetryAfter: "60",
			Message: "the disk of the ledger and the policy store is nearly full: nothing was published; send the same upload again once there is room"}
	}
	// Refused before the check runs its cases (publish checks again).
	if err := s.versions.room(region); err != nil {
		return tooManyVersions(err, region)
	}
	m, rep := CheckVersion(context.Background(), s.versions.eng, region, up.Version, wasm, cs)
	if !rep.OK {
		return s.writeJSON(ctx, 422, map[string]any{
			"error":  map[string]string{"code": "policy_check_failed", "message": "the version failed its check; nothing was published"},
			"report": rep})
	}
	if err := s.versions.publish(context.Background(), m, wasm, eff, casesSum); err != nil {
		m.Close(context.Background())
		if errors.Is(err, ErrVersionExists) {
			return conflict("version_exists", "version", "region %s already has a version %s", region, up.Version)
		}
		return tooManyVersions(err, region)
	}
	res := map[string]any{"region": region, "version": up.Version, "effective_from": up.EffectiveFrom,
		"module_sha256": rep.SHA256, "report": rep}
	if d := today(); eff < d {
		// Retroactive: said, since a region may have meant a future date.
		res["note"] = "effective_from " + up.EffectiveFrom + " is already past: bills dated from then on (until a later version's date) that are settled from now on use " +
			up.Version + "; settlements already made keep the version that computed them (a shadow run shows what " + up.Version + " would have changed)"
	} else if eff <= tomorrow(d) {
		// Bills are settled up to a day before their date (checkNotFuture's
		// grace), so some of today's or tomorrow's may already be.
		res["note"] = "effective_from " + up.EffectiveFrom + " is today or tomorrow (UTC+8), and bills are settled from the day before their date: those of its dates already settled keep the version that computed them; those settled from now on use " +
			up.Version + " (a shadow run shows what " + up.Version + " would have changed)"
	}
	return s.writeJSON(ctx, 201, res)
}

// tooManyVersions is err as answered: 409 too_many_versions for
// errTooManyVersions, err itself otherwise. It says how many to withdraw:
// a store written before the bound may keep more than the limit.
func tooManyVersions(err error, region string) error {
	var tm *tooManyVersionsError
	if !errors.As(err, &tm) {
		return err
	}
	return conflict("too_many_versions", "version", "region %s keeps %d versions not withdrawn, and may keep at most %d (each stays loaded for bills of its dates): withdraw %d that no bill will need before publishing another; nothing was published",
		region, tm.kept, tm.max, tm.kept-tm.max+1)
}

func (s *Server) checkPolicy(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	region := params[0]
	if err := ownRegion(p, region); err != nil {
		return err
	}
	release, err := s.regionWork(region)
	if err != nil {
		return err
	}
	defer release()
	up, wasm, cs, _, err := decodeUpload(ctx.PostBody(), p, region, false)
	if err != nil {
		return err
	}
	m, rep := CheckVersion(context.Background(), s.versions.eng, region, up.Version, wasm, cs)
	if m != nil {
		m.Close(context.Background())
	}
	if !rep.OK {
		// An error like every other (api.md), shaped as a refused upload.
		return s.writeJSON(ctx, 422, map[string]any{
			"error":  map[string]string{"code": "policy_check_failed", "message": "the version failed its check (a dry run: nothing was published)"},
			"report": rep})
	}
	return s.writeJSON(ctx, 200, rep)
}

func today() abi.Date {
	t := time.Now().In(chinaTime)
	return abi.MakeDate(int32(t.Year()), int32(t.Month()), int32(t.Day()))
}

// tomorrow is the day after d.
func tomorrow(d abi.Date) abi.Date {
	t := time.Date(int(d.Year()), time.Month(d.Month()), int(d.Day())+1, 0, 0, 0, 0, time.UTC)
	return abi.MakeDate(int32(t.Year()), int32(t.Month()), int32(t.Day()))
}

func (s *Server) listPolicies(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	region := params[0]
	if err := ownRegion(p, region); err != nil {
		return err
	}
	list, err := s.versions.List(region, today())
	if err != nil {
		return err
	}
	type item struct {
		Version       string `json:"version"`
		EffectiveFrom string `json:"effective_from"`
		SHA256        string `json:"module_sha256,omitempty"`
		Status        string `json:"status"`
		Source        string `json:"source"`
		RecordedAt    string `json:"recorded_at,omitempty"`
		WithdrawnAt   string `json:"withdrawn_at,omitempty"`
	}
	out := []item{}
	for _, v := range list {
		// An unavailable world version never recorded has no recording
		// time, nor a module when its file was not found.
		it := item{Version: v.Version, EffectiveFrom: string(AppendDate(nil, v.EffectiveFrom)), SHA256: v.SHA256, Status: v.Status,
			Source: v.Source}
		if !v.RecordedAt.IsZero() {
			it.RecordedAt = v.RecordedAt.Format(time.RFC3339)
		}
		if it.SHA256 == hex.EncodeToString(noModule[:]) {
			it.SHA256 = "" // withdrawn, its module file never found
		}
		if !v.WithdrawnAt.IsZero() {
			it.WithdrawnAt = v.WithdrawnAt.Format(time.RFC3339)
		}
		out = append(out, it)
	}
	return s.writeJSON(ctx, 200, map[string]any{"region": region, "today": string(AppendDate(nil, today())), "versions": out})
}

func (s *Server) withdrawPolicy(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	region, version := params[0], params[1]
	if err := ownRegion(p, region); err != nil {
		return err
	}
	rec, err := s.versions.Withdraw(region, version)
	// Withdraw closed the module once no call of it was in flight.
	s.metrics.forgetClosed()
	replayed := false
	switch {
	case errors.Is(err, errNoVersion):
		return notFound("region %s has no version %s", region, version)
	case errors.Is(err, errAlreadyWithdrawn):
		// The same rollback again (its answer lost, say): only the
		// region's own token withdraws its versions and nothing else
		// identifies the request, so it is answered as done, with when,
		// like an upload's retry; a 409 told a retrying deployment that
		// a rollback in effect had failed.
		replayed = true
	case errors.Is(err, errLastVersion):
		return conflict("last_version", "", "version %s is region %s's only version, or the only one in force today (%s) with none before it: there is no previous one to roll back to, and without it every bill of the region's insured dated before a later version's effective date would be refused (no_policy); publish the version to return to (from the same date it replaces this one), then withdraw this one", version, region, AppendDate(nil, today()))
	case err != nil:
		return err
	}
	now, _ := s.policies.Lookup(region, today())
	res := map[string]any{"region": region, "withdrawn": rec.Version, "in_force_today": now.Name, "replayed": replayed}
	if !rec.WithdrawnAt.IsZero() {
		res["withdrawn_at"] = rec.WithdrawnAt.Format(time.RFC3339)
	}
	return s.writeJSON(ctx, 200, res)
}

// fundDiff is an amount before and after.
type fundDiff struct {
	Old  string `json:"old"`
	New  string `json:"new"`
	Diff string `json:"diff"`
}

func mkDiff(old, new int64) fundDiff {
	return fundDiff{Old: money.FormatFen(old), New: money.FormatFen(new), Diff: money.FormatFen(new - old)}
}

var shadowFields = []string{"deductible", "basic_fund", "serious_illness", "medical_assistance", "fund_total", "personal_account", "cash"}

func amountsOf(total int64, o *abi.Output) [7]int64 {
	fund := o.FundTotal()
	return [7]int64{o.Deductible, o.Basic, o.Serious, o.Assistance, fund, o.Account, total - fund - o.Account}
}

func recordedAmounts(a *ledger.Amounts) [7]int64 {
	return [7]int64{a.Deductible, a.BasicFund, a.SeriousIllness, a.MedicalAssistance, a.FundTotal, a.PersonalAccount, a.Cash}
}

// shadow re-executes a candidate version over the region's recorded
// settlements in a date range, each on the input and accumulator state
// recorded for it, and reports what would change. Nothing is written.
// maxShadowFailures is how many failed settlements a shadow run lists
// (all are counted).
const maxShadowFailures = 100

// monthBefore is the clearing month of the day before d. A settlement
// dated d was committed on d - 1 or later (a bill dated after tomorrow,
// UTC+8, is refused), and commit times never go back: a scan for bills
// dated d or later can start at that month's first entry.
func monthBefore(d abi.Date) ledger.Month {
	y, m := int(d.Year()), int(d.Month())
	if d.Day() == 1 {
		if m--; m == 0 {
			y, m = y-1, 12
		}
	}
	return ledger.MakeMonth(y, m)
}

func (s *Server) shadow(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	region := params[0]
	if err := ownRegion(p, region); err != nil {
		return err
	}
	release, err := s.regionWork(region)
	if err != nil {
		return err
	}
	defer release()
	var req struct {
		Version string `json:"version"` // an uploaded or world version of the region
		Module  string `json:"module"`  // or a module in base64, not uploaded
		From    string `json:"from"`
		To      string `json:"to"`
		Top     *int   `json:"top"` // nil: 10
	}
	if err := strictJSON(ctx.PostBody(), &req); err != nil {
		return bodyJSONError(err, ctx.PostBody(), "body")
	}
	from, ok := ParseDate([]byte(req.From))
	if !ok {
		return invalid("from", "from must be a date YYYY-MM-DD")
	}
	to, ok := ParseDate([]byte(req.To))
	if !ok {
		return invalid("to", "to must be a date YYYY-MM-DD")
	}
	if to < from {
		return invalid("to", "to must not be before from")
	}
	top := 10
	if req.Top != nil {
		if top = *req.Top; top < 1 || top > 100 {
			return invalid("top", "top must be between 1 and 100 (absent: 10)")
		}
	}
	bg := context.Background()
	var cand engine.Runner
	var candName string
	switch {
	case req.Module != "":
		wasm, err := base64.StdEncoding.DecodeString(req.Module)
		if err != nil {
			return invalid("module", "module must be base64")
		}
		m, err := s.versions.eng.LoadCandidate(bg, region, "shadow", wasm)
		if err != nil {
			return unprocessable("policy_check_failed", "module", "%v", err)
		}
		defer m.Close(bg)
		cand, candName = m, "module:"+m.SHA256Hex()
	case req.Version != "":
		rec, found, err := s.versions.record(region, req.Version)
		if err != nil {
			return err
		}
		if !found {
			return notFound("region %s has no version %s", region, req.Version)
		}
		candName = req.Version
		// A copy of the module, not the one settling: a call that runs
		// out of time makes a module run its calls one at a time for a
		// while, which must not slow the region's live settlements.
		// A version whose module cannot be had (never found, or stored
		// before a bound it now fails) is not a fault of the gateway's:
		// answered as its bills are.
		unavailable := func(err error) error {
			return &Error{Status: fasthttp.StatusServiceUnavailable, Code: "policy_unavailable", RetryAfter: "1",
				Message: "version " + req.Version + "'s module cannot be run: " + err.Error(), Cause: err}
		}
		if wasm, err := s.versions.store.Module(rec.SHA256); err == nil {
			m, err := s.versions.eng.LoadCandidate(bg, region, req.Version, wasm)
			if err != nil {
				return unavailable(err)
			}
			defer m.Close(bg)
			cand = m
			break
		}
		// Not stored (the native reference policies): the runner itself.
		sum, _ := hex.DecodeString(rec.SHA256)
		var key [32]byte
		copy(key[:], sum)
		if cand, err = s.versions.Runner(bg, region, key); err != nil {
			return unavailable(err)
		}
	default:
		return missing("version")
	}

	type change struct {
		SettlementID string              `json:"settlement_id"`
		Seq          uint64              `json:"seq"`
		Date         string              `json:"settlement_date"`
		VisitType    string              `json:"visit_type"`
		Version      string              `json:"recorded_version"`
		Amounts      map[string]fundDiff `json:"amounts"`
		abs          int64
	}
	var (
		n, changed, failed int
		oldT, newT         [7]int64
		changes            []change
		failures           = []map[string]string{}
		in                 abi.Input
		out                abi.Output
		stopped            string
	)
	// Only the largest changes are answered: keep at most about twice Top
	// in memory, however many settlements changed.
	byAbs := func(i, j int) bool {
		if changes[i].abs != changes[j].abs {
			return changes[i].abs > changes[j].abs
		}
		return changes[i].Seq < changes[j].Seq
	}
	fail := func(id, msg string) {
		if failed++; len(failures) < maxShadowFailures {
			failures = append(failures, map[string]string{"settlement_id": id, "error": msg})
		}
	}
	start, found, err := s.db.FirstSeqFrom(monthBefore(from))
	if err != nil {
		return err
	}
	if !found {
		head, _ := s.db.Head()
		start = head + 1 // nothing committed since: nothing to run
	}
	err = s.db.Scan(start, func(e *ledger.Entry) error {
		if e.Kind != ledger.KindSettlement || e.InsuredRegion != region || e.Date < from || e.Date > to {
			return nil
		}
		if _, reversed, err := s.db.ReversedBy(e.SettlementID); err != nil || reversed {
			return err
		}
		n++
		old := recordedAmounts(&e.Amounts)
		if err := in.Decode(e.Input); err != nil {
			fail(e.SettlementID, "recorded input unreadable: "+err.Error())
			return nil
		}
		if err := cand.Call(bg, &in, e.Input, &out); err != nil {
			fail(e.SettlementID, err.Error())
			var ce *engine.CallError
			if errors.As(err, &ce) && ce.Kind == engine.FailTimeout {
				// Each further settlement could cost the time limit again.
				stopped = "the candidate ran out of time on " + e.SettlementID + "; the settlements after it were not run"
				return errStopScan
			}
			return nil
		}
		neu := amountsOf(e.Amounts.Total, &out)
		for i := range old {
			oldT[i] += old[i]
			newT[i] += neu[i]
		}
		if old != neu {
			changed++
			c := change{SettlementID: e.SettlementID, Seq: e.Seq, Date: string(AppendDate(nil, e.Date)), VisitType: visitTypeName(e.VisitType),
				Version: e.PolicyVersion, Amounts: map[string]fundDiff{}}
			for i, f := range shadowFields {
				if old[i] != neu[i] {
					c.Amounts[f] = mkDiff(old[i], neu[i])
				}
			}
			c.abs = neu[4] - old[4]
			if c.abs < 0 {
				c.abs = -c.abs
			}
			changes = append(changes, c)
			if len(changes) >= 2*top+8 {
				sort.SliceStable(changes, byAbs)
				changes = changes[:top]
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return err
	}
	sort.SliceStable(changes, byAbs)
	if len(changes) > top {
		changes = changes[:top]
	}
	totals := map[string]fundDiff{}
	for i, f := range shadowFields {
		totals[f] = mkDiff(oldT[i], newT[i])
	}
	res := map[string]any{"region": region, "candidate": candName, "from": req.From, "to": req.To,
		"settlements": n, "changed": changed, "failed": failed, "totals": totals, "largest_changes": nonNil(changes),
		"failures": failures, "note": "reversed settlements are left out; nothing was written"}
	if stopped != "" {
		res["stopped"] = stopped
	}
	return s.writeJSON(ctx, 200, res)
}

// Mismatch is a replayed entry whose output differs from what was recorded.
type Mismatch struct {
	Seq          uint64 `json:"seq"`
	SettlementID string `json:"settlement_id"`
	Field        string `json:"field"`
	Recorded     string `json:"recorded"`
	Replayed     string `json:"replayed"`
}

// Replay re-executes entries from..to (0: the head) whose insured region is
// region ("" for all) with the module recorded for each, and returns every
// mismatch. A reversal is checked to be the exact negation of its original.
//
// Each module runs as a private copy compiled from its stored bytes
// (Versions.ReplayRunner), and each entry is run twice: a second answer
// that differs from the first is a mismatch of field "repeated" (the
// module keeps state between calls, which ABI.md forbids), whatever the
// ledger recorded.
func (s *Server) Replay(ctx context.Context, region string, from, to uint64) (checked, skipped int, mm []Mismatch, err error) {
	checked, skipped, mm, _, err = s.replayListing(ctx, region, from, to, 0)
	return checked, skipped, mm, err
}

// MaxReplayMismatchesListed bounds the mismatches a replay's answer
// lists (the first ones, in entry order); mismatches_total counts them
// all. A module that cannot be had makes a mismatch of every entry it
// computed, and a version in force for years computed millions: about
// 400 bytes each, built in the settling gateway's memory.
const MaxReplayMismatchesListed = 1000

// replayListing is Replay listing at most limit mismatches (0: all);
// total counts them all.
func (s *Server) replayListing(ctx context.Context, region string, from, to uint64, limit int) (checked, skipped int, mm []Mismatch, total int, err error) {
	if to == 0 {
		to, _ = s.db.Head()
	}
	var in abi.Input
	var out, again abi.Output
	type runner struct {
		r       engine.Runner
		release func()
		err     error
	}
	runners := map[[32]byte]runner{} // for this run: compiled once each
	defer func() {
		for _, r := range runners {
			if r.err == nil {
				r.release()
			}
		}
	}()
	add := func(e *ledger.Entry, field, rec, rep string) {
		if total++; limit == 0 || len(mm) < limit {
			mm = append(mm, Mismatch{Seq: e.Seq, SettlementID: e.SettlementID, Field: field, Recorded: rec, Replayed: rep})
		}
	}
	err = s.db.Scan(max(from, 1), func(e *ledger.Entry) error {
		if e.Seq > to {
			return errStopScan
		}
		if region != "" && e.InsuredRegion != region {
			return nil
		}
		if e.Kind != ledger.KindSettlement && e.Kind != ledger.KindReversal {
			return nil // a credit or an opening balance: no policy ran
		}
		checked++
		if e.Kind == ledger.KindReversal {
			orig, ok, err := s.db.EntryByID(e.Reverses)
			if err != nil {
				return err
			}
			if !ok {
				add(e, "reverses", e.Reverses, "missing")
				return nil
			}
			if orig.Amounts.Negated() != e.Amounts {
				add(e, "amounts", fmt.Sprint(e.Amounts), "not the negation of "+orig.SettlementID)
			}
			return nil
		}
		if hex.EncodeToString(e.InputHash[:]) != hex.EncodeToString(sha256Sum(e.Input)) {
			add(e, "input_hash", hex.EncodeToString(e.InputHash[:]), hex.EncodeToString(sha256Sum(e.Input)))
			return nil
		}
		ru, ok := runners[e.ModuleSHA256]
		if !ok {
			ru.r, ru.release, ru.err = s.versions.ReplayRunner(ctx, e.InsuredRegion, e.PolicyVersion, e.ModuleSHA256)
			runners[e.ModuleSHA256] = ru
		}
		if ru.err != nil {
			skipped++
			add(e, "module_sha256", hex.EncodeToString(e.ModuleSHA256[:]), "module not available: "+ru.err.Error())
			return nil
		}
		r := ru.r
		if err := in.Decode(e.Input); err != nil {
			add(e, "input", "recorded", "unreadable: "+err.Error())
			return nil
		}
		if err := r.Call(ctx, &in, e.Input, &out); err != nil {
			add(e, "call", "answered", err.Error())
			return nil
		}
		err2 := r.Call(ctx, &in, e.Input, &again)
		if first, second := string(out.AppendBinary(nil)), string(again.AppendBinary(nil)); err2 != nil || first != second {
			rep := "answered " + describeOutput(&again)
			if err2 != nil {
				rep = err2.Error()
			}
			add(e, "repeated", "answered "+describeOutput(&out), rep+" when run again on the same input (the module keeps state between calls)")
		}
		rec := recordedAmounts(&e.Amounts)
		rep := amountsOf(e.Amounts.Total, &out)
		for i, f := range shadowFields {
			if rec[i] != rep[i] {
				add(e, f, money.FormatFen(rec[i]), money.FormatFen(rep[i]))
			}
		}
		if fmt.Sprint(e.Changes) != fmt.Sprint(out.Changes) {
			add(e, "changes", fmt.Sprint(e.Changes), fmt.Sprint(out.Changes))
		}
		if !slices.Equal(e.Notes, out.Notes) {
			add(e, "notes", strings.Join(e.Notes, "; "), strings.Join(out.Notes, "; "))
		}
		return nil
	})
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return checked, skipped, mm, total, err
}

var errStopScan = errors.New("stop")

// describeOutput is an answer in a mismatch: its refusal or amounts.
func describeOutput(o *abi.Output) string {
	if o.Refusal != "" {
		return "refusal " + strconv.Quote(o.Refusal)
	}
	return fmt.Sprintf("deductible %s, basic %s, serious %s, assistance %s, account %s, changes %v, %d notes",
		money.FormatFen(o.Deductible), money.FormatFen(o.Basic), money.FormatFen(o.Serious), money.FormatFen(o.Assistance),
		money.FormatFen(o.Account), o.Changes, len(o.Notes))
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func (s *Server) replay(ctx *fasthttp.RequestCtx, region string) error {
	var req struct {
		FromSeq uint64 `json:"from_seq"`
		ToSeq   uint64 `json:"to_seq"`
	}
	if body := ctx.PostBody(); len(body) > 0 {
		if err := strictJSON(body, &req); err != nil {
			return bodyJSONError(err, body, "body")
		}
	}
	if req.FromSeq > 0 && req.ToSeq > 0 && req.FromSeq > req.ToSeq {
		return invalid("to_seq", "to_seq %d is before from_seq %d", req.ToSeq, req.FromSeq)
	}
	checked, skipped, mm, total, err := s.replayListing(context.Background(), region, req.FromSeq, req.ToSeq, MaxReplayMismatchesListed)
	if err != nil {
		return err
	}
	return s.writeJSON(ctx, 200, map[string]any{"checked": checked, "skipped": skipped, "identical": total == 0, "mismatches": nonNil(mm),
		"mismatches_total": total})
}

func (s *Server) replayRegion(ctx *fasthttp.RequestCtx, p Principal, params []string) error {
	if err := ownRegion(p, params[0]); err != nil {
		return err
	}
	release, err := s.regionWork(params[0])
	if err != nil {
		return err
	}
	defer release()
	return s.replay(ctx, params[0])
}

func (s *Server) replayAll(ctx *fasthttp.RequestCtx, _ Principal, _ []string) error {
	// One at a time, as a region's: each compiles a private copy of every
	// module its entries recorded and runs every entry twice, and a
	// client retrying one that timed out would pile them up, each taking
	// a CPU and the modules' memory from settlement. "*" is no region code.
	release, err := oneAtATime(&s.regionBusy, "*", "replay_busy",
		"another replay of the ledger is running; retry once it has answered")
	if err != nil {
		return err
	}
	defer release()
	return s.replay(ctx, "")
}

// CasesSum is the sha256 (hex) of example cases as parsed and encoded
// again: the same cases in another spacing or key order sum the same, so a
// retry reformatted and signed again is still the same upload.
func CasesSum(cs []cases.Case) string {
	b, err := json.Marshal(cs)
	if err != nil {
		return "" // cannot happen: parsed cases encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// versionDiffers says how an upload differs from the version recorded
// under its name, for version_exists; "" when it is the same upload (an
// active uploaded version, same module, date and cases: a version
// recorded before cases were recorded matches any).
func versionDiffers(rec engine.Record, eff abi.Date, wasm []byte, casesSum string) string {
	sum := sha256.Sum256(wasm)
	switch {
	case rec.State != engine.StateActive:
		return ", withdrawn"
	case rec.Source != "upload":
		return " from the world directory"
	case rec.SHA256 != hex.EncodeToString(sum[:]):
		return " with another module (sha256 " + rec.SHA256 + ")"
	case rec.EffectiveFrom != eff:
		return " effective from " + string(AppendDate(nil, rec.EffectiveFrom))
	case rec.CasesSHA256 != "" && rec.CasesSHA256 != casesSum:
		return " checked with other example cases (their content differs: this upload's cases were not run)"
	}
	return ""
}
