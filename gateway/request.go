package gateway

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"medgate/engine/abi"
	"medgate/engine/money"
)

// Limits on a settlement request. A real bill rarely has more than a few
// hundred lines; MaxItems leaves room for a long inpatient stay's daily
// lines while bounding the work one request can cause.
const (
	MaxItems        = 1000
	MaxTraceCodes   = 100 // per line
	MaxDiagnoses    = 32
	MaxIDLen        = 64 // request ids, person ids, codes
	MaxReasonLen    = 256
	MaxBodyBytes    = 1 << 20
	MaxUploadBytes  = 32 << 20 // a policy upload: a module, base64, with its cases
	maxBirthOrder   = 20
	maxQuantity     = 1_000_000 * money.QuantityScale
	maxUnitPriceYua = 100_000_000
)

// Item is one bill line of a request, in scaled integers.
type Item struct {
	Code       string
	UnitPrice  int64 // micro-yuan
	Quantity   int64 // ten-thousandths
	Amount     int64 // fen
	TraceCodes []string
}

// SettleRequest is a validated quote or settlement request.
type SettleRequest struct {
	RequestID     string
	PersonID      string
	InsuredRegion string
	Visit         abi.Visit
	UseAccount    bool
	Items         []Item
	// TraceCodes are the bill's trace codes, line after line: each
	// line's TraceCodes is a part of it.
	TraceCodes []string
	// LogID is the HTTP request's id (its access line's req and
	// X-Request-Id), put on the log lines of its policy's failure; 0:
	// none. Not part of the request's content.
	LogID uint64
}

// Date is the settlement date: discharge for inpatient and maternity.
func (r *SettleRequest) Date() abi.Date {
	if r.Visit.Type == abi.VisitInpatient || r.Visit.Type == abi.VisitMaternity {
		return r.Visit.DischargedOn
	}
	return r.Visit.VisitDate
}

// dateField is the field Date comes from.
func (r *SettleRequest) dateField() string {
	if r.Visit.Type == abi.VisitInpatient || r.Visit.Type == abi.VisitMaternity {
		return "visit.discharged_on"
	}
	return "visit.visit_date"
}

var visitTypes = map[string]abi.VisitType{
	"inpatient": abi.VisitInpatient, "outpatient": abi.VisitOutpatient, "chronic": abi.VisitChronic,
	"two_disease": abi.VisitTwoDisease, "maternity": abi.VisitMaternity,
}

// decodeSettle parses and validates a quote or settlement body. quote
// requests may omit request_id.
func decodeSettle(body []byte, quote bool) (*SettleRequest, *Error) {
	r := &SettleRequest{}
	// One copy of the body (fasthttp reuses its buffer) from which every
	// string of the request is taken without copying: a bill's codes and
	// trace codes are dozens of strings.
	l := &lexer{b: append([]byte(nil), body...), owned: true}
	var seen struct{ requestID, person, visit, items bool }
	err := l.objectOnce("", settleFields, func(key []byte) error {
		if l.nullField(settleFields, key) {
			return nil // absent: missing below if it is required
		}
		switch string(key) {
		case "request_id":
			seen.requestID = true
			return l.ident(&r.RequestID, "request_id")
		case "person":
			seen.person = true
			return decodePerson(l, r)
		case "visit":
			seen.visit = true
			return decodeVisit(l, &r.Visit)
		case "use_personal_account":
			v, ok := l.boolean()
			if !ok {
				return invalid("use_personal_account", "use_personal_account must be true or false")
			}
			r.UseAccount = v
			return nil
		case "items":
			seen.items = true
			return decodeItems(l, r)
		}
		return unknownField(l, string(key), "")
	})
	if e := asError(err, l); e != nil {
		return nil, e
	}
	switch {
	case !seen.requestID && !quote:
		return nil, missing("request_id")
	case !seen.person:
		return nil, missing("person")
	case !seen.visit:
		return nil, missing("visit")
	case !seen.items || len(r.Items) == 0:
		return nil, badRequest("missing_field", "items", "items must list at least one bill line")
	}
	if r.PersonID == "" {
		return nil, missing("person.id")
	}
	if r.InsuredRegion == "" {
		return nil, missing("person.insured_region")
	}
	if e := validateVisit(&r.Visit); e != nil {
		return nil, e
	}
	return r, nil
}

