package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp/fasthttputil"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// clock is a settable clock for the harness (ledger commit times and the
// clearing endpoints).
type clock struct{ ns atomic.Int64 }

func (c *clock) set(s string) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	c.ns.Store(t.UnixNano())
}

func (c *clock) now() time.Time { return time.Unix(0, c.ns.Load()) }

// newClockHarness is newHarness with the clock clk.
// The clock is set before the first start: the world's opening balances
// are entries, stamped by it, and commit times never go back.
func newClockHarness(t *testing.T, w *World, clk *clock) *harness {
	t.Helper()
	h := &harness{tb: t, fs: newMemFS(), dir: "ledger", world: w, policies: &engine.Policies{}, now: clk.now}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)
	return h
}

// bookEntry appends a settlement with the given amounts (in fen) straight
// to the ledger, so that a statement's arithmetic can be checked by hand.
func bookEntry(t *testing.T, h *harness, req, hospital, treating, insured string, a ledger.Amounts) *ledger.Entry {
	t.Helper()
	e := &ledger.Entry{Kind: ledger.KindSettlement, RequestID: req, BodyHash: sha256.Sum256([]byte(req)),
		Hospital: hospital, TreatingRegion: treating, InsuredRegion: insured, PersonID: "P-" + req,
		Date: abi.MakeDate(2026, 10, 20), VisitType: abi.VisitOutpatient, PolicyVersion: "v1", Amounts: a}
	if err := h.db.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return e
}

func bookReversal(t *testing.T, h *harness, req string, orig *ledger.Entry) *ledger.Entry {
	t.Helper()
	e := &ledger.Entry{Kind: ledger.KindReversal, Reverses: orig.SettlementID, RequestID: req, BodyHash: sha256.Sum256([]byte(req)),
		Hospital: orig.Hospital, TreatingRegion: orig.TreatingRegion, InsuredRegion: orig.InsuredRegion, PersonID: orig.PersonID,
		Date: orig.Date, VisitType: orig.VisitType, PolicyVersion: orig.PolicyVersion,
		Amounts: orig.Amounts.Negated()}
	if err := h.db.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return e
}

// yuan builds amounts from yuan: total, eligible, basic fund, serious
// illness, medical assistance, personal account (fund total and cash follow).
func yuan(total, eligible, basic, serious, assistance, acct int64) ledger.Amounts {
	fund := basic + serious + assistance
	return ledger.Amounts{Total: total * 100, Eligible: eligible * 100, BasicFund: basic * 100, SeriousIllness: serious * 100,
		MedicalAssistance: assistance * 100, FundTotal: fund * 100, PersonalAccount: acct * 100,
		Cash: (total - fund - acct) * 100, PersonalTotal: (total - fund) * 100}
}

func getStatement(t *testing.T, h *harness, month string) (*Statement, []byte) {
	t.Helper()
	status, body := h.do("GET", "/v1/clearing/months/"+month, "tok-clearing", nil)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", month, status, body)
	}
	var st Statement
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return &st, body
}

