package gateway

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"medgate/engine/money"
	"medgate/ledger"
)

// Clearing endpoints (api.md "Clearing houses"), clearing token only:
//
//	GET  /v1/clearing/months/{YYYY-MM}        the month's statement so far, or the frozen one
//	POST /v1/clearing/months/{YYYY-MM}/close  close the month; answers the frozen statement
//	GET  /v1/clearing/export?from_seq=&to_seq= the ledger's entries as NDJSON
//
// A statement is computed from per-month pair totals that the ledger's
// writer keeps up to date in each entry's batch (ledger/months.go), so a GET
// reads a few records per pair, never the month's entries.
func init() {
	registerRoutes(
		Route{Method: "GET", Pattern: "/v1/clearing/months/{}", Role: RoleClearing, Handle: (*Server).monthStatement},
		Route{Method: "POST", Pattern: "/v1/clearing/months/{}/close", Role: RoleClearing, Handle: (*Server).closeMonth},
		Route{Method: "GET", Pattern: "/v1/clearing/export", Role: RoleClearing, Query: []string{"from_seq", "to_seq"}, Handle: (*Server).exportLedger},
	)
}

// clearingNow is the clock of the clearing endpoints (ServerConfig.Now).
func (s *Server) clearingNow() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// Statement is a month's clearing statement (api.md "Clearing houses").
type Statement struct {
	Month      string              `json:"month"`
	Closed     bool                `json:"closed"`
	LedgerSeq  uint64              `json:"ledger_seq"`
	LedgerHash string              `json:"ledger_hash"`
	Pairs      []StatementPair     `json:"pairs"`
	Provinces  []StatementProvince `json:"provinces"`
}

// StatementPair is one insured region → treating region pair of a month.
type StatementPair struct {
	InsuredRegion     string `json:"insured_region"`
	TreatingRegion    string `json:"treating_region"`
	CrossProvince     bool   `json:"cross_province"`
	Settlements       uint64 `json:"settlements"`
	Reversals         uint64 `json:"reversals"`
	Total             string `json:"total"`
	Eligible          string `json:"eligible"`
	BasicFund         string `json:"basic_fund"`
	SeriousIllness    string `json:"serious_illness"`
	MedicalAssistance string `json:"medical_assistance"`
	FundTotal         string `json:"fund_total"`
	PersonalAccount   string `json:"personal_account"`
	Cash              string `json:"cash"`
	ClearingAmount    string `json:"clearing_amount"`
}

// StatementProvince is a province's net position over cross-province pairs.
type StatementProvince struct {
	Province   string `json:"province"`
	Receivable string `json:"receivable"`
	Payable    string `json:"payable"`
	Net        string `json:"net"`
}

// province is the province code of a region code ("370102" → "370000").
func province(region string) string {
	if len(region) < 2 {
		return region
	}
	return region[:2] + "0000"
}

// crossProvince: the two codes' first two digits differ.
func crossProvince(a, b string) bool { return province(a) != province(b) }

// provincePosition is a province's receivable and payable, in fen.
type provincePosition struct{ receivable, payable int64 }

// buildStatement computes a statement from month totals: every amount in
// integer fen, printed once at the end.
func buildStatement(mt *ledger.MonthTotals, closed bool) *Statement {
	st := &Statement{Month: mt.Month.String(), Closed: closed, LedgerSeq: mt.Seq,
		LedgerHash: hex.EncodeToString(mt.Hash[:]), Pairs: []StatementPair{}, Provinces: []StatementProvince{}}
	f := money.FormatFen
	pos := map[string]*provincePosition{}
	get := func(p string) *provincePosition {
		if pos[p] == nil {
			pos[p] = &provincePosition{}
		}
		return pos[p]
	}
	for _, p := range mt.Pairs { // sorted by insured, then treating region
		a := &p.Amounts
		clearing := a.FundTotal + a.PersonalAccount
		cross := crossProvince(p.InsuredRegion, p.TreatingRegion)
		st.Pairs = append(st.Pairs, StatementPair{
			InsuredRegion: p.InsuredRegion, TreatingRegion: p.TreatingRegion, CrossProvince: cross,
			Settlements: p.Settlements, Reversals: p.Reversals,
			Total: f(a.Total), Eligible: f(a.Eligible), BasicFund: f(a.BasicFund), SeriousIllness: f(a.SeriousIllness),
			MedicalAssistance: f(a.MedicalAssistance), FundTotal: f(a.FundTotal), PersonalAccount: f(a.PersonalAccount),
			Cash: f(a.Cash), ClearingAmount: f(clearing),
		})
		if cross {
			// The treating side advanced the money: its province receives
			// it from the insured side's province.
			get(province(p.TreatingRegion)).receivable += clearing
			get(province(p.InsuredRegion)).payable += clearing
		}
	}
	codes := make([]string, 0, len(pos))
	for c := range pos {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		p := pos[c]
		st.Provinces = append(st.Provinces, StatementProvince{Province: c, Receivable: f(p.receivable),
			Payable: f(p.payable), Net: f(p.receivable - p.payable)})
	}
	return st
}

// ClosedStatement renders the statement a month's close freezes: what
// `medgate audit` renders again from the entries to check a frozen one.
func ClosedStatement(mt *ledger.MonthTotals) ([]byte, error) {
	return json.Marshal(buildStatement(mt, true))
}

func parseMonthParam(s string) (ledger.Month, error) {
	m, ok := ledger.ParseMonth(s)
	if !ok {
		return 0, badRequest("invalid_month", "month", "%q is not a month YYYY-MM", s)
	}
	return m, nil
}