// asError turns a decoding error into the answer: a field error as is,
// anything else as malformed JSON; trailing garbage is malformed too.
func asError(err error, l *lexer) *Error {
	if err == nil {
		if !l.end() {
			return badRequest("malformed_json", "", "unexpected data after the JSON object at byte %d", l.i)
		}
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return badRequest("malformed_json", "", "the body is not valid JSON (near byte %d)", l.i)
}

func unknownField(l *lexer, key, prefix string) error {
	if err := l.skip(); err != nil {
		return err
	}
	name := prefix + clip([]byte(key))
	return badRequest("unknown_field", name, "unknown field %q", name)
}

// maxQuoted bounds how much of a refused value or unknown key an error
// quotes. Quoted whole, a value as long as the body made an answer twice
// the body's size and more (U+2028 quotes as six bytes): 2.4 MB for a
// bill of 1 MiB.
const maxQuoted = 64

// clip is s, cut to maxQuoted bytes at a character's start ("…" marks a
// cut), for an error to quote.
func clip(s []byte) string {
	if len(s) <= maxQuoted {
		return string(s)
	}
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return string(s[:n]) + "…"
}

// ident reads a short printable identifier string into dst.
func (l *lexer) ident(dst *string, field string) error {
	if l.peek() != '"' {
		if err := l.skip(); err != nil {
			return err
		}
		return invalid(field, "%s must be a string", field)
	}
	s, err := l.str()
	if err != nil {
		return err
	}
	if len(s) == 0 {
		return badRequest("missing_field", field, "%s must not be empty", field)
	}
	if len(s) > MaxIDLen {
		return invalid(field, "%s is longer than %d bytes", field, MaxIDLen)
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return invalid(field, "%s must not contain spaces or control characters", field)
		}
	}
	*dst = l.string(s)
	return nil
}

func decodePerson(l *lexer, r *SettleRequest) error {
	if l.peek() != '{' {
		return invalidType(l, "person", "an object")
	}
	return l.objectOnce("person.", personFields, func(key []byte) error {
		if l.nullField(personFields, key) {
			return nil // absent: missing in decodeSettle
		}
		switch string(key) {
		case "id":
			return l.ident(&r.PersonID, "person.id")
		case "insured_region":
			if err := l.ident(&r.InsuredRegion, "person.insured_region"); err != nil {
				return err
			}
			if !isRegion(r.InsuredRegion) {
				return invalid("person.insured_region", "person.insured_region must be a 6-digit region code")
			}
			return nil
		}
		return unknownField(l, string(key), "person.")
	})
}

func invalidType(l *lexer, field, want string) error {
	if err := l.skip(); err != nil {
		return err
	}
	return invalid(field, "%s must be %s", field, want)
}

