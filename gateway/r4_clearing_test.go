package gateway

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"medgate/engine/money"
	"medgate/ledger"
)

// Clearing and reconciliation recomputed independently: a random workload
// (settlements, reversals across month boundaries, credits, month closes,
// some of them while settlements commit), then every statement and every
// reconciliation answer is recomputed in the test from the exported
// entries alone and compared to the fen.

// r4Persons are the insured persons of the random workload: employees and
// residents of a Shandong prefecture (371600) and of an Inner Mongolia
// league (152500), so that pairs are both inside and across provinces.
func r4Persons() map[string][]string {
	ps := map[string][]string{}
	for _, region := range []string{"371600", "152500"} {
		for i := range 4 {
			scheme, bal := "employee", "3000.00"
			if i%2 == 1 {
				scheme, bal = "resident", "0.00"
			}
			ps[region] = append(ps[region], fmt.Sprintf(`{"id":"P%s-%d","scheme":%q,"employment":"active","groups":[],"conditions":["hypertension"],"registration":"long_term","account_balance":%q,"enrolled_on":"2010-01-01","in_concentrated_period":true}`,
				region, i, scheme, bal))
		}
	}
	return ps
}

var r4Hospitals = []string{"H3716020001", "H3716210001", "H3701020001", "H1525020001"}

// r4Record is the part of an export line the test recomputes from.
type r4Record struct {
	Seq            uint64            `json:"seq"`
	SettlementID   string            `json:"settlement_id"`
	Kind           string            `json:"kind"`
	Reverses       string            `json:"reverses"`
	Hospital       string            `json:"hospital"`
	TreatingRegion string            `json:"treating_region"`
	InsuredRegion  string            `json:"insured_region"`
	CommittedAt    string            `json:"committed_at"`
	Month          string            `json:"month"`
	Amounts        map[string]string `json:"amounts"`
	Hash           string            `json:"hash"`

	at time.Time // CommittedAt in UTC+8
}

func (r *r4Record) month() string { return r.at.Format("2006-01") }
func (r *r4Record) day() string   { return r.at.Format("2006-01-02") }

// r4Export reads the export of from..to (0: unbounded) and returns its
// records and its X-Ledger headers.
func r4Export(t *testing.T, h *harness, from, to uint64) ([]r4Record, []byte, string, string) {
	t.Helper()
	q := []string{}
	if from > 0 {
		q = append(q, fmt.Sprintf("from_seq=%d", from))
	}
	if to > 0 {
		q = append(q, fmt.Sprintf("to_seq=%d", to))
	}
	path := "/v1/clearing/export"
	if len(q) > 0 {
		path += "?" + strings.Join(q, "&")
	}
	resp, err := h.roundTrip("GET", path, "tok-clearing", "", nil, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer fasthttp.ReleaseResponse(resp)
	if resp.StatusCode() != 200 {
		t.Fatalf("export %s: %d %s", path, resp.StatusCode(), resp.Body())
	}
	body := append([]byte(nil), resp.Body()...)
	var recs []r4Record
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var r r4Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line: %v\n%s", err, sc.Bytes())
		}
		at, err := time.Parse(time.RFC3339Nano, r.CommittedAt)
		if err != nil {
			t.Fatalf("committed_at %q: %v", r.CommittedAt, err)
		}
		r.at = at.In(time.FixedZone("CST", 8*3600))
		recs = append(recs, r)
	}
	return recs, body, string(resp.Header.Peek("X-Ledger-From-Seq")), string(resp.Header.Peek("X-Ledger-To-Seq"))
}

