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
