package gateway

import (
	"math"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// Hospital reconciliation (对账, domain.md §7.3), hospital token, own
// entries only:
//
//	POST /v1/reconciliation/totals   对总账: the hospital's totals against the gateway's
//	POST /v1/reconciliation/details  对明细账: the hospital's rows against the gateway's
//
// Rows are the hospital's ledger entries committed on the dates from..to
// (inclusive, UTC+8, like clearing months): settlements, and reversals as
// rows of their own with negative amounts (refd_setl_flag 1). They come
// from a per-hospital index the ledger's writer keeps (ledger.HospitalRows),
// so a hospital's reconciliation reads its own rows only.
func init() {
	registerRoutes(
		Route{Method: "POST", Pattern: "/v1/reconciliation/totals", Role: RoleHospital, Handle: (*Server).reconcileTotals},
		Route{Method: "POST", Pattern: "/v1/reconciliation/details", Role: RoleHospital, MaxBody: maxDetailsBody, Handle: (*Server).reconcileDetails},
	)
}

const (
	// maxReconcileDays bounds a reconciliation's date range.
	maxReconcileDays = 366
	// maxDetailsBody bounds a details body: about 100,000 rows.
	maxDetailsBody = 16 << 20
	// maxListedRows bounds each list of a details answer (missing on
	// either side, differing): the rows missing on the hospital's side are
	// as many as the hospital's entries in the range, which no body
	// bounds, and the answer is built in memory. The counts stay exact.
	maxListedRows = 10000
)

// reconRange is a validated date range and its commit-time bounds.
type reconRange struct {
	from, to abi.Date
	lo, hi   int64 // unix ns, [lo, hi)
}

func parseRange(from, to string) (reconRange, error) {
	var r reconRange
	var ok bool
	if from == "" {
		return r, missing("from")
	}
	if to == "" {
		return r, missing("to")
	}
	if r.from, ok = ParseDate([]byte(from)); !ok {
		return r, invalid("from", "from %q is not a date YYYY-MM-DD", from)
	}
	if r.to, ok = ParseDate([]byte(to)); !ok {
		return r, invalid("to", "to %q is not a date YYYY-MM-DD", to)
	}
	start := func(d abi.Date) time.Time {
		return time.Date(int(d.Year()), time.Month(d.Month()), int(d.Day()), 0, 0, 0, 0, ledger.ChinaTime)
	}
	lo, hi := start(r.from), start(r.to).AddDate(0, 0, 1)
	if r.to < r.from {
		return r, invalid("to", "to must not be before from")
	}
	if hi.Sub(lo) > maxReconcileDays*24*time.Hour {
		return r, invalid("to", "a reconciliation covers at most %d days", maxReconcileDays)
	}
	r.lo, r.hi = clampedUnixNano(lo), clampedUnixNano(hi)
	return r, nil
}

// lastCommitTime is the latest commit time a ledger entry can have: commit
// times are int64 Unix nanoseconds.
var lastCommitTime = time.Unix(0, math.MaxInt64)

// clampedUnixNano is t in Unix nanoseconds, or the largest int64 for a t
// past what it can hold (after 2262), instead of a value wrapped around
// 2^64 ns (584 years) into the dates of real entries. Dates (from 1900)
// are never before the smallest.
func clampedUnixNano(t time.Time) int64 {
	if t.After(lastCommitTime) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

// parseSignedAmount parses a yuan amount with at most two decimals and an
// optional minus sign (totals and reversal rows are negative).
func parseSignedAmount(s, field string) (int64, error) {
	if s == "" {
		return 0, missing(field)
	}
	neg := strings.HasPrefix(s, "-")
	v, err := money.Parse([]byte(strings.TrimPrefix(s, "-")), 2)
	if err != nil {
		return 0, invalid(field, "%s %q is not an amount in yuan with at most two decimals", field, s)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// reconTotals are the totals of a set of rows, in fen.
type reconTotals struct {
	count, settlements, reversals int64
	total, fund, acct             int64
}

func (t *reconTotals) add(r *ledger.HospitalRow) {
	t.count++
	if r.Kind == ledger.KindReversal {
		t.reversals++
	} else {
		t.settlements++
	}
	t.total += r.Total
	t.fund += r.FundTotal
	t.acct += r.PersonalAccount
}

// TotalsRequest is the body of POST /v1/reconciliation/totals: the
// hospital's own totals over the range.
type TotalsRequest struct {
	From            string `json:"from"`
	To              string `json:"to"`
	Count           *int64 `json:"count"`            // fixmedins_setl_cnt: rows, reversals included
	Total           string `json:"total"`            // medfee_sumamt
	FundTotal       string `json:"fund_total"`       // fund_pay_sumamt
	PersonalAccount string `json:"personal_account"` // acct_pay
}

// TotalsSide is one side's totals in an answer.
type TotalsSide struct {
	Count           int64  `json:"count"`
	Settlements     *int64 `json:"settlements,omitempty"`
	Reversals       *int64 `json:"reversals,omitempty"`
	Total           string `json:"total"`
	FundTotal       string `json:"fund_total"`
	PersonalAccount string `json:"personal_account"`
}

// TotalsDifference is a field on which the two sides differ. Counts are
// numbers, amounts strings; Difference is gateway − hospital.
type TotalsDifference struct {
	Field      string `json:"field"`
	Gateway    any    `json:"gateway"`
	Hospital   any    `json:"hospital"`
	Difference any    `json:"difference"`
}

// TotalsAnswer answers POST /v1/reconciliation/totals.
type TotalsAnswer struct {
	Hospital  string `json:"hospital"`
	From      string `json:"from"`
	To        string `json:"to"`
	LedgerSeq uint64 `json:"ledger_seq"` // the ledger position the gateway's side covers
	Result    string `json:"result"`     // balanced | unbalanced
	// StmtRslt is 3201's stmt_rslt: 0 balanced, 1 the gateway (centre) has
	// more rows, 2 the hospital has more rows, 3 same count, amounts differ.
	StmtRslt       string             `json:"stmt_rslt"`
	Gateway        TotalsSide         `json:"gateway"`
	HospitalTotals TotalsSide         `json:"hospital_totals"`
	Differences    []TotalsDifference `json:"differences"`
}

func (s *Server) reconcileTotals(ctx *fasthttp.RequestCtx, p Principal, _ []string) error {
	h, err := s.hospital(p)
	if err != nil {
		return err
	}
	var req TotalsRequest
	if err := strictJSON(ctx.PostBody(), &req); err != nil {
		return bodyJSONError(err, ctx.PostBody(), "body")
	}
	rg, err := parseRange(req.From, req.To)
	if err != nil {
		return err
	}
	if req.Count == nil {
		return missing("count")
	}
	if *req.Count < 0 {
		return invalid("count", "count must not be negative")
	}
	theirs := reconTotals{count: *req.Count}
	if theirs.total, err = parseSignedAmount(req.Total, "total"); err != nil {
		return err
	}
	if theirs.fund, err = parseSignedAmount(req.FundTotal, "fund_total"); err != nil {
		return err
	}
	if theirs.acct, err = parseSignedAmount(req.PersonalAccount, "personal_account"); err != nil {
		return err
	}
	var ours reconTotals
	seq, err := s.db.HospitalRows(h.ID, rg.lo, rg.hi, func(r *ledger.HospitalRow) error {
		ours.add(r)
		return nil
	})
	if err != nil {
		return err
	}
	f := money.FormatFen
	ans := &TotalsAnswer{Hospital: h.ID, From: req.From, To: req.To, LedgerSeq: seq, Result: "balanced", StmtRslt: "0",
		Gateway: TotalsSide{Count: ours.count, Settlements: &ours.settlements, Reversals: &ours.reversals,
			Total: f(ours.total), FundTotal: f(ours.fund), PersonalAccount: f(ours.acct)},
		HospitalTotals: TotalsSide{Count: theirs.count, Total: f(theirs.total), FundTotal: f(theirs.fund), PersonalAccount: f(theirs.acct)},
		Differences:    []TotalsDifference{}}
	if ours.count != theirs.count {
		ans.Differences = append(ans.Differences, TotalsDifference{Field: "count", Gateway: ours.count, Hospital: theirs.count,
			Difference: ours.count - theirs.count})
	}
	for _, d := range []struct {
		field   string
		g, hosp int64
	}{{"total", ours.total, theirs.total}, {"fund_total", ours.fund, theirs.fund}, {"personal_account", ours.acct, theirs.acct}} {
		if d.g != d.hosp {
			ans.Differences = append(ans.Differences, TotalsDifference{Field: d.field, Gateway: f(d.g), Hospital: f(d.hosp),
				Difference: f(d.g - d.hosp)})
		}
	}
	switch {
	case len(ans.Differences) == 0:
	case ours.count > theirs.count:
		ans.Result, ans.StmtRslt = "unbalanced", "1"
	case ours.count < theirs.count:
		ans.Result, ans.StmtRslt = "unbalanced", "2"
	default:
		ans.Result, ans.StmtRslt = "unbalanced", "3"
	}
	return s.writeJSON(ctx, fasthttp.StatusOK, ans)
}

// DetailsRequest is the body of POST /v1/reconciliation/details: the
// hospital's rows over the range.
type DetailsRequest struct {
	From        string       `json:"from"`
	To          string       `json:"to"`
	Settlements []DetailsRow `json:"settlements"`
}

// DetailsRow is one row: a settlement, or a reversal (its own settlement
// id, negative amounts).
type DetailsRow struct {
	SettlementID    string `json:"settlement_id"`    // setl_id
	Total           string `json:"total"`            // medfee_sumamt
	FundTotal       string `json:"fund_total"`       // fund_pay_sumamt
	PersonalAccount string `json:"personal_account"` // acct_pay
}

// DetailsAmounts are one side's amounts of a row.
type DetailsAmounts struct {
	Total           string `json:"total"`
	FundTotal       string `json:"fund_total"`
	PersonalAccount string `json:"personal_account"`
}

// MissingOnGateway is a row of the hospital's that the gateway does not
// have in the range: Reason "unknown" (no such settlement of this
// hospital) or "outside_range" (the hospital's, committed on another date:
// CommittedAt says when).
type MissingOnGateway struct {
	SettlementID string         `json:"settlement_id"`
	Reason       string         `json:"reason"`
	CommittedAt  string         `json:"committed_at,omitempty"`
	Hospital     DetailsAmounts `json:"hospital"`
}

// MissingOnHospital is a gateway row the hospital did not send.
type MissingOnHospital struct {
	SettlementID string         `json:"settlement_id"`
	Kind         string         `json:"kind"` // settlement | reversal
	Reverses     string         `json:"reverses,omitempty"`
	CommittedAt  string         `json:"committed_at"`
	Gateway      DetailsAmounts `json:"gateway"`
}

// DetailsDifference is a row whose amounts differ; Fields names them.
type DetailsDifference struct {
	SettlementID string         `json:"settlement_id"`
	Fields       []string       `json:"fields"`
	Gateway      DetailsAmounts `json:"gateway"`
	Hospital     DetailsAmounts `json:"hospital"`
}

// DetailsCounts count the rows of each side and how they compared.
type DetailsCounts struct {
	Gateway           int `json:"gateway"`
	Hospital          int `json:"hospital"`
	Matched           int `json:"matched"`
	Differing         int `json:"differing"`
	MissingOnGateway  int `json:"missing_on_gateway"`
	MissingOnHospital int `json:"missing_on_hospital"`
}

// DetailsAnswer answers POST /v1/reconciliation/details.
type DetailsAnswer struct {
	Hospital          string              `json:"hospital"`
	From              string              `json:"from"`
	To                string              `json:"to"`
	LedgerSeq         uint64              `json:"ledger_seq"`
	Result            string              `json:"result"` // balanced | unbalanced
	Counts            DetailsCounts       `json:"counts"`
	MissingOnGateway  []MissingOnGateway  `json:"missing_on_gateway"`
	MissingOnHospital []MissingOnHospital `json:"missing_on_hospital"`
	Differences       []DetailsDifference `json:"differences"`
	// Truncated: a list holds only its first maxListedRows rows; the
	// counts say how many there are (a shorter range lists them all).
	Truncated bool `json:"truncated"`
}

type hospitalRow struct {
	total, fund, acct int64
	seen              bool
	index             int // in the request
}

func (s *Server) reconcileDetails(ctx *fasthttp.RequestCtx, p Principal, _ []string) error {
	h, err := s.hospital(p)
	if err != nil {
		return err
	}
	// One at a time per hospital: a body of 16 MiB takes about ten times
	// that to read and compare, and a hospital sending many at once (each
	// day of a year in parallel, a retry storm) would hold that many.
	release, err := oneAtATime(&s.detailsBusy, h.ID, "hospital_busy",
		"another details reconciliation of hospital "+h.ID+" is running; retry once it has answered")
	if err != nil {
		return err
	}
	defer release()
	var req DetailsRequest
	if err := strictJSON(ctx.PostBody(), &req); err != nil {
		return bodyJSONError(err, ctx.PostBody(), "body")
	}
	rg, err := parseRange(req.From, req.To)
	if err != nil {
		return err
	}
	if req.Settlements == nil {
		return missing("settlements")
	}
	theirs := make(map[string]*hospitalRow, len(req.Settlements))
	for i, r := range req.Settlements {
		field := sprintf("settlements[%d]", i)
		if r.SettlementID == "" {
			return missing(field + ".settlement_id")
		}
		if prev, dup := theirs[r.SettlementID]; dup {
			return invalid(field+".settlement_id", "%s is also settlements[%d]", r.SettlementID, prev.index)
		}
		hr := &hospitalRow{index: i}
		if hr.total, err = parseSignedAmount(r.Total, field+".total"); err != nil {
			return err
		}
		if hr.fund, err = parseSignedAmount(r.FundTotal, field+".fund_total"); err != nil {
			return err
		}
		if hr.acct, err = parseSignedAmount(r.PersonalAccount, field+".personal_account"); err != nil {
			return err
		}
		theirs[r.SettlementID] = hr
	}
	f := money.FormatFen
	amounts := func(total, fund, acct int64) DetailsAmounts {
		return DetailsAmounts{Total: f(total), FundTotal: f(fund), PersonalAccount: f(acct)}
	}
	ans := &DetailsAnswer{Hospital: h.ID, From: req.From, To: req.To, Result: "balanced",
		MissingOnGateway: []MissingOnGateway{}, MissingOnHospital: []MissingOnHospital{}, Differences: []DetailsDifference{}}
	ans.Counts.Hospital = len(req.Settlements)
	ans.LedgerSeq, err = s.db.HospitalRows(h.ID, rg.lo, rg.hi, func(r *ledger.HospitalRow) error {
		ans.Counts.Gateway++
		id := ledger.SettlementID(r.Seq)
		hr, ok := theirs[id]
		if !ok {
			if ans.Counts.MissingOnHospital++; len(ans.MissingOnHospital) == maxListedRows {
				ans.Truncated = true
				return nil
			}
			m := MissingOnHospital{SettlementID: id, Kind: "settlement", CommittedAt: formatTime(r.CommittedAt),
				Gateway: amounts(r.Total, r.FundTotal, r.PersonalAccount)}
			if r.Kind == ledger.KindReversal {
				m.Kind, m.Reverses = "reversal", ledger.SettlementID(r.Reverses)
			}
			ans.MissingOnHospital = append(ans.MissingOnHospital, m)
			return nil
		}
		hr.seen = true
		var fields []string
		if hr.total != r.Total {
			fields = append(fields, "total")
		}
		if hr.fund != r.FundTotal {
			fields = append(fields, "fund_total")
		}
		if hr.acct != r.PersonalAccount {
			fields = append(fields, "personal_account")
		}
		if fields == nil {
			ans.Counts.Matched++
			return nil
		}
		if ans.Counts.Differing++; len(ans.Differences) == maxListedRows {
			ans.Truncated = true
			return nil
		}
		ans.Differences = append(ans.Differences, DetailsDifference{SettlementID: id, Fields: fields,
			Gateway: amounts(r.Total, r.FundTotal, r.PersonalAccount), Hospital: amounts(hr.total, hr.fund, hr.acct)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range req.Settlements {
		hr := theirs[r.SettlementID]
		if hr.seen {
			continue
		}
		if ans.Counts.MissingOnGateway++; len(ans.MissingOnGateway) == maxListedRows {
			ans.Truncated = true
			continue
		}
		m := MissingOnGateway{SettlementID: r.SettlementID, Reason: "unknown", Hospital: amounts(hr.total, hr.fund, hr.acct)}
		// The hospital's own entry on another date is worth saying; anybody
		// else's is "unknown", as it would be to GET it.
		if e, ok, err := s.db.EntryByID(r.SettlementID); err != nil {
			return err
		} else if ok && e.Hospital == h.ID && e.Seq <= ans.LedgerSeq {
			m.Reason, m.CommittedAt = "outside_range", formatTime(e.CommittedAt)
		}
		ans.MissingOnGateway = append(ans.MissingOnGateway, m)
	}
	if ans.Counts.Differing+ans.Counts.MissingOnGateway+ans.Counts.MissingOnHospital > 0 {
		ans.Result = "unbalanced"
	}
	return s.writeJSON(ctx, fasthttp.StatusOK, ans)
}