func TestStatementArithmetic(t *testing.T) {
	clk := &clock{}
	clk.set("2026-11-03T02:00:00Z")
	h := newClockHarness(t, refWorld(t, nil), clk)

	// 2026-10-31T16:30Z is 00:30 on 1 November in UTC+8: November.
	clk.set("2026-10-31T16:30:00Z")
	bookEntry(t, h, "A", "H3701020001", "370102", "152500", yuan(1000, 900, 500, 100, 50, 200))
	clk.set("2026-11-02T01:00:00Z")
	b := bookEntry(t, h, "B", "H3701020001", "370102", "152500", yuan(300, 300, 200, 0, 0, 0))
	bookReversal(t, h, "B-R", b)
	bookEntry(t, h, "C", "H1525020001", "152502", "370100", yuan(400, 380, 300, 0, 0, 50))
	bookEntry(t, h, "D", "H3716020001", "371602", "371600", yuan(200, 200, 120, 0, 0, 30))
	e := bookEntry(t, h, "E", "H4401030001", "440103", "152500", yuan(100, 90, 60, 0, 0, 10))
	// October has nothing: the only entry near its end belongs to November.
	if oct, _ := getStatement(t, h, "2026-10"); len(oct.Pairs) != 0 || oct.LedgerSeq != 0 {
		t.Fatalf("October: %+v", oct)
	}
	st, _ := getStatement(t, h, "2026-11")
	if st.Month != "2026-11" || st.Closed || st.LedgerSeq != e.Seq || st.LedgerHash != hex.EncodeToString(e.Hash[:]) {
		t.Fatalf("header: %+v", st)
	}
	// By hand: A + B − B for 152500→370102; fund totals A 650, C 300, D 120, E 60.
	want := []StatementPair{
		{InsuredRegion: "152500", TreatingRegion: "370102", CrossProvince: true, Settlements: 2, Reversals: 1,
			Total: "1000.00", Eligible: "900.00", BasicFund: "500.00", SeriousIllness: "100.00", MedicalAssistance: "50.00",
			FundTotal: "650.00", PersonalAccount: "200.00", Cash: "150.00", ClearingAmount: "850.00"},
		{InsuredRegion: "152500", TreatingRegion: "440103", CrossProvince: true, Settlements: 1,
			Total: "100.00", Eligible: "90.00", BasicFund: "60.00", SeriousIllness: "0.00", MedicalAssistance: "0.00",
			FundTotal: "60.00", PersonalAccount: "10.00", Cash: "30.00", ClearingAmount: "70.00"},
		{InsuredRegion: "370100", TreatingRegion: "152502", CrossProvince: true, Settlements: 1,
			Total: "400.00", Eligible: "380.00", BasicFund: "300.00", SeriousIllness: "0.00", MedicalAssistance: "0.00",
			FundTotal: "300.00", PersonalAccount: "50.00", Cash: "50.00", ClearingAmount: "350.00"},
		{InsuredRegion: "371600", TreatingRegion: "371602", CrossProvince: false, Settlements: 1,
			Total: "200.00", Eligible: "200.00", BasicFund: "120.00", SeriousIllness: "0.00", MedicalAssistance: "0.00",
			FundTotal: "120.00", PersonalAccount: "30.00", Cash: "50.00", ClearingAmount: "150.00"},
	}
	if len(st.Pairs) != len(want) {
		t.Fatalf("pairs: %+v", st.Pairs)
	}
	for i := range want {
		if st.Pairs[i] != want[i] {
			t.Fatalf("pair %d:\n got %+v\nwant %+v", i, st.Pairs[i], want[i])
		}
	}
	// Cross-province only (371600→371602 stays inside Shandong):
	// 150000 receives 350 (370100's insured at 152502), pays 850 + 70;
	// 370000 receives 850, pays 350; 440000 receives 70.
	wantProv := []StatementProvince{
		{Province: "150000", Receivable: "350.00", Payable: "920.00", Net: "-570.00"},
		{Province: "370000", Receivable: "850.00", Payable: "350.00", Net: "500.00"},
		{Province: "440000", Receivable: "70.00", Payable: "0.00", Net: "70.00"},
	}
	if len(st.Provinces) != len(wantProv) {
		t.Fatalf("provinces: %+v", st.Provinces)
	}
	var sum int64
	for i := range wantProv {
		if st.Provinces[i] != wantProv[i] {
			t.Fatalf("province %d:\n got %+v\nwant %+v", i, st.Provinces[i], wantProv[i])
		}
		n, _ := money.Parse([]byte(strings.TrimPrefix(st.Provinces[i].Net, "-")), 2)
		if strings.HasPrefix(st.Provinces[i].Net, "-") {
			n = -n
		}
		sum += n
	}
	if sum != 0 {
		t.Fatalf("nets sum to %d fen", sum)
	}
}

