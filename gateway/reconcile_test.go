package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"medgate/engine/money"
	"medgate/ledger"
)

func fen(t *testing.T, s string) int64 {
	t.Helper()
	neg := strings.HasPrefix(s, "-")
	v, err := money.Parse([]byte(strings.TrimPrefix(s, "-")), 2)
	if err != nil {
		t.Fatalf("amount %q: %v", s, err)
	}
	if neg {
		return -v
	}
	return v
}

func TestReconciliation(t *testing.T) {
	clk := &clock{}
	clk.set("2026-11-02T02:00:00Z")
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {empActive, resident}}), clk)
	settle := func(hospital, req, person string) answer {
		t.Helper()
		status, body := h.do("POST", "/v1/settlements", "tok-"+hospital, settleBody(req, person, "371600", chronicVisit, oneLine))
		if status != 200 {
			t.Fatalf("settle %s: %d %s", req, status, body)
		}
		return decodeAnswer(t, body)
	}
	// H1: two settlements on 2 November, one reversed on 3 November; one
	// more on 4 November. H2: one settlement on 2 November.
	const h1, h2 = "H3716020001", "H3716210001"
	a := settle(h1, "R-1", "EMP1")
	b := settle(h1, "R-2", "RES1")
	other := settle(h2, "R-3", "EMP1")
	clk.set("2026-11-02T17:00:00Z") // 01:00 on 3 November, UTC+8
	status, body := h.do("POST", "/v1/settlements/"+b.SettlementID+"/reversal", "tok-"+h1, []byte(`{"request_id":"R-2-R","reason":"duplicate"}`))
	if status != 200 {
		t.Fatalf("reversal: %d %s", status, body)
	}
	rev := decodeAnswer(t, body)
	clk.set("2026-11-04T02:00:00Z")
	later := settle(h1, "R-4", "EMP1")

	sum := func(k string, as ...answer) int64 {
		var s int64
		for _, a := range as {
			s += fen(t, a.Amounts[k])
		}
		return s
	}
	rows := []answer{a, b, rev} // H1's rows from 2 to 3 November
	totalsBody := func(count int, total, fund, acct int64) []byte {
		return []byte(fmt.Sprintf(`{"from":"2026-11-02","to":"2026-11-03","count":%d,"total":%q,"fund_total":%q,"personal_account":%q}`,
			count, money.FormatFen(total), money.FormatFen(fund), money.FormatFen(acct)))
	}
	totals := func(token string, body []byte) TotalsAnswer {
		t.Helper()
		status, resp := h.do("POST", "/v1/reconciliation/totals", token, body)
		if status != 200 {
			t.Fatalf("totals: %d %s", status, resp)
		}
		var ta TotalsAnswer
		if err := json.Unmarshal(resp, &ta); err != nil {
			t.Fatal(err)
		}
		return ta
	}
	T, F, A := sum("total", rows...), sum("fund_total", rows...), sum("personal_account", rows...)
	if T != fen(t, a.Amounts["total"]) {
		t.Fatalf("test: the reversal should cancel b: %d", T)
	}

	// 对总账: balanced; the reversal is a row of its own, negative.
	ta := totals("tok-"+h1, totalsBody(3, T, F, A))
	if ta.Result != "balanced" || ta.StmtRslt != "0" || len(ta.Differences) != 0 || ta.Gateway.Count != 3 ||
		*ta.Gateway.Settlements != 2 || *ta.Gateway.Reversals != 1 || ta.LedgerSeq != later.Seq {
		t.Fatalf("balanced totals: %+v", ta)
	}
	// One fen off in the fund total: the field, both values and the difference.
	ta = totals("tok-"+h1, totalsBody(3, T, F+1, A))
	if ta.Result != "unbalanced" || ta.StmtRslt != "3" || len(ta.Differences) != 1 {
		t.Fatalf("unbalanced totals: %+v", ta)
	}
	if d := ta.Differences[0]; d.Field != "fund_total" || d.Gateway != money.FormatFen(F) || d.Hospital != money.FormatFen(F+1) || d.Difference != "-0.01" {
		t.Fatalf("difference: %+v", d)
	}
	// The hospital forgot the reversal: fewer rows on its side.
	ta = totals("tok-"+h1, totalsBody(2, sum("total", a, b), sum("fund_total", a, b), sum("personal_account", a, b)))
	if ta.StmtRslt != "1" || len(ta.Differences) < 2 || ta.Differences[0].Field != "count" || ta.Differences[1].Field != "total" {
		t.Fatalf("missing reversal: %+v", ta)
	}
	// H2 sees only its own settlement.
	ta = totals("tok-"+h2, totalsBody(1, sum("total", other), sum("fund_total", other), sum("personal_account", other)))
	if ta.Result != "balanced" || ta.Gateway.Count != 1 {
		t.Fatalf("H2's totals: %+v", ta)
	}

	// 对明细账.
	row := func(id string, total, fund, acct string) string {
		return fmt.Sprintf(`{"settlement_id":%q,"total":%q,"fund_total":%q,"personal_account":%q}`, id, total, fund, acct)
	}
	details := func(token string, rows ...string) DetailsAnswer {
		t.Helper()
		body := `{"from":"2026-11-02","to":"2026-11-03","settlements":[` + strings.Join(rows, ",") + `]}`
		status, resp := h.do("POST", "/v1/reconciliation/details", token, []byte(body))
		if status != 200 {
			t.Fatalf("details: %d %s", status, resp)
		}
		var da DetailsAnswer
		if err := json.Unmarshal(resp, &da); err != nil {
			t.Fatal(err)
		}
		return da
	}
	am := func(x answer) (string, string, string) {
		return x.Amounts["total"], x.Amounts["fund_total"], x.Amounts["personal_account"]
	}
	t1, f1, c1 := am(a)
	t2, f2, c2 := am(b)
	tr, fr, cr := am(rev)
	da := details("tok-"+h1, row(a.SettlementID, t1, f1, c1), row(b.SettlementID, t2, f2, c2), row(rev.SettlementID, tr, fr, cr))
	if da.Result != "balanced" || da.Counts.Matched != 3 || da.Counts.Gateway != 3 {
		t.Fatalf("balanced details: %+v", da)
	}
	if !strings.HasPrefix(tr, "-") {
		t.Fatalf("the reversal's total %s is not negative", tr)
	}
	// The reversal left out, a's total wrong, H2's settlement and a later one
	// of H1's claimed, and an unknown id.
	da = details("tok-"+h1, row(a.SettlementID, "1.00", f1, c1), row(b.SettlementID, t2, f2, c2),
		row(other.SettlementID, "5.00", "0.00", "0.00"), row(later.SettlementID, "5.00", "0.00", "0.00"),
		row("S999999999999", "1.00", "0.00", "0.00"))
	if da.Result != "unbalanced" || da.Counts.Matched != 1 || da.Counts.Differing != 1 || da.Counts.MissingOnGateway != 3 || da.Counts.MissingOnHospital != 1 {
		t.Fatalf("unbalanced details: %+v", da)
	}
	if d := da.Differences[0]; d.SettlementID != a.SettlementID || len(d.Fields) != 1 || d.Fields[0] != "total" ||
		d.Gateway.Total != t1 || d.Hospital.Total != "1.00" {
		t.Fatalf("difference: %+v", d)
	}
	if m := da.MissingOnHospital[0]; m.SettlementID != rev.SettlementID || m.Kind != "reversal" || m.Reverses != b.SettlementID || m.Gateway.Total != tr {
		t.Fatalf("missing on the hospital's side: %+v", m)
	}
	mg := da.MissingOnGateway
	// Another hospital's settlement is as unknown as a made-up id.
	if mg[0].SettlementID != other.SettlementID || mg[0].Reason != "unknown" || mg[0].CommittedAt != "" ||
		mg[1].SettlementID != later.SettlementID || mg[1].Reason != "outside_range" || !strings.HasPrefix(mg[1].CommittedAt, "2026-11-04T10:00:00") ||
		mg[2].Reason != "unknown" || mg[2].Hospital.Total != "1.00" {
		t.Fatalf("missing on the gateway's side: %+v", mg)
	}
	// H2 sees nothing of H1's.
	da = details("tok-"+h2, row(a.SettlementID, t1, f1, c1))
	if da.Counts.Gateway != 1 || da.MissingOnGateway[0].Reason != "unknown" || da.MissingOnHospital[0].SettlementID != other.SettlementID {
		t.Fatalf("H2's details: %+v", da)
	}

	// Refusals.
	for _, c := range []struct {
		path, body, field string
		status            int
	}{
		{"totals", `{"from":"2026-11-03","to":"2026-11-02","count":0,"total":"0","fund_total":"0","personal_account":"0"}`, "to", 400},
		{"totals", `{"from":"2026-11-02","to":"2026-11-03","total":"0","fund_total":"0","personal_account":"0"}`, "count", 400},
		{"totals", `{"from":"2026-11-02","to":"2026-11-03","count":1,"total":"1.001","fund_total":"0","personal_account":"0"}`, "total", 400},
		{"totals", `{"from":"2025-01-01","to":"2026-11-03","count":1,"total":"1","fund_total":"0","personal_account":"0"}`, "to", 400},
		{"details", `{"from":"2026-11-02","to":"2026-11-03","settlements":[` + row("S1", "1", "1", "1") + `,` + row("S1", "1", "1", "1") + `]}`, "settlements[1].settlement_id", 400},
		{"details", `{"from":"2026-11-02","to":"2026-11-03"}`, "settlements", 400},
		// A key twice is refused (which one wins differs between parsers),
		// and so is anything after the object.
		{"details", `{"from":"2026-11-02","to":"2026-11-03","settlements":[` + row("S1", "1", "1", "1") + `],"settlements":[]}`, "settlements", 400},
		{"details", `{"from":"2026-11-02","to":"2026-11-03","settlements":[` + row("S1", "1", "1", "1") + `,{"settlement_id":"S2","settlement_id":"S3"}]}`, "settlements[1].settlement_id", 400},
		{"totals", `{"from":"2026-11-02","to":"2026-11-03","count":1,"total":"1","fund_total":"0","personal_account":"0","count":5}`, "count", 400},
		{"totals", `{"from":"2026-11-02","to":"2026-11-03","count":1,"total":"1","fund_total":"0","personal_account":"0"}{"x":1}`, "", 400},
	} {
		status, body := h.do("POST", "/v1/reconciliation/"+c.path, "tok-"+h1, []byte(c.body))
		if a := decodeAnswer(t, body); status != c.status || a.Error == nil || a.Error.Field != c.field {
			t.Errorf("%s %s = %d %s, want %d on %s", c.path, c.body, status, body, c.status, c.field)
		}
	}
	if status, _ := h.do("POST", "/v1/reconciliation/totals", "tok-clearing", totalsBody(0, 0, 0, 0)); status != 403 {
		t.Fatalf("the clearing token reconciles a hospital: %d", status)
	}
}