// r4Statement recomputes month's statement from the records alone.
func r4Statement(t *testing.T, recs []r4Record, month string) *Statement {
	t.Helper()
	type sums struct {
		n, r int64
		a    map[string]int64
	}
	pairs := map[[2]string]*sums{}
	st := &Statement{Month: month, Pairs: []StatementPair{}, Provinces: []StatementProvince{}}
	for i := range recs {
		r := &recs[i]
		if r.month() > month {
			continue
		}
		// The last entry of the month or before (commit times never go
		// back, so this is a prefix of the ledger).
		st.LedgerSeq, st.LedgerHash = r.Seq, r.Hash
		if r.month() != month {
			continue
		}
		if r.Kind != "settlement" && r.Kind != "reversal" {
			// A credit or an opening balance is in the month's range of
			// entries but in no clearing total (ledger/VERIFY.md, 1a).
			continue
		}
		k := [2]string{r.InsuredRegion, r.TreatingRegion}
		p := pairs[k]
		if p == nil {
			p = &sums{a: map[string]int64{}}
			pairs[k] = p
		}
		if r.Kind == "reversal" {
			p.r++
		} else {
			p.n++
		}
		for name, v := range r.Amounts {
			p.a[name] += fen(t, v)
		}
	}
	if st.LedgerSeq == 0 {
		st.LedgerHash = hex.EncodeToString(make([]byte, 32))
	}
	keys := make([][2]string, 0, len(pairs))
	for k := range pairs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	f := money.FormatFen
	recv, pay := map[string]int64{}, map[string]int64{}
	for _, k := range keys {
		p := pairs[k]
		clearing := p.a["fund_total"] + p.a["personal_account"]
		cross := k[0][:2] != k[1][:2]
		st.Pairs = append(st.Pairs, StatementPair{InsuredRegion: k[0], TreatingRegion: k[1], CrossProvince: cross,
			Settlements: uint64(p.n), Reversals: uint64(p.r), Total: f(p.a["total"]), Eligible: f(p.a["eligible"]),
			BasicFund: f(p.a["basic_fund"]), SeriousIllness: f(p.a["serious_illness"]), MedicalAssistance: f(p.a["medical_assistance"]),
			FundTotal: f(p.a["fund_total"]), PersonalAccount: f(p.a["personal_account"]), Cash: f(p.a["cash"]), ClearingAmount: f(clearing)})
		if cross {
			recv[k[1][:2]+"0000"] += clearing
			pay[k[0][:2]+"0000"] += clearing
		}
	}
	provs := map[string]bool{}
	for p := range recv {
		provs[p] = true
	}
	for p := range pay {
		provs[p] = true
	}
	codes := make([]string, 0, len(provs))
	for p := range provs {
		codes = append(codes, p)
	}
	sort.Strings(codes)
	for _, c := range codes {
		st.Provinces = append(st.Provinces, StatementProvince{Province: c, Receivable: f(recv[c]), Payable: f(pay[c]), Net: f(recv[c] - pay[c])})
	}
	return st
}

// r4Row is a reconciliation row as a hospital would send it.
type r4Row struct {
	SettlementID    string `json:"settlement_id"`
	Total           string `json:"total"`
	FundTotal       string `json:"fund_total"`
	PersonalAccount string `json:"personal_account"`
}

func r4Rows(recs []r4Record, hospital, from, to string) []r4Row {
	var rows []r4Row
	for _, r := range recs {
		if r.Hospital == hospital && r.day() >= from && r.day() <= to {
			rows = append(rows, r4Row{r.SettlementID, r.Amounts["total"], r.Amounts["fund_total"], r.Amounts["personal_account"]})
		}
	}
	return rows
}