func isRegion(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < 6; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func decodeVisit(l *lexer, v *abi.Visit) error {
	if l.peek() != '{' {
		return invalidType(l, "visit", "an object")
	}
	return l.objectOnce("visit.", visitFields, func(key []byte) error {
		if l.nullField(visitFields, key) {
			return nil // absent: validateVisit says if it is required
		}
		switch string(key) {
		case "type":
			if l.peek() != '"' {
				return invalidType(l, "visit.type", "a string")
			}
			s, err := l.str()
			if err != nil {
				return err
			}
			t, ok := visitTypes[string(s)]
			if !ok {
				return invalid("visit.type", "visit.type %q is not one of inpatient, outpatient, chronic, two_disease, maternity", clip(s))
			}
			v.Type = t
			return nil
		case "admitted_on":
			return l.date(&v.AdmittedOn, "visit.admitted_on")
		case "discharged_on":
			return l.date(&v.DischargedOn, "visit.discharged_on")
		case "visit_date":
			return l.date(&v.VisitDate, "visit.visit_date")
		case "emergency":
			b, ok := l.boolean()
			if !ok {
				return invalidType(l, "visit.emergency", "true or false")
			}
			v.Emergency = b
			return nil
		case "birth_order":
			n, ok := l.integer()
			if !ok {
				return invalidType(l, "visit.birth_order", "an integer")
			}
			if n < 1 || n > maxBirthOrder {
				return invalid("visit.birth_order", "visit.birth_order must be between 1 and %d", maxBirthOrder)
			}
			v.BirthOrder = int32(n)
			return nil
		case "diagnoses":
			if l.peek() != '[' {
				return invalidType(l, "visit.diagnoses", "an array of strings")
			}
			v.Diagnoses = v.Diagnoses[:0]
			return l.array(func(i int) error {
				field := "visit.diagnoses[" + strconv.Itoa(i) + "]"
				if i >= MaxDiagnoses {
					return invalid("visit.diagnoses", "at most %d diagnoses", MaxDiagnoses)
				}
				var d string
				if err := l.ident(&d, field); err != nil {
					return err
				}
				v.Diagnoses = append(v.Diagnoses, d)
				return nil
			})
		}
		return unknownField(l, string(key), "visit.")
	})
}

// date reads a "YYYY-MM-DD" string that names a real calendar day.
func (l *lexer) date(dst *abi.Date, field string) error {
	if l.null() {
		return nil
	}
	if l.peek() != '"' {
		return invalidType(l, field, `a date string "YYYY-MM-DD"`)
	}
	s, err := l.str()
	if err != nil {
		return err
	}
	d, ok := ParseDate(s)
	if !ok {
		return invalid(field, "%s %q is not a valid date YYYY-MM-DD", field, clip(s))
	}
	*dst = d
	return nil
}

// ParseDate parses a strict YYYY-MM-DD calendar date (years 1900–2999).
func ParseDate(s []byte) (abi.Date, bool) { return abi.ParseDate(s) }

// AppendDate appends d as YYYY-MM-DD.
func AppendDate(b []byte, d abi.Date) []byte {
	y, m, dd := d.Year(), d.Month(), d.Day()
	return append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+dd/10), byte('0'+dd%10))
}

func validateVisit(v *abi.Visit) *Error {
	if v.Type == 0 {
		return missing("visit.type")
	}
	switch v.Type {
	case abi.VisitInpatient, abi.VisitMaternity:
		if v.AdmittedOn == 0 {
			return missing("visit.admitted_on")
		}
		if v.DischargedOn == 0 {
			return missing("visit.discharged_on")
		}
		if v.DischargedOn < v.AdmittedOn {
			return invalid("visit.discharged_on", "visit.discharged_on is before visit.admitted_on")
		}
		if v.VisitDate != 0 && (v.VisitDate < v.AdmittedOn || v.VisitDate > v.DischargedOn) {
			return invalid("visit.visit_date", "visit.visit_date is outside the stay from admission to discharge")
		}
		if v.VisitDate == 0 {
			v.VisitDate = v.DischargedOn
		}
	default:
		if v.VisitDate == 0 {
			return missing("visit.visit_date")
		}
		if v.AdmittedOn != 0 || v.DischargedOn != 0 {
			field := "visit.admitted_on"
			if v.AdmittedOn == 0 {
				field = "visit.discharged_on"
			}
			return invalid(field, "%s applies to inpatient and maternity visits only", field)
		}
	}
	if v.Type == abi.VisitMaternity && v.BirthOrder < 1 {
		return missing("visit.birth_order")
	}
	if v.Type != abi.VisitMaternity && v.BirthOrder != 0 {
		return invalid("visit.birth_order", "visit.birth_order applies to maternity visits only")
	}
	return nil
}