// A date past 2262 has no Unix time in int64 nanoseconds: the range's
// bounds wrapped around 2^64 ns (584 years) and a reconciliation of a day
// in 2611 counted the hospital's rows of 2026.
func TestReconciliationFarDatesDoNotWrap(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, refWorld(t, nil), clk)
	e := bookEntry(t, h, "A", "H3701020001", "370102", "152500", yuan(100, 90, 50, 0, 0, 10))
	// The day whose start, in int64 nanoseconds, wraps to e's commit time.
	at := time.Unix(0, e.CommittedAt).In(ledger.ChinaTime)
	far := time.Unix(at.Unix()+18446744073, int64(at.Nanosecond())+709551616).In(ledger.ChinaTime)
	day := far.Format("2006-01-02")
	if got := time.Date(far.Year(), far.Month(), far.Day(), 0, 0, 0, 0, ledger.ChinaTime).UnixNano(); got > e.CommittedAt || got+24*3600e9 <= e.CommittedAt {
		t.Fatalf("test: %s starts at %d, the entry is at %d", day, got, e.CommittedAt)
	}
	body := fmt.Sprintf(`{"from":%q,"to":%q,"count":0,"total":"0","fund_total":"0","personal_account":"0"}`, day, day)
	status, resp := h.do("POST", "/v1/reconciliation/totals", "tok-H3701020001", []byte(body))
	var ta TotalsAnswer
	if err := json.Unmarshal(resp, &ta); err != nil || status != 200 || ta.Gateway.Count != 0 || ta.Result != "balanced" {
		t.Fatalf("totals of %s: %d %s", day, status, resp)
	}
}