func r4Details(t *testing.T, h *harness, hospital, from, to string, rows []r4Row) DetailsAnswer {
	t.Helper()
	if rows == nil {
		rows = []r4Row{}
	}
	body, _ := json.Marshal(map[string]any{"from": from, "to": to, "settlements": rows})
	status, out := h.do("POST", "/v1/reconciliation/details", "tok-"+hospital, body)
	if status != 200 {
		t.Fatalf("details %s %s..%s: %d %s", hospital, from, to, status, out)
	}
	var a DetailsAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func r4Totals(t *testing.T, h *harness, hospital, from, to string, rows []r4Row) TotalsAnswer {
	t.Helper()
	var tot, fund, acct int64
	for _, r := range rows {
		tot += fen(t, r.Total)
		fund += fen(t, r.FundTotal)
		acct += fen(t, r.PersonalAccount)
	}
	f := money.FormatFen
	body := fmt.Sprintf(`{"from":%q,"to":%q,"count":%d,"total":%q,"fund_total":%q,"personal_account":%q}`,
		from, to, len(rows), f(tot), f(fund), f(acct))
	status, out := h.do("POST", "/v1/reconciliation/totals", "tok-"+hospital, []byte(body))
	if status != 200 {
		t.Fatalf("totals %s %s..%s: %d %s", hospital, from, to, status, out)
	}
	var a TotalsAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// r4Workload runs a random workload and returns the months it touched.
type r4Workload struct {
	t      *testing.T
	h      *harness
	clk    *clock
	rng    *rand.Rand
	n      int
	open   map[string][]string // hospital -> settlements not reversed
	closed map[string]bool
}

func (w *r4Workload) settle(hospital string) (answer, bool) {
	w.n++
	return w.settleWith(w.rng, hospital, fmt.Sprintf("W-%d", w.n))
}

func (w *r4Workload) settleWith(rng *rand.Rand, hospital, requestID string) (answer, bool) {
	t := w.t
	region := []string{"371600", "152500"}[rng.IntN(2)]
	person := fmt.Sprintf("P%s-%d", region, rng.IntN(4))
	var items []string
	for range 1 + rng.IntN(3) {
		code := []string{"XA01", "XA02", "XB01", "XC01"}[rng.IntN(4)]
		price := 1 + rng.Int64N(50000) // fen
		qty := 1 + rng.Int64N(3)
		items = append(items, fmt.Sprintf(`{"code":%q,"unit_price":%q,"quantity":"%d","amount":%q}`,
			code, money.FormatFen(price), qty, money.FormatFen(price*qty)))
	}
	visit := `{"type":"outpatient","visit_date":"2026-09-01"}`
	if rng.IntN(3) == 0 {
		visit = `{"type":"inpatient","admitted_on":"2026-08-20","discharged_on":"2026-09-01","visit_date":"2026-09-01"}`
	}
	body := settleBody(requestID, person, region, visit, "["+strings.Join(items, ",")+"]")
	status, out := w.h.do("POST", "/v1/settlements", "tok-"+hospital, body)
	if status != 200 {
		t.Logf("settle refused: %d %s", status, out)
		return answer{}, false
	}
	a := decodeAnswer(t, out)
	return a, true
}

func TestR4ClearingRecomputedFromTheExport(t *testing.T) {
	clk := &clock{}
	clk.set("2026-09-20T02:00:00Z")
	h := newClockHarness(t, refWorld(t, r4Persons()), clk)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	w := &r4Workload{t: t, h: h, clk: clk, rng: rand.New(rand.NewPCG(seed, 1)), open: map[string][]string{}, closed: map[string]bool{}}
	var mu sync.Mutex
	record := func(hospital string, a answer) {
		mu.Lock()
		w.open[hospital] = append(w.open[hospital], a.SettlementID)
		mu.Unlock()
	}
	cst := time.FixedZone("CST", 8*3600)
	frozen := map[string][]byte{}
	for step := 0; step < 400; step++ {
		now := clk.now()
		switch r := w.rng.IntN(100); {
		case r < 5:
			// Just before the end of this month (UTC+8).
			t8 := now.In(cst)
			end := time.Date(t8.Year(), t8.Month()+1, 1, 0, 0, 0, 0, cst)
			clk.ns.Store(end.Add(-time.Duration(1+w.rng.IntN(3000)) * time.Millisecond).UnixNano())
		case r < 25:
			clk.ns.Store(now.Add(time.Duration(1+w.rng.IntN(16*60)) * time.Minute).UnixNano())
		default:
			clk.ns.Store(now.Add(time.Duration(1+w.rng.IntN(200)) * time.Millisecond).UnixNano())
		}
		if clk.now().After(time.Date(2027, 1, 20, 0, 0, 0, 0, time.UTC)) {
			break
		}
		switch r := w.rng.IntN(100); {
		case r < 60:
			hosp := r4Hospitals[w.rng.IntN(len(r4Hospitals))]
			if a, ok := w.settle(hosp); ok {
				record(hosp, a)
			}
		case r < 80:
			hosp := r4Hospitals[w.rng.IntN(len(r4Hospitals))]
			if ids := w.open[hosp]; len(ids) > 0 {
				i := w.rng.IntN(len(ids))
				id := ids[i]
				w.open[hosp] = slices.Delete(ids, i, i+1)
				w.n++
				status, out := h.do("POST", "/v1/settlements/"+id+"/reversal", "tok-"+hosp, []byte(fmt.Sprintf(`{"request_id":"WR-%d","reason":"r"}`, w.n)))
				if status != 200 {
					t.Fatalf("reverse %s: %d %s", id, status, out)
				}
			}
		case r < 88:
			w.n++
			region := []string{"371600", "152500"}[w.rng.IntN(2)]
			status, out := h.do("POST", fmt.Sprintf("/v1/regions/%s/persons/P%s-%d/credits", region, region, w.rng.IntN(4)), "tok-region-"+region,
				[]byte(fmt.Sprintf(`{"reference":"CR-%d","amount":"%d.00"}`, w.n, 1+w.rng.IntN(500))))
			if status != 200 {
				t.Fatalf("credit: %d %s", status, out)
			}
		default:
			// Close the previous month; or, half the time, the month that is
			// just ending while settlements commit across its end.
			closeM := ledger.MonthOf(clk.now().UnixNano())
			closeM = ledger.MakeMonth(closeM.Year(), closeM.Num()-1)
			if closeM.Num() == 0 {
				closeM = ledger.MakeMonth(closeM.Year()-1, 12)
			}
			var wg sync.WaitGroup
			if w.rng.IntN(2) == 0 {
				closeM = ledger.MonthOf(clk.now().UnixNano())
				clk.ns.Store(closeM.End().Add(-2 * time.Millisecond).UnixNano())
				w.n++
				base := w.n
				for g := range 3 {
					wg.Add(1)
					hosp := r4Hospitals[g]
					rng := rand.New(rand.NewPCG(w.rng.Uint64(), uint64(g)))
					go func() {
						defer wg.Done()
						for i := range 6 {
							if a, ok := w.settleWith(rng, hosp, fmt.Sprintf("WC-%d-%d-%d", base, g, i)); ok {
								record(hosp, a)
							}
						}
					}()
				}
				time.Sleep(time.Duration(w.rng.IntN(3000)) * time.Microsecond)
				clk.ns.Store(closeM.End().Add(time.Millisecond).UnixNano())
			}
			status, out := h.do("POST", "/v1/clearing/months/"+closeM.String()+"/close", "tok-clearing", nil)
			wg.Wait()
			if status != 200 {
				t.Fatalf("close %s: %d %s", closeM, status, out)
			}
			w.closed[closeM.String()] = true
			// The frozen statement is the month's entries, whatever raced it.
			frozen[closeM.String()] = append([]byte(nil), out...)
		}
	}
	r4Check(t, h, frozen)
	h.restart()
	r4Check(t, h, frozen)
}

// r4Check recomputes every statement and reconciliation from the export.
func r4Check(t *testing.T, h *harness, frozen map[string][]byte) {
	t.Helper()
	recs, body, fromH, toH := r4Export(t, h, 0, 0)
	if _, err := ledger.VerifyExport(bytes.NewReader(body), nil); err != nil {
		t.Fatalf("export does not verify: %v", err)
	}
	if len(recs) == 0 {
		t.Fatal("no entries")
	}
	if fromH != "1" || toH != fmt.Sprint(recs[len(recs)-1].Seq) {
		t.Fatalf("export headers %s..%s for %d entries", fromH, toH, len(recs))
	}
	months := map[string]bool{}
	for i, r := range recs {
		if r.Month != r.month() {
			t.Fatalf("entry %d: month %s, committed at %s", r.Seq, r.Month, r.CommittedAt)
		}
		if i > 0 && r.at.Before(recs[i-1].at) {
			t.Fatalf("entry %d committed before entry %d", r.Seq, recs[i-1].Seq)
		}
		months[r.Month] = true
	}
	t.Logf("%d entries over %d months", len(recs), len(months))
	// Pages of random sizes join into the whole export.
	var joined []byte
	for from := uint64(1); from <= recs[len(recs)-1].Seq; {
		to := from + uint64(rand.IntN(40))
		_, page, _, _ := r4Export(t, h, from, to)
		joined = append(joined, page...)
		from = to + 1
	}
	if !bytes.Equal(joined, body) {
		t.Fatal("pages of the export do not join into the whole export")
	}
	for m := ledger.MakeMonth(2026, 8); m <= ledger.MakeMonth(2027, 2); m = m.Next() {
		got, raw := getStatement(t, h, m.String())
		want := r4Statement(t, recs, m.String())
		want.Closed = got.Closed
		if gj, _ := json.Marshal(got); !bytes.Equal(gj, mustJSON(t, want)) {
			t.Errorf("statement %s:\n got %s\nwant %s", m, raw, mustJSON(t, want))
		}
		if f, ok := frozen[m.String()]; ok && (!got.Closed || !bytes.Equal(f, raw)) {
			t.Errorf("closed month %s:\n got %s\nclose answered %s", m, raw, f)
		}
	}
	// Reconciliation: every hospital, every month and some random ranges.
	type rng struct{ from, to string }
	var ranges []rng
	for m := ledger.MakeMonth(2026, 9); m <= ledger.MakeMonth(2027, 1); m = m.Next() {
		ranges = append(ranges, rng{m.Start().Format("2006-01-02"), m.End().Add(-time.Hour).Format("2006-01-02")})
	}
	for range 5 {
		a := time.Date(2026, 9, 15+rand.IntN(100), 0, 0, 0, 0, time.UTC)
		b := a.AddDate(0, 0, rand.IntN(40))
		ranges = append(ranges, rng{a.Format("2006-01-02"), b.Format("2006-01-02")})
	}
	for _, hosp := range r4Hospitals {
		for _, rg := range ranges {
			rows := r4Rows(recs, hosp, rg.from, rg.to)
			ta := r4Totals(t, h, hosp, rg.from, rg.to, rows)
			if ta.Result != "balanced" || ta.StmtRslt != "0" || len(ta.Differences) != 0 {
				t.Errorf("totals %s %v: %+v", hosp, rg, ta)
			}
			da := r4Details(t, h, hosp, rg.from, rg.to, rows)
			if da.Result != "balanced" || da.Counts.Matched != len(rows) || da.Counts.Gateway != len(rows) {
				t.Errorf("details %s %v: %+v", hosp, rg, da)
			}
			r4Mismatches(t, h, recs, hosp, rg.from, rg.to, rows)
		}
	}
}

// r4Mismatches sends the hospital's rows spoiled in every way a hospital's
// records can be wrong and checks that each is named precisely.
func r4Mismatches(t *testing.T, h *harness, recs []r4Record, hosp, from, to string, rows []r4Row) {
	t.Helper()
	byID := map[string]*r4Record{}
	for i := range recs {
		byID[recs[i].SettlementID] = &recs[i]
	}
	f := money.FormatFen
	// Missing on the hospital's side: each row left out in turn (a
	// reversal left out is a reversal the hospital does not know about).
	for i, r := range rows {
		if i > 3 {
			break
		}
		rest := slices.Delete(slices.Clone(rows), i, i+1)
		da := r4Details(t, h, hosp, from, to, rest)
		e := byID[r.SettlementID]
		want := MissingOnHospital{SettlementID: r.SettlementID, Kind: e.Kind, Reverses: e.Reverses, CommittedAt: e.CommittedAt,
			Gateway: DetailsAmounts{r.Total, r.FundTotal, r.PersonalAccount}}
		if da.Result != "unbalanced" || len(da.MissingOnHospital) != 1 || da.MissingOnHospital[0] != want ||
			len(da.MissingOnGateway) != 0 || len(da.Differences) != 0 || da.Counts.Matched != len(rest) {
			t.Errorf("details %s %s..%s without %s: %+v, want %+v", hosp, from, to, r.SettlementID, da, want)
		}
		ta := r4Totals(t, h, hosp, from, to, rest)
		if ta.StmtRslt != "1" || len(ta.Differences) == 0 || ta.Differences[0].Field != "count" {
			t.Errorf("totals %s %s..%s without %s: %+v", hosp, from, to, r.SettlementID, ta)
		}
		for _, d := range ta.Differences[1:] {
			k := map[string]string{"total": r.Total, "fund_total": r.FundTotal, "personal_account": r.PersonalAccount}[d.Field]
			if d.Difference != k {
				t.Errorf("totals %s without %s: %s differs by %v, want %s", hosp, r.SettlementID, d.Field, d.Difference, k)
			}
		}
	}
	// Amounts that differ: named field by field.
	if len(rows) > 0 {
		bad := slices.Clone(rows)
		bad[0].FundTotal = f(fen(t, bad[0].FundTotal) + 1)
		da := r4Details(t, h, hosp, from, to, bad)
		if len(da.Differences) != 1 || da.Differences[0].SettlementID != rows[0].SettlementID ||
			!slices.Equal(da.Differences[0].Fields, []string{"fund_total"}) || da.Differences[0].Hospital.FundTotal != bad[0].FundTotal ||
			da.Differences[0].Gateway.FundTotal != rows[0].FundTotal || len(da.MissingOnGateway)+len(da.MissingOnHospital) != 0 {
			t.Errorf("details %s with a fen more: %+v", hosp, da)
		}
		ta := r4Totals(t, h, hosp, from, to, bad)
		if ta.StmtRslt != "3" || len(ta.Differences) != 1 || ta.Differences[0].Field != "fund_total" || ta.Differences[0].Difference != "-0.01" {
			t.Errorf("totals %s with a fen more: %+v", hosp, ta)
		}
	}
	// Extra rows: the hospital's own entry of another date (wrong month),
	// another hospital's entry and a made-up one.
	var own, other *r4Record
	for i := range recs {
		r := &recs[i]
		if r.Hospital == hosp && (r.day() < from || r.day() > to) && own == nil {
			own = r
		}
		if r.Hospital != hosp && r.Hospital != "" && other == nil { // not a credit
			other = r
		}
	}
	extra := slices.Clone(rows)
	made := "S" + fmt.Sprintf("%012d", len(recs)+1000)
	extra = append(extra, r4Row{made, "1.00", "0.00", "0.00"})
	want := map[string]MissingOnGateway{made: {SettlementID: made, Reason: "unknown", Hospital: DetailsAmounts{"1.00", "0.00", "0.00"}}}
	for _, r := range []*r4Record{own, other} {
		if r == nil {
			continue
		}
		extra = append(extra, r4Row{r.SettlementID, r.Amounts["total"], r.Amounts["fund_total"], r.Amounts["personal_account"]})
		m := MissingOnGateway{SettlementID: r.SettlementID, Reason: "unknown", Hospital: DetailsAmounts{r.Amounts["total"], r.Amounts["fund_total"], r.Amounts["personal_account"]}}
		if r == own {
			m.Reason, m.CommittedAt = "outside_range", r.CommittedAt
		}
		want[r.SettlementID] = m
	}
	da := r4Details(t, h, hosp, from, to, extra)
	if len(da.MissingOnGateway) != len(want) || len(da.MissingOnHospital) != 0 || len(da.Differences) != 0 || da.Counts.Matched != len(rows) {
		t.Errorf("details %s with extra rows: %+v", hosp, da)
	}
	for _, m := range da.MissingOnGateway {
		if want[m.SettlementID] != m {
			t.Errorf("details %s: %+v, want %+v", hosp, m, want[m.SettlementID])
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The clearing endpoints read their query parameters by name and ignored
// every other one, and of a parameter given twice the first silently won:
// an export asked with the consistency proof's names (?from=2&to=2), or a
// misspelt to_seq, answered the whole ledger; from_seq=3&from_seq=1 exported
// from 3. A parameter the endpoint does not take, or one given twice, is
// now a 400 naming it, as an unknown or repeated key of a body is.
func TestR4ClearingQueryParametersStrict(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, refWorld(t, nil), clk)
	var last *ledger.Entry
	for _, r := range []string{"A", "B", "C"} {
		last = bookEntry(t, h, r, "H3701020001", "370102", "152500", yuan(100, 90, 50, 0, 0, 10))
	}
	for _, tc := range []struct{ path, token, field, code string }{
		{"/v1/clearing/export?from=2&to=2", "tok-clearing", "from", "unknown_field"},
		{"/v1/clearing/export?from_seq=2&to_sq=2", "tok-clearing", "to_sq", "unknown_field"},
		{"/v1/clearing/export?from_seq=3&from_seq=1", "tok-clearing", "from_seq", "duplicate_field"},
		{"/v1/clearing/export?FROM_SEQ=2", "tok-clearing", "FROM_SEQ", "unknown_field"},
		{"/v1/clearing/months/2026-10?month=2026-09", "tok-clearing", "month", "unknown_field"},
		{"/v1/clearing/checkpoint?tree_size=1&tree_size=3", "tok-clearing", "tree_size", "duplicate_field"},
		{"/v1/clearing/checkpoint?size=1", "tok-clearing", "size", "unknown_field"},
		{"/v1/clearing/proofs/inclusion/" + last.SettlementID + "?tree_size=3&tree_size=3", "tok-clearing", "tree_size", "duplicate_field"},
		{"/v1/clearing/proofs/consistency?from=1&to=3&from_seq=2", "tok-clearing", "from_seq", "unknown_field"},
		{"/v1/clearing/proofs/consistency?from=1&from=2", "tok-clearing", "from", "duplicate_field"},
		{"/v1/settlements/" + last.SettlementID + "/proof?treesize=2", "tok-H3701020001", "treesize", "unknown_field"},
	} {
		status, body := h.do("GET", tc.path, tc.token, nil)
		var a answer
		_ = json.Unmarshal(body, &a) // an export answers NDJSON
		if status != 400 || a.Error == nil || a.Error.Field != tc.field || a.Error.Code != tc.code {
			t.Errorf("GET %s: %d %.200s, want 400 %s naming %s", tc.path, status, body, tc.code, tc.field)
		}
	}
	status, body := h.do("POST", "/v1/clearing/months/2026-09/close?force=1", "tok-clearing", nil)
	if a := decodeAnswer(t, body); status != 400 || a.Error == nil || a.Error.Field != "force" {
		t.Errorf("close with ?force=1: %d %s", status, body)
	}
	if c, ok, _ := h.db.Closed(ledger.MakeMonth(2026, 9)); ok {
		t.Errorf("a refused close closed the month: %+v", c)
	}
	// What the endpoints take still works.
	for _, path := range []string{"/v1/clearing/export?from_seq=2&to_seq=3", "/v1/clearing/export?", "/v1/clearing/checkpoint?tree_size=2",
		"/v1/clearing/proofs/consistency?from=1&to=3", "/v1/clearing/months/2026-10"} {
		if status, body := h.do("GET", path, "tok-clearing", nil); status != 200 {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
}

// Statements and reconciliations read while settlements commit are each
// exactly the prefix of the ledger they name (ledger_seq).
func TestR4ClearingReadsWhileWritesContinue(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-31T15:59:59Z") // one second before November (UTC+8)
	h := newClockHarness(t, refWorld(t, r4Persons()), clk)
	w := &r4Workload{t: t, h: h, clk: clk}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a, ok := w.settleWith(rng, r4Hospitals[g], fmt.Sprintf("RW-%d-%d", g, i))
				if ok && i%3 == 0 {
					h.do("POST", "/v1/settlements/"+a.SettlementID+"/reversal", "tok-"+r4Hospitals[g], []byte(fmt.Sprintf(`{"request_id":"RWR-%d-%d","reason":"r"}`, g, i)))
				}
			}
		}()
	}
	type seen struct {
		st  *Statement
		ta  TotalsAnswer
		hos string
	}
	var reads []seen
	for i := range 40 {
		if i == 10 {
			clk.set("2026-10-31T16:00:01Z")
		}
		m := "2026-10"
		if i%2 == 1 {
			m = "2026-11"
		}
		st, _ := getStatement(t, h, m)
		hosp := r4Hospitals[i%len(r4Hospitals)]
		status, out := h.do("POST", "/v1/reconciliation/totals", "tok-"+hosp,
			[]byte(`{"from":"2026-10-31","to":"2026-11-01","count":0,"total":"0","fund_total":"0","personal_account":"0"}`))
		if status != 200 {
			t.Fatalf("totals: %d %s", status, out)
		}
		var ta TotalsAnswer
		json.Unmarshal(out, &ta)
		reads = append(reads, seen{st, ta, hosp})
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	recs, _, _, _ := r4Export(t, h, 0, 0)
	prefix := func(seq uint64) []r4Record {
		n := sort.Search(len(recs), func(i int) bool { return recs[i].Seq > seq })
		return recs[:n]
	}
	for _, r := range reads {
		want := r4Statement(t, prefix(r.st.LedgerSeq), r.st.Month)
		if !bytes.Equal(mustJSON(t, r.st), mustJSON(t, want)) {
			t.Errorf("statement %s at %d:\n got %s\nwant %s", r.st.Month, r.st.LedgerSeq, mustJSON(t, r.st), mustJSON(t, want))
		}
		rows := r4Rows(prefix(r.ta.LedgerSeq), r.hos, "2026-10-31", "2026-11-01")
		var tot int64
		for _, x := range rows {
			tot += fen(t, x.Total)
		}
		if r.ta.Gateway.Count != int64(len(rows)) || r.ta.Gateway.Total != money.FormatFen(tot) {
			t.Errorf("totals of %s at %d: %+v, want %d rows, total %s", r.hos, r.ta.LedgerSeq, r.ta.Gateway, len(rows), money.FormatFen(tot))
		}
	}
	t.Logf("%d entries, %d reads", len(recs), len(reads))
}