func decodeItems(l *lexer, r *SettleRequest) error {
	if l.peek() != '[' {
		return invalidType(l, "items", "an array")
	}
	var seen codeSet
	if r.Items == nil {
		r.Items = make([]Item, 0, 32) // most bills: one allocation
	}
	return l.array(func(i int) error {
		if i >= MaxItems {
			return invalid("items", "a bill has at most %d lines", MaxItems)
		}
		r.Items = append(r.Items, Item{})
		it := &r.Items[len(r.Items)-1]
		if err := decodeItem(l, it, &r.TraceCodes, &seen); err != nil {
			// Fields of a line are named relative to it while decoding, so
			// that the common, valid case builds no "items[i]" strings.
			var e *Error
			if errors.As(err, &e) {
				full := "items[" + strconv.Itoa(i) + "]"
				e.Message = qualify(e.Message, e.Field, full)
				if e.Field != "" {
					full += "." + e.Field
				}
				e.Field = full
			}
			return err
		}
		return nil
	})
}

// decodeItem decodes one bill line; its errors name fields relative to the
// line ("amount", "trace_codes[1]").
func decodeItem(l *lexer, it *Item, codes *[]string, seen *codeSet) error {
	if l.peek() != '{' {
		if err := l.skip(); err != nil {
			return err
		}
		return badRequest("invalid_field", "", "a bill line must be an object")
	}
	var have struct{ code, price, qty, amount bool }
	err := l.objectOnce("", itemFields, func(key []byte) error {
		if l.nullField(itemFields, key) {
			return nil // absent: missing below if it is required
		}
		switch string(key) {
		case "code":
			have.code = true
			return l.ident(&it.Code, "code")
		case "unit_price":
			have.price = true
			return l.decimal(&it.UnitPrice, 6, "unit_price")
		case "quantity":
			have.qty = true
			return l.decimal(&it.Quantity, 4, "quantity")
		case "amount":
			have.amount = true
			return l.decimal(&it.Amount, 2, "amount")
		case "trace_codes":
			if l.peek() != '[' {
				return invalidType(l, "trace_codes", "an array of strings")
			}
			if *codes == nil {
				*codes = make([]string, 0, 32) // most bills: one allocation
			}
			first := len(*codes)
			defer func() {
				// A part of the bill's list: appending a later line's codes
				// never writes over this line's.
				it.TraceCodes = (*codes)[first:len(*codes):len(*codes)]
			}()
			return l.array(func(j int) error {
				if j >= MaxTraceCodes {
					return invalid("trace_codes", "at most %d trace codes a line", MaxTraceCodes)
				}
				var c string
				if err := l.ident(&c, "trace_code"); err != nil {
					var e *Error
					if errors.As(err, &e) {
						field := "trace_codes[" + strconv.Itoa(j) + "]"
						e.Message = strings.Replace(e.Message, "trace_code", field, 1)
						e.Field = field
					}
					return err
				}
				// A code is what the scanner read off the box: printable
				// ASCII. A full-width digit or an invisible character
				// (U+200B, U+00A0) would make a settled code look new.
				for k := 0; k < len(c); k++ {
					if c[k] >= 0x80 {
						return invalid("trace_codes["+strconv.Itoa(j)+"]", "trace_codes[%d] must be printable ASCII (letters, digits, punctuation), as scanned", j)
					}
				}
				if !seen.add(*codes, c) {
					return invalid("trace_codes["+strconv.Itoa(j)+"]", "trace code %s appears twice in this bill", c)
				}
				*codes = append(*codes, c)
				return nil
			})
		}
		return unknownField(l, string(key), "")
	})
	if err != nil {
		return err
	}
	switch {
	case !have.code:
		return missing("code")
	case !have.price:
		return missing("unit_price")
	case !have.qty:
		return missing("quantity")
	case !have.amount:
		return missing("amount")
	}
	if it.Quantity == 0 {
		return invalid("quantity", "quantity must be positive")
	}
	if it.Quantity > maxQuantity {
		return invalid("quantity", "quantity is too large")
	}
	if it.UnitPrice > maxUnitPriceYua*money.MicroPerYuan {
		return invalid("unit_price", "unit_price is too large")
	}
	want, ok := money.LineAmount(it.UnitPrice, it.Quantity)
	if !ok || want != it.Amount {
		return badRequest("amount_mismatch", "amount", "amount %s is not round(unit_price × quantity) = %s",
			money.FormatFen(it.Amount), money.FormatFen(want))
	}
	return nil
}

