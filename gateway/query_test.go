package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestQueryParametersRefusedOnEveryRoute: a route with a role takes only
// the query parameters it names. A POST /v1/settlements?dry_run=1 meant as
// a quote used to settle; now any query parameter a route does not take,
// or one given twice, is 400 naming it, after authentication, and nothing
// is written. The unauthenticated probes (health, metrics, the OpenAPI
// file) take any.
func TestQueryParametersRefusedOnEveryRoute(t *testing.T) {
	// No opening balance (it would be entry 1): the settlement is entry 1.
	emp := strings.Replace(empActive, `"account_balance":"1000.00"`, `"account_balance":"0.00"`, 1)
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {emp}}))
	items := `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00"}]`
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("QP-1", "EMP1", "371600", chronicVisit, items))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	id := decodeAnswer(t, body).SettlementID
	head := h.head()
	for _, tc := range []struct {
		method, path, token string
		body                []byte
		status              int
		code, field         string
	}{
		{"POST", "/v1/settlements?dry_run=1", "tok-H3716020001", settleBody("QP-2", "EMP1", "371600", chronicVisit, items), 400, "unknown_field", "dry_run"},
		{"POST", "/v1/settlements/quote?x", "tok-H3716020001", settleBody("QP-3", "EMP1", "371600", chronicVisit, items), 400, "unknown_field", "x"},
		{"GET", "/v1/settlements/" + id + "?fields=amounts", "tok-H3716020001", nil, 400, "unknown_field", "fields"},
		{"POST", "/v1/settlements/" + id + "/reversal?force=1", "tok-H3716020001", []byte(`{"request_id":"QP-4"}`), 400, "unknown_field", "force"},
		{"GET", "/v1/settlements/" + id + "/proof?tree_size=1&tree_size=1", "tok-H3716020001", nil, 400, "duplicate_field", "tree_size"},
		{"POST", "/v1/settlements?dry_run=1", "", settleBody("QP-5", "EMP1", "371600", chronicVisit, items), 401, "unauthorized", ""},
		{"GET", "/v1/settlements/" + id + "/proof?tree_size=1", "tok-H3716020001", nil, 200, "", ""},
		{"GET", "/healthz?probe=1", "", nil, 200, "", ""},
	} {
		status, out := h.do(tc.method, tc.path, tc.token, tc.body)
		var a answer
		json.Unmarshal(out, &a)
		if status != tc.status || (tc.code != "" && (a.Error == nil || a.Error.Code != tc.code || a.Error.Field != tc.field)) {
			t.Errorf("%s %s: %d %s, want %d %s %s", tc.method, tc.path, status, out, tc.status, tc.code, tc.field)
		}
	}
	if h.head() != head {
		t.Fatalf("refused requests wrote: head %d, then %d", head, h.head())
	}
}
