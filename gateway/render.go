package gateway

import (
	"encoding/hex"
	"time"
	"unicode/utf8"

	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// appendResult renders a settlement answer (api.md) without reflection.
// The answer is a pure function of the ledger entry, so a replay renders the
// first answer again from what was written.
func appendResult(b []byte, r *Result) []byte {
	e := r.Entry
	b = append(b, `{"settlement_id":`...)
	if r.Quote {
		b = append(b, `null,"seq":null,"quote":true`...)
	} else {
		b = appendString(b, e.SettlementID)
		b = append(b, `,"seq":`...)
		b = appendUint(b, e.Seq)
	}
	b = append(b, `,"replayed":`...)
	b = appendBool(b, r.Replayed)
	if e.Kind == ledger.KindReversal {
		b = append(b, `,"reverses":`...)
		b = appendString(b, e.Reverses)
	}
	if r.ReversedBy != "" {
		b = append(b, `,"reversed_by":`...)
		b = appendString(b, r.ReversedBy)
	}
	if !r.Quote {
		b = append(b, `,"committed_at":`...)
		b = appendString(b, formatTime(e.CommittedAt))
	}
	b = append(b, `,"hospital":`...)
	b = appendString(b, e.Hospital)
	b = append(b, `,"person":{"id":`...)
	b = appendString(b, e.PersonID)
	b = append(b, `,"insured_region":`...)
	b = appendString(b, e.InsuredRegion)
	b = append(b, `},"settlement_date":"`...)
	b = AppendDate(b, e.Date)
	b = append(b, `","visit_type":`...)
	b = appendString(b, visitTypeName(e.VisitType))
	b = append(b, `,"policy":{"region":`...)
	b = appendString(b, e.InsuredRegion)
	b = append(b, `,"version":`...)
	b = appendString(b, e.PolicyVersion)
	b = append(b, `,"module_sha256":"`...)
	b = hex.AppendEncode(b, e.ModuleSHA256[:])
	a := &e.Amounts
	b = append(b, `"},"amounts":{"total":`...)
	b = appendMoney(b, a.Total)
	b = append(b, `,"full_self_pay":`...)
	b = appendMoney(b, a.FullSelfPay)
	b = append(b, `,"over_limit":`...)
	b = appendMoney(b, a.OverLimit)
	b = append(b, `,"pre_self_pay":`...)
	b = appendMoney(b, a.PreSelfPay)
	b = append(b, `,"eligible":`...)
	b = appendMoney(b, a.Eligible)
	b = append(b, `,"deductible":`...)
	b = appendMoney(b, a.Deductible)
	b = append(b, `,"basic_fund":`...)
	b = appendMoney(b, a.BasicFund)
	b = append(b, `,"serious_illness":`...)
	b = appendMoney(b, a.SeriousIllness)
	b = append(b, `,"medical_assistance":`...)
	b = appendMoney(b, a.MedicalAssistance)
	b = append(b, `,"fund_total":`...)
	b = appendMoney(b, a.FundTotal)
	b = append(b, `,"personal_account":`...)
	b = appendMoney(b, a.PersonalAccount)
	b = append(b, `,"cash":`...)
	b = appendMoney(b, a.Cash)
	b = append(b, `,"personal_total":`...)
	b = appendMoney(b, a.PersonalTotal)
	b = append(b, `},"lines":[`...)
	for i := range e.Lines {
		l := &e.Lines[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"code":`...)
		b = appendString(b, l.Code)
		b = append(b, `,"class":"`...)
		b = append(b, className(l.Class)...)
		b = append(b, `","listed":`...)
		b = appendBool(b, l.Listed)
		b = append(b, `,"amount":`...)
		b = appendMoney(b, l.Amount)
		b = append(b, `,"full_self_pay":`...)
		b = appendMoney(b, l.FullSelfPay)
		b = append(b, `,"over_limit":`...)
		b = appendMoney(b, l.OverLimit)
		b = append(b, `,"pre_self_pay":`...)
		b = appendMoney(b, l.PreSelfPay)
		b = append(b, `,"eligible":`...)
		b = appendMoney(b, l.Eligible)
		b = append(b, '}')
	}
	b = append(b, `],"notes":[`...)
	for i, n := range e.Notes {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, n)
	}
	return append(b, "]}"...)
}

func appendMoney(b []byte, fen int64) []byte {
	b = append(b, '"')
	b = money.AppendFen(b, fen)
	return append(b, '"')
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

func appendUint(b []byte, v uint64) []byte {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, buf[i:]...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func className(c abi.Class) string {
	switch c {
	case abi.ClassA:
		return "A"
	case abi.ClassB:
		return "B"
	}
	return "C"
}

func visitTypeName(t abi.VisitType) string {
	switch t {
	case abi.VisitInpatient:
		return "inpatient"
	case abi.VisitOutpatient:
		return "outpatient"
	case abi.VisitChronic:
		return "chronic"
	case abi.VisitTwoDisease:
		return "two_disease"
	case abi.VisitMaternity:
		return "maternity"
	}
	return "unknown"
}

// chinaTime is UTC+8, the zone in which clearing months are counted.
var chinaTime = time.FixedZone("UTC+8", 8*3600)

func formatTime(unixNano int64) string {
	return time.Unix(0, unixNano).In(chinaTime).Format(time.RFC3339Nano)
}

// appendError renders api.md's error object.
func appendError(b []byte, e *Error) []byte {
	b = append(b, `{"error":{"code":`...)
	b = appendString(b, e.Code)
	b = append(b, `,"message":`...)
	b = appendString(b, e.Message)
	if e.Field != "" {
		b = append(b, `,"field":`...)
		b = appendString(b, e.Field)
	}
	return append(b, "}}"...)
}