func TestCloseMonthFreezes(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, refWorld(t, map[string][]string{"371600": {empActive, resident}}), clk)
	settle := func(req, person string) answer {
		t.Helper()
		status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody(req, person, "371600", chronicVisit, oneLine))
		if status != 200 {
			t.Fatalf("settle %s: %d %s", req, status, body)
		}
		return decodeAnswer(t, body)
	}
	s1 := settle("C-1", "EMP1")
	s2 := settle("C-2", "RES1")

	// Not over yet: 409, nothing stored.
	status, body := h.do("POST", "/v1/clearing/months/2026-10/close", "tok-clearing", nil)
	if a := decodeAnswer(t, body); status != 409 || a.Error.Code != "month_not_over" {
		t.Fatalf("closing October in October: %d %s", status, body)
	}
	// Roles, and a malformed month.
	if status, _ := h.do("GET", "/v1/clearing/months/2026-10", "tok-H3716020001", nil); status != 403 {
		t.Fatalf("a hospital reads the statement: %d", status)
	}
	if status, _ := h.do("GET", "/v1/clearing/months/2026-10", "", nil); status != 401 {
		t.Fatalf("no token: %d", status)
	}
	if status, body := h.do("GET", "/v1/clearing/months/2026-13", "tok-clearing", nil); status != 400 {
		t.Fatalf("month 13: %d %s", status, body)
	}

	open, openBody := getStatement(t, h, "2026-10")
	if len(open.Pairs) != 1 || open.Pairs[0].Settlements != 2 || open.LedgerSeq != s2.Seq {
		t.Fatalf("October so far: %s", openBody)
	}
	// The pair is the sum of the two answers.
	var total, fund, acct int64
	for _, a := range []answer{s1, s2} {
		for k, dst := range map[string]*int64{"total": &total, "fund_total": &fund, "personal_account": &acct} {
			v, _ := money.Parse([]byte(a.Amounts[k]), 2)
			*dst += v
		}
	}
	p := open.Pairs[0]
	if p.Total != money.FormatFen(total) || p.FundTotal != money.FormatFen(fund) || p.PersonalAccount != money.FormatFen(acct) ||
		p.ClearingAmount != money.FormatFen(fund+acct) || p.CrossProvince || len(open.Provinces) != 0 {
		t.Fatalf("October pair %+v, want total %d fund %d acct %d", p, total, fund, acct)
	}

	// November: close October.
	clk.set("2026-10-31T16:00:00Z")
	status, frozen := h.do("POST", "/v1/clearing/months/2026-10/close", "tok-clearing", nil)
	if status != 200 {
		t.Fatalf("close: %d %s", status, frozen)
	}
	if want := bytes.Replace(openBody, []byte(`"closed":false`), []byte(`"closed":true`), 1); !bytes.Equal(frozen, want) {
		t.Fatalf("frozen statement differs from the open one:\n%s\n%s", frozen, openBody)
	}
	// Later settlements and a reversal of an October settlement go to
	// November; October stays byte for byte, also across a restart.
	s3 := settle("C-3", "EMP1")
	status, body = h.do("POST", "/v1/settlements/"+s1.SettlementID+"/reversal", "tok-H3716020001", []byte(`{"request_id":"C-1-R","reason":"wrong bill"}`))
	if status != 200 {
		t.Fatalf("reversal: %d %s", status, body)
	}
	rev := decodeAnswer(t, body)
	check := func(when string) {
		t.Helper()
		if _, got := getStatement(t, h, "2026-10"); !bytes.Equal(got, frozen) {
			t.Fatalf("%s: October changed:\n%s\n%s", when, got, frozen)
		}
		if status, again := h.do("POST", "/v1/clearing/months/2026-10/close", "tok-clearing", nil); status != 200 || !bytes.Equal(again, frozen) {
			t.Fatalf("%s: closing again = %d %s", when, status, again)
		}
		nov, _ := getStatement(t, h, "2026-11")
		if len(nov.Pairs) != 1 || nov.Pairs[0].Settlements != 1 || nov.Pairs[0].Reversals != 1 || nov.LedgerSeq != rev.Seq {
			t.Fatalf("%s: November: %+v", when, nov)
		}
		t3, _ := money.Parse([]byte(s3.Amounts["total"]), 2)
		t1, _ := money.Parse([]byte(s1.Amounts["total"]), 2)
		if nov.Pairs[0].Total != money.FormatFen(t3-t1) {
			t.Fatalf("%s: November total %s, want %s − %s", when, nov.Pairs[0].Total, s3.Amounts["total"], s1.Amounts["total"])
		}
	}
	check("after the close")
	h.restart()
	check("after a restart")
}

// An export whose from_seq is past its to_seq asks for nothing that can
// exist: refused, like a consistency proof's from past its to, rather than
// answered as an empty ledger.
func TestExportRefusesAnInvertedRange(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, refWorld(t, nil), clk)
	for _, r := range []string{"A", "B", "C"} {
		bookEntry(t, h, r, "H3701020001", "370102", "152500", yuan(100, 90, 50, 0, 0, 10))
	}
	status, body := h.do("GET", "/v1/clearing/export?from_seq=3&to_seq=2", "tok-clearing", nil)
	if a := decodeAnswer(t, body); status != 400 || a.Error == nil || a.Error.Field != "to_seq" {
		t.Fatalf("export 3..2: %d %s, want 400 naming to_seq", status, body)
	}
	// Past the head is no error: nothing new yet.
	status, body = h.do("GET", "/v1/clearing/export?from_seq=4", "tok-clearing", nil)
	if status != 200 || len(body) != 0 {
		t.Fatalf("export from 4: %d %s", status, body)
	}
	status, body = h.do("GET", "/v1/clearing/export?from_seq=2&to_seq=2", "tok-clearing", nil)
	if status != 200 || bytes.Count(body, []byte("\n")) != 1 {
		t.Fatalf("export 2..2: %d %s", status, body)
	}
}