// decimal reads a decimal string with at most decimals digits.
func (l *lexer) decimal(dst *int64, decimals int, field string) error {
	if l.peek() != '"' {
		return invalidType(l, field, `a decimal string such as "12.50"`)
	}
	s, err := l.str()
	if err != nil {
		return err
	}
	v, perr := money.Parse(s, decimals)
	if perr != nil {
		if perr == money.ErrNegative {
			return badRequest("negative_amount", field, "%s %q is negative", field, clip(s))
		}
		if perr == money.ErrDecimals {
			return invalid(field, "%s %q has more than %d decimals", field, clip(s), decimals)
		}
		return invalid(field, "%s %q %v", field, clip(s), perr)
	}
	*dst = v
	return nil
}

// ReversalRequest is a validated reversal body.
type ReversalRequest struct {
	RequestID string
	Reason    string
}

func decodeReversal(body []byte) (*ReversalRequest, *Error) {
	r := &ReversalRequest{}
	l := &lexer{b: body}
	seen := false
	err := l.objectOnce("", reversalFields, func(key []byte) error {
		if l.nullField(reversalFields, key) {
			return nil // absent: missing below if it is required
		}
		switch string(key) {
		case "request_id":
			seen = true
			return l.ident(&r.RequestID, "request_id")
		case "reason":
			if l.peek() != '"' {
				return invalidType(l, "reason", "a string")
			}
			s, err := l.str()
			if err != nil {
				return err
			}
			if len(s) > MaxReasonLen {
				return invalid("reason", "reason is longer than %d bytes", MaxReasonLen)
			}
			r.Reason = string(s)
			return nil
		}
		return unknownField(l, string(key), "")
	})
	if e := asError(err, l); e != nil {
		return nil, e
	}
	if !seen {
		return nil, missing("request_id")
	}
	return r, nil
}

// codeSet finds a trace code repeated within a bill. A bill has a few dozen
// codes at most in practice: they are compared with the codes so far, and
// only a bill with more builds a map.
type codeSet struct{ m map[string]struct{} }

const codeSetLinear = 64

// add reports whether c is not among codes (the bill's codes so far) and
// records it.
func (s *codeSet) add(codes []string, c string) bool {
	if len(codes) < codeSetLinear {
		for _, x := range codes {
			if x == c {
				return false
			}
		}
		return true
	}
	if s.m == nil {
		s.m = make(map[string]struct{}, 2*len(codes))
		for _, x := range codes {
			s.m[x] = struct{}{}
		}
	}
	if _, dup := s.m[c]; dup {
		return false
	}
	s.m[c] = struct{}{}
	return true
}

// qualify rewrites the message of an error found inside a bill line (field
// relative to the line, line its path: "items[3]") so that it names the
// line: the field where the message quotes it or starts with it, else the
// line as a prefix. A plain substring replace would also hit words that
// happen to spell the field ("unknown field \"field\"").
func qualify(msg, field, line string) string {
	if field != "" {
		if q := strconv.Quote(field); strings.Contains(msg, q) {
			return strings.Replace(msg, q, strconv.Quote(line+"."+field), 1)
		}
		if rest, ok := strings.CutPrefix(msg, field); ok && (rest == "" || rest[0] == ' ' || rest[0] == ':') {
			return line + "." + field + rest
		}
	}
	return line + ": " + msg
}