func (s *Server) monthStatement(ctx *fasthttp.RequestCtx, _ Principal, params []string) error {
	m, err := parseMonthParam(params[0])
	if err != nil {
		return err
	}
	if c, ok, err := s.db.Closed(m); err != nil {
		return err
	} else if ok {
		writeRawJSON(ctx, c.Statement)
		return nil
	}
	mt, err := s.db.MonthTotals(m)
	if err != nil {
		return err
	}
	return s.writeJSON(ctx, fasthttp.StatusOK, buildStatement(mt, false))
}

// closeMonth closes a month: 409 month_not_over before its end (UTC+8);
// closing a closed month answers its frozen statement again (idempotent,
// so a retry after a lost answer is safe).
func (s *Server) closeMonth(ctx *fasthttp.RequestCtx, _ Principal, params []string) error {
	m, err := parseMonthParam(params[0])
	if err != nil {
		return err
	}
	notOver := func() error {
		return conflict("month_not_over", "month", "%s is not over: it ends at %s", m,
			m.End().Format(time.RFC3339))
	}
	if c, ok, err := s.db.Closed(m); err != nil {
		return err
	} else if ok {
		writeRawJSON(ctx, c.Statement)
		return nil
	}
	if s.clearingNow().Before(m.End()) {
		return notOver()
	}
	c, _, err := s.db.CloseMonth(m, ClosedStatement)
	if errors.Is(err, ledger.ErrMonthNotOver) {
		return notOver()
	}
	if err != nil {
		return err
	}
	writeRawJSON(ctx, c.Statement)
	return nil
}

// exportReader is an export's body: progress runs before each read.
type exportReader struct {
	*io.PipeReader
	progress func()
}

func (r *exportReader) Read(p []byte) (int, error) {
	r.progress()
	return r.PipeReader.Read(p)
}

func writeRawJSON(ctx *fasthttp.RequestCtx, b []byte) {
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(b)
}

// seqParam reads an optional positive integer query parameter (0 when
// absent).
func seqParam(ctx *fasthttp.RequestCtx, name string) (uint64, error) {
	v := ctx.QueryArgs().Peek(name)
	if v == nil {
		return 0, nil
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != string(v) {
		return 0, invalid(name, "%s must be a positive integer", name)
	}
	return n, nil
}

// exportLedger streams entries from_seq..to_seq (default: all, up to the
// head when the request came) as NDJSON, one ledger.ExportRecord a line.
// The headers X-Ledger-From-Seq and X-Ledger-To-Seq say which entries the
// body holds, so a client can tell a complete export from a cut one; a
// body cut by an error also ends without its terminating chunk.
func (s *Server) exportLedger(ctx *fasthttp.RequestCtx, p Principal, _ []string) error {
	from, err := seqParam(ctx, "from_seq")
	if err != nil {
		return err
	}
	to, err := seqParam(ctx, "to_seq")
	if err != nil {
		return err
	}
	if from > 0 && to > 0 && from > to {
		return invalid("to_seq", "to_seq %d is before from_seq %d", to, from)
	}
	head, _ := s.db.Head()
	from = max(from, 1)
	if to == 0 || to > head {
		to = head
	}
	if from > to {
		from, to = 0, 0 // nothing to export
	}
	ctx.SetContentType("application/x-ndjson")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.Header.Set("X-Ledger-From-Seq", strconv.FormatUint(from, 10))
	ctx.Response.Header.Set("X-Ledger-To-Seq", strconv.FormatUint(to, 10))
	if to == 0 {
		return nil
	}
	// The server's write timeout bounds a whole response, and an export
	// streams for as long as its range is long: the deadline moves on
	// while the client reads, so the timeout bounds how long the export
	// waits for a client that stopped reading, not how long it may take.
	wt := s.http.WriteTimeout
	renewed := time.Now()
	renew := func() {
		// Without a connection to set it on, the server's own applies.
		_ = ctx.SetWriteDeadline(renewed.Add(wt))
	}
	if wt > 0 {
		renew()
	}
	// A cut is logged after the access line (which says 200): with the
	// request's id and principal, so that the two can be matched.
	db, log := s.db, s.log.With().Uint64("req", ctx.ID()).Str("principal", p.ID).Logger()
	// The body is read from a pipe rather than written by a stream writer:
	// fasthttp ends a stream writer's body with the terminating chunk
	// whatever happened, so an export cut by a read error or a shutdown
	// looked complete. An error closes the pipe with it, fasthttp then
	// drops the connection without the terminating chunk, and the client
	// sees a body cut short. A client gone away closes the pipe, which
	// ends the scan.
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 64<<10)
		enc := json.NewEncoder(w)
		n := 0
		err := db.ScanRaw(from, to, func(e *ledger.Entry, raw []byte) error {
			if err := enc.Encode(ledger.NewExportRecord(e, raw)); err != nil {
				return err
			}
			if n++; n%256 == 0 {
				return w.Flush()
			}
			return nil
		})
		if err == nil {
			err = w.Flush()
		}
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			log.Error().Err(err).Uint64("from_seq", from).Uint64("to_seq", to).Int("entries_sent", n).Msg("export cut short")
		}
		pw.CloseWithError(err) // nil: the body is complete
	}()
	ctx.SetBodyStream(&exportReader{PipeReader: pr, progress: func() {
		// fasthttp reads the next piece once it has written the last:
		// renewed often enough that a client reading steadily is never
		// cut off.
		if now := time.Now(); wt > 0 && now.Sub(renewed) > wt/8 {
			renewed = now
			renew()
		}
	}}, -1)
	return nil
}
