package gateway

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestR6EmptyTokenNeverAuthenticates: a principals.json entry holding the
// sha256 of the empty string (a token's variable unset when the file was
// written: printf '%s' "$TOKEN" | sha256sum) is refused when loaded, and a
// header whose token is only a Unicode space (U+00A0, U+0085, U+3000),
// which bytes.TrimSpace took away, is no token at all: before, that header
// presented the empty token and acted as such a principal. A token is
// compared as sent: one with a Unicode space after it is another token.
func TestR6EmptyTokenNeverAuthenticates(t *testing.T) {
	_, err := NewPrincipals([]PrincipalRecord{
		{TokenSHA256: TokenHash("tok-a"), Role: RoleHospital, ID: "H1"},
		{TokenSHA256: TokenHash(""), Role: RoleHospital, ID: "H3701020001"},
	})
	if err == nil || !strings.Contains(err.Error(), "principals[1].token_sha256") {
		t.Errorf("a principal with the empty token's hash: %v, want an error naming principals[1].token_sha256", err)
	}

	for _, sp := range []string{"\u00a0", "\u0085", "\u3000", "\u2028"} {
		var hdr fasthttp.RequestHeader
		hdr.Set("Authorization", "Bearer "+sp)
		if tok, ok := bearer(&hdr); !ok || string(tok) != sp {
			t.Errorf("Authorization %q: token %q (%v), want %q as sent", "Bearer "+sp, tok, ok, sp)
		}
	}
	var hdr fasthttp.RequestHeader
	hdr.Set("Authorization", "Bearer \t")
	if tok, ok := bearer(&hdr); ok {
		t.Errorf("Authorization \"Bearer \\t\": token %q, want none", tok)
	}

	h := newHarness(t, refWorld(t, nil))
	for _, tok := range []string{"tok-H3716020001\u00a0", "\u00a0tok-H3716020001", "tok-H3716020001\u3000"} {
		status, out := h.do("GET", "/v1/settlements/S000000000001", tok, nil)
		if a := decodeAnswer(t, out); status != 401 || a.Error == nil || a.Error.Code != "unauthorized" {
			t.Errorf("token %q: %d %s, want 401 unauthorized", tok, status, out)
		}
	}
	// The token itself, with the spaces HTTP allows around it, still acts.
	if status, out := h.do("GET", "/v1/settlements/S000000000001", "  tok-H3716020001", nil); status != 404 {
		t.Errorf("token after two spaces: %d %s, want 404 (authenticated, no such settlement)", status, out)
	}
}

// TestR6ErrorAnswersQuoteABoundedValue: a refused value is quoted in the
// error's message, and an unknown key names the field; both were quoted
// whole, so a bill of 1 MiB holding one long bad value (U+2028 quotes as
// six bytes) was answered in 2.4 MB, an unknown key of 1 MiB in 3.4 MB.
// Now the answer quotes the value's start and still names the field.
func TestR6ErrorAnswersQuoteABoundedValue(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	good := `{"request_id":"V-1","person":{"id":"EMP1","insured_region":"371600"},"visit":{"type":"chronic","visit_date":"2025-06-01"},"items":[{"code":"XA01","unit_price":"12.50","quantity":"2","amount":"25.00"}]}`
	long := strings.Repeat("\u2028", 300_000)
	for _, tt := range []struct {
		old, new, code, field string
	}{
		{`"unit_price":"12.50"`, `"unit_price":"1` + long + `"`, "invalid_field", "items[0].unit_price"},
		{`"quantity":"2"`, `"quantity":"-` + long + `"`, "negative_amount", "items[0].quantity"},
		{`"amount":"25.00"`, `"amount":"25.00` + strings.Repeat("0", 900_000) + `"`, "invalid_field", "items[0].amount"},
		{`"type":"chronic"`, `"type":"` + long + `"`, "invalid_field", "visit.type"},
		{`"visit_date":"2025-06-01"`, `"visit_date":"` + long + `"`, "invalid_field", "visit.visit_date"},
		{`"request_id":"V-1"`, `"request_id":"V-1","x` + long + `":1`, "unknown_field", ""},
		{`"amount":"25.00"`, `"amount":"25.00","x` + long + `":1`, "unknown_field", ""},
	} {
		body := strings.Replace(good, tt.old, tt.new, 1)
		for _, path := range []string{"/v1/settlements", "/v1/settlements/quote"} {
			status, out := h.do("POST", path, "tok-H3716020001", []byte(body))
			a := decodeAnswer(t, out)
			if status != 400 || a.Error == nil || a.Error.Code != tt.code || tt.field != "" && a.Error.Field != tt.field {
				t.Errorf("%s %.40s…: %d %.300s, want 400 %s naming %s", path, tt.new, status, out, tt.code, tt.field)
				continue
			}
			if len(out) > 1024 {
				t.Errorf("%s %.40s…: a body of %d bytes answered in %d: %.200s…", path, tt.new, len(body), len(out), out)
			}
			if tt.field == "" && !strings.HasPrefix(a.Error.Field, "x\u2028") && !strings.HasPrefix(a.Error.Field, "items[0].x\u2028") {
				t.Errorf("%s %.40s…: field %.80q, want the unknown key's start", path, tt.new, a.Error.Field)
			}
		}
	}
}

// TestR6UnservedInsuredRegionNamesTheRegion: a bill whose insured region
// is one the gateway has no policy for (a county's code sent for its
// prefecture's pool, 371601 for 371600) was 422 unknown_person blaming
// person.id, a field that was right; now 422 no_policy blaming
// person.insured_region. An unknown person of a served region is still
// unknown_person.
func TestR6UnservedInsuredRegionNamesTheRegion(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	base := h.head()
	for _, tt := range []struct {
		person, region, code, field string
	}{
		{"EMP1", "371601", "no_policy", "person.insured_region"},
		{"EMP1", "110000", "no_policy", "person.insured_region"},
		{"EMP9", "371600", "unknown_person", "person.id"},
	} {
		for _, path := range []string{"/v1/settlements", "/v1/settlements/quote"} {
			body := settleBody("U-"+tt.person+tt.region, tt.person, tt.region, chronicVisit, oneLine)
			status, out := h.do("POST", path, "tok-H3716020001", body)
			if a := decodeAnswer(t, out); status != 422 || a.Error == nil || a.Error.Code != tt.code || a.Error.Field != tt.field {
				t.Errorf("%s %s of %s: %d %s, want 422 %s naming %s", path, tt.person, tt.region, status, out, tt.code, tt.field)
			}
		}
	}
	if h.head() != base {
		t.Fatal("a refused bill wrote to the ledger")
	}
}