// The server's write timeout bounds a whole response, and an export
// streams for as long as the ledger is big: a full export of a large
// ledger took longer than the timeout and was cut mid-body. An export gets
// the timeout plus a bounded time per entry, so a client reading at a
// steady pace receives every entry.
func TestExportOutlivesTheWriteTimeout(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, refWorld(t, nil), clk)
	const n = 60
	for i := range n {
		bookEntry(t, h, fmt.Sprint("E", i), "H3701020001", "370102", "152500", yuan(100, 90, 50, 0, 0, 10))
	}
	principals, err := NewPrincipals(h.world.Principals)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerConfig{DB: h.db, Versions: h.versions, Principals: principals, Logger: zerolog.Nop()})
	srv.http.WriteTimeout = 150 * time.Millisecond // the whole body takes longer to read
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln)
	defer func() { srv.Shutdown(context.Background()); ln.Close() }()

	conn, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /v1/clearing/export HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-clearing\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// A client that reads steadily, 1 KiB every 4 ms (≈ 250 KiB/s).
	var got []byte
	buf := make([]byte, 1024)
	began := time.Now()
	for !bytes.HasSuffix(got, []byte("\r\n0\r\n\r\n")) {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			break
		}
		time.Sleep(4 * time.Millisecond)
	}
	took := time.Since(began)
	// The n settlements and the world's opening balances.
	if lines := bytes.Count(got, []byte(`"prev_hash"`)); uint64(lines) != h.head() || !bytes.HasSuffix(got, []byte("\r\n0\r\n\r\n")) {
		t.Fatalf("export read in %v: %d of %d entries, complete %v", took, lines, h.head(), bytes.HasSuffix(got, []byte("\r\n0\r\n\r\n")))
	}
	if took < srv.http.WriteTimeout {
		t.Fatalf("the export was read in %v, within the write timeout: the test proves nothing", took)
	}

	// A client that stops reading is cut off once the write timeout has
	// passed without progress, however long its range would take.
	stalled, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write([]byte("GET /v1/clearing/export HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-clearing\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := stalled.Read(buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * srv.http.WriteTimeout) // 600 ms: within 150 ms + 10 ms an entry
	var rest []byte
	for {
		stalled.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := stalled.Read(buf)
		rest = append(rest, buf[:k]...)
		if err != nil {
			break
		}
	}
	if bytes.HasSuffix(rest, []byte("\r\n0\r\n\r\n")) {
		t.Fatalf("an export whose client stopped reading for %v went on to its end", 4*srv.http.WriteTimeout)
	}
}

// A replay whose from_seq is past its to_seq checks nothing: it answered
// "identical": true, which a clearing house reads as a verified range.
func TestReplayRefusesAnInvertedRange(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, refWorld(t, nil), clk)
	for _, r := range []string{"A", "B", "C"} {
		bookEntry(t, h, r, "H3701020001", "370102", "152500", yuan(100, 90, 50, 0, 0, 10))
	}
	for path, token := range map[string]string{"/v1/ledger/replay": "tok-clearing", "/v1/regions/152500/replay": "tok-region-152500"} {
		status, body := h.do("POST", path, token, []byte(`{"from_seq":3,"to_seq":2}`))
		if a := decodeAnswer(t, body); status != 400 || a.Error == nil || a.Error.Field != "to_seq" {
			t.Fatalf("%s 3..2: %d %s, want 400 naming to_seq", path, status, body)
		}
	}
}

// A month before 1678 has no Unix time in int64 nanoseconds: its end
// wrapped around 2^64 ns (584 years), so the ledger said 1600-01 was not
// over, and closed 1442's months at a wrapped end inside 2026, after which
// the audit reported the 2026 entries as booked into a closed month.
func TestCloseMonthsBeforeNanosecondTime(t *testing.T) {
	clk := &clock{}
	clk.set("2026-10-10T02:00:00Z")
	h := newClockHarness(t, refWorld(t, nil), clk)
	e := bookEntry(t, h, "A", "H3701020001", "370102", "152500", yuan(100, 90, 50, 0, 0, 10))
	clk.set("2026-11-20T02:00:00Z")
	now := clk.now().UnixNano()
	var wrapped ledger.Month
	for m := ledger.MakeMonth(1441, 1); m < ledger.MakeMonth(1444, 1); m = m.Next() {
		if end := m.End().UnixNano(); end > e.CommittedAt && end <= now {
			wrapped = m
		}
	}
	if wrapped == 0 {
		t.Fatal("test: no month of 1441-1443 wraps into the ledger's dates")
	}
	for _, m := range []string{"1600-01", wrapped.String()} {
		status, body := h.do("POST", "/v1/clearing/months/"+m+"/close", "tok-clearing", nil)
		var st Statement
		if err := json.Unmarshal(body, &st); status != 200 || err != nil || !st.Closed || st.LedgerSeq != 0 || len(st.Pairs) != 0 {
			t.Fatalf("closing %s: %d %s", m, status, body)
		}
	}
	rep, err := h.db.Audit(nil)
	if err != nil || !rep.OK() {
		t.Fatalf("audit after closing %s: %v %v", wrapped, err, rep.Err())
	}
}
