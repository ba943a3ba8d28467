package gateway

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"medgate/engine/abi"
	"medgate/engine/money"
)

// encodeSettle writes r back as a request body, in a canonical way.
func encodeSettle(r *SettleRequest) []byte {
	str := func(b []byte, s string) []byte {
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	date := func(b []byte, d abi.Date) []byte { return append(append(append(b, '"'), AppendDate(nil, d)...), '"') }
	var b []byte
	b = append(b, '{')
	if r.RequestID != "" {
		b = str(append(b, `"request_id":`...), r.RequestID)
		b = append(b, ',')
	}
	b = str(append(b, `"person":{"id":`...), r.PersonID)
	b = str(append(b, `,"insured_region":`...), r.InsuredRegion)
	v := &r.Visit
	var typ string
	for name, t := range visitTypes {
		if t == v.Type {
			typ = name
		}
	}
	b = str(append(b, `},"visit":{"type":`...), typ)
	if v.AdmittedOn != 0 {
		b = date(append(b, `,"admitted_on":`...), v.AdmittedOn)
	}
	if v.DischargedOn != 0 {
		b = date(append(b, `,"discharged_on":`...), v.DischargedOn)
	}
	if v.VisitDate != 0 {
		b = date(append(b, `,"visit_date":`...), v.VisitDate)
	}
	b = strconv.AppendBool(append(b, `,"emergency":`...), v.Emergency)
	if v.BirthOrder != 0 {
		b = strconv.AppendInt(append(b, `,"birth_order":`...), int64(v.BirthOrder), 10)
	}
	b = append(b, `,"diagnoses":[`...)
	for i, d := range v.Diagnoses {
		if i > 0 {
			b = append(b, ',')
		}
		b = str(b, d)
	}
	b = strconv.AppendBool(append(b, `]},"use_personal_account":`...), r.UseAccount)
	b = append(b, `,"items":[`...)
	for i := range r.Items {
		it := &r.Items[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = str(append(b, `{"code":`...), it.Code)
		b = append(money.AppendScaled(append(b, `,"unit_price":"`...), it.UnitPrice, 6), '"')
		b = append(money.AppendScaled(append(b, `,"quantity":"`...), it.Quantity, 4), '"')
		b = append(money.AppendScaled(append(b, `,"amount":"`...), it.Amount, 2), '"')
		if len(it.TraceCodes) > 0 {
			b = append(b, `,"trace_codes":[`...)
			for j, c := range it.TraceCodes {
				if j > 0 {
					b = append(b, ',')
				}
				b = str(b, c)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func validIdent(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// checkSettleRequest checks everything decodeSettle promises of a request
// it accepts.
func checkSettleRequest(t *testing.T, r *SettleRequest, quote bool) {
	t.Helper()
	if (!quote || r.RequestID != "") && !validIdent(r.RequestID) {
		t.Fatalf("request_id %q accepted", r.RequestID)
	}
	if !validIdent(r.PersonID) || !isRegion(r.InsuredRegion) {
		t.Fatalf("person %q / region %q accepted", r.PersonID, r.InsuredRegion)
	}
	v := r.Visit
	if e := validateVisit(&v); e != nil || !sameVisit(v, r.Visit) {
		t.Fatalf("visit accepted that does not validate again: %v %+v", e, r.Visit)
	}
	if r.Date() == 0 || len(v.Diagnoses) > MaxDiagnoses {
		t.Fatalf("visit %+v accepted", r.Visit)
	}
	for _, d := range v.Diagnoses {
		if !validIdent(d) {
			t.Fatalf("diagnosis %q accepted", d)
		}
	}
	if len(r.Items) == 0 || len(r.Items) > MaxItems {
		t.Fatalf("%d items accepted", len(r.Items))
	}
	codes := map[string]bool{}
	var total int64
	for i := range r.Items {
		it := &r.Items[i]
		want, ok := money.LineAmount(it.UnitPrice, it.Quantity)
		switch {
		case !validIdent(it.Code):
			t.Fatalf("items[%d].code %q accepted", i, it.Code)
		case it.Quantity <= 0 || it.Quantity > maxQuantity || it.UnitPrice < 0 || it.UnitPrice > maxUnitPriceYua*money.MicroPerYuan:
			t.Fatalf("items[%d]: price %d quantity %d accepted", i, it.UnitPrice, it.Quantity)
		case !ok || want != it.Amount || it.Amount < 0:
			t.Fatalf("items[%d]: amount %d, round(price × quantity) = %d %v", i, it.Amount, want, ok)
		case len(it.TraceCodes) > MaxTraceCodes:
			t.Fatalf("items[%d]: %d trace codes accepted", i, len(it.TraceCodes))
		}
		for _, c := range it.TraceCodes {
			if !validIdent(c) || codes[c] {
				t.Fatalf("trace code %q accepted (repeated: %v)", c, codes[c])
			}
			codes[c] = true
		}
		total += it.Amount
		if total < 0 {
			t.Fatalf("the bill's total overflows")
		}
	}
}

func sameVisit(a, b abi.Visit) bool {
	if len(a.Diagnoses) != len(b.Diagnoses) {
		return false
	}
	for i := range a.Diagnoses {
		if a.Diagnoses[i] != b.Diagnoses[i] {
			return false
		}
	}
	return a.Type == b.Type && a.Emergency == b.Emergency && a.BirthOrder == b.BirthOrder &&
		a.AdmittedOn == b.AdmittedOn && a.DischargedOn == b.DischargedOn && a.VisitDate == b.VisitDate
}

// FuzzDecodeSettle: decodeSettle never panics; a body it accepts holds
// what the validator promises (amounts consistent, limits, unique trace
// codes, a visit that validates), and written back canonically it is
// accepted again as the same request (the same idempotency hash).
func FuzzDecodeSettle(f *testing.F) {
	for _, s := range []string{
		string(settleBody("R-1", "EMP1", "371600", chronicVisit, oneLine)),
		`{"request_id":"20261123-000042","person":{"id":"152500198001011234","insured_region":"152500"},"visit":{"type":"inpatient","admitted_on":"2026-11-01","discharged_on":"2026-11-09","emergency":false,"diagnoses":["I10"]},"use_personal_account":true,"items":[{"code":"XA01","unit_price":"12.50","quantity":"2","amount":"25.00","trace_codes":["83912345678901234567"]},{"code":"XB01","unit_price":"3000","quantity":"1","amount":"3000.00"}]}`,
		`{"request_id":"M-1","person":{"id":"P\u00e9","insured_region":"370000"},"visit":{"type":"maternity","admitted_on":"2024-02-28","discharged_on":"2024-02-29","birth_order":2,"visit_date":"2024-02-29"},"items":[{"code":"X\"1","unit_price":"0.000001","quantity":"0.0001","amount":"0.00"}]}`,
		`{"person":{"id":"Q","insured_region":"152500"},"visit":{"type":"two_disease","visit_date":"2025-12-31","emergency":true},"use_personal_account":false,"items":[{"code":"C","unit_price":"99999999.999999","quantity":"1000000","amount":"99999999999999.00"}]}`,
		`{"request_id":"T","person":{"id":"P","insured_region":"371600"},"visit":{"type":"outpatient","visit_date":"2025-01-01"},"items":[{"code":"A","unit_price":"1","quantity":"1","amount":"1.00","trace_codes":["X1","X2"]}],"items":[{"code":"B","unit_price":"1","quantity":"1","amount":"1.00","trace_codes":["X1"]}]}`,
		`{"request_id":"U","person":{"id":"P","insured_region":"371600"},"visit":{"type":"inpatient","admitted_on":"2025-01-01","discharged_on":"2025-01-05"},"visit":{"type":"outpatient","visit_date":"2025-01-01"},"items":[{"code":"A","unit_price":"1","quantity":"1","amount":"1.00"}]}`,
		`{"request_id":"V","person":{"id":"P","insured_region":"371600","id":"Q"},"visit":{"type":"outpatient","visit_date":"2025-01-01"},"items":[{"code":"A","unit_price":"1","quantity":"1","amount":"1.00","amount":"2.00"}]}`,
		`{"request_id":1}`, `[]`, `{`, `{"items":[{"code":"A","unit_price":"1e3"}]}`, `{"request_id":"\ud800\udc00x"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, quote bool) {
		r, e := decodeSettle(body, quote)
		if e != nil {
			if r != nil || e.Status != 400 || e.Code == "" || e.Message == "" {
				t.Fatalf("refusal %+v with request %v", e, r != nil)
			}
			return
		}
		checkSettleRequest(t, r, quote)
		again := encodeSettle(r)
		r2, e := decodeSettle(again, quote)
		if e != nil {
			t.Fatalf("accepted %q, but not its canonical form %s: %v", body, again, e)
		}
		if a, b := r.appendCanonical(nil), r2.appendCanonical(nil); !bytes.Equal(a, b) {
			t.Fatalf("the canonical form of %q decodes to another request:\n%q\n%q", body, a, b)
		}
	})
}

// FuzzDecodeReversal: decodeReversal never panics, and what it accepts is
// a valid request id and a reason within limits that encode back to the
// same request.
func FuzzDecodeReversal(f *testing.F) {
	for _, s := range []string{`{"request_id":"R-1","reason":"wrong patient"}`, `{"request_id":"R-2"}`, `{"reason":"x"}`,
		`{"request_id":"R","request_id":"S"}`, `{"request_id":"R","reason":"\u0000\n"}`, `{"request_id":"R","extra":[1,{"a":null}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := decodeReversal(body)
		if e != nil {
			if r != nil || e.Status != 400 || e.Code == "" {
				t.Fatalf("refusal %+v", e)
			}
			return
		}
		if !validIdent(r.RequestID) || len(r.Reason) > MaxReasonLen {
			t.Fatalf("accepted %+v", r)
		}
		id, _ := json.Marshal(r.RequestID)
		reason, _ := json.Marshal(r.Reason)
		again := []byte(`{"request_id":` + string(id) + `,"reason":` + string(reason) + `}`)
		r2, e := decodeReversal(again)
		if e != nil || *r2 != *r {
			t.Fatalf("accepted %q, its canonical form %s gives %+v %v", body, again, r2, e)
		}
	})
}
