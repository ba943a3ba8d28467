package gateway

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// The principals of the authorization matrix. The resources of every
// route belong to "hospital" (H3716020001, a hospital of region 371600)
// and "region" (371600).
const (
	whoNone          = "no token"
	whoBad           = "bad token"
	whoHospital      = "the hospital"
	whoOtherHospital = "another hospital"
	whoRegion        = "the region"
	whoOtherRegion   = "another region"
	whoClearing      = "clearing"
)

var authzPrincipals = []struct{ who, token string }{
	{whoNone, ""},
	{whoBad, "not-a-token"},
	{whoHospital, "tok-H3716020001"},
	{whoOtherHospital, "tok-H3701020001"},
	{whoRegion, "tok-region-371600"},
	{whoOtherRegion, "tok-region-152500"},
	{whoClearing, "tok-clearing"},
}

// authzEntry says how to call a route and what each principal gets.
type authzEntry struct {
	// path fills the pattern's parameters; body is the request body (the
	// same for every principal, so that a bypass would really act).
	path string
	body func(n int) []byte
	// ok is the status for the principal the route is for. For hospital
	// routes, scoped marks those on one settlement (another hospital gets
	// 404: its existence is not disclosed); others answer any hospital.
	ok     int
	scoped bool
}

// authzMatrix has an entry for every route, by "METHOD pattern"; a route
// without one fails TestAuthorizationMatrix. S is the hospital's
// settlement, R the one it reverses in the matrix.
func authzMatrix(t *testing.T, s string) map[string]authzEntry {
	settle := func(n int) []byte {
		return settleBody(fmt.Sprintf("AZ-%d", n), "EMP1", "371600", chronicVisit, oneLine)
	}
	noBody := func(int) []byte { return nil }
	fixed := func(b string) func(int) []byte { return func(int) []byte { return []byte(b) } }
	wasm := referenceWasm(t, "371600", "v2024")
	cases := readCases(t, "371600-v2024.json")
	return map[string]authzEntry{
		"GET /healthz":               {path: "/healthz", body: noBody, ok: 200},
		"GET /metrics":               {path: "/metrics", body: noBody, ok: 200},
		"GET /openapi.yaml":          {path: "/openapi.yaml", body: noBody, ok: 200},
		"POST /v1/settlements/quote": {path: "/v1/settlements/quote", body: settle, ok: 200},
		"POST /v1/settlements":       {path: "/v1/settlements", body: settle, ok: 200},
		"GET /v1/settlements/{}":     {path: "/v1/settlements/" + s, body: noBody, ok: 200, scoped: true},
		"POST /v1/settlements/{}/reversal": {path: "/v1/settlements/" + s + "/reversal", ok: 200, scoped: true,
			body: func(n int) []byte { return []byte(fmt.Sprintf(`{"request_id":"AZ-R-%d"}`, n)) }},
		"GET /v1/settlements/{}/proof": {path: "/v1/settlements/" + s + "/proof", body: noBody, ok: 200, scoped: true},
		"POST /v1/reconciliation/totals": {path: "/v1/reconciliation/totals", ok: 200,
			body: fixed(`{"from":"2025-01-01","to":"2025-12-31","count":0,"total":"0.00","fund_total":"0.00","personal_account":"0.00"}`)},
		"POST /v1/reconciliation/details": {path: "/v1/reconciliation/details", ok: 200,
			body: fixed(`{"from":"2025-01-01","to":"2025-12-31","settlements":[]}`)},

		"POST /v1/regions/{}/persons": {path: "/v1/regions/371600/persons", ok: 200,
			body: func(n int) []byte {
				return []byte(strings.Replace(empActive, "EMP1", fmt.Sprintf("AZP%d", n), 1) + "\n")
			}},
		"POST /v1/regions/{}/persons/{}/credits": {path: "/v1/regions/371600/persons/EMP1/credits", ok: 200,
			body: func(n int) []byte { return []byte(fmt.Sprintf(`{"reference":"AZ-C-%d","amount":"1.00"}`, n)) }},
		"POST /v1/regions/{}/catalog": {path: "/v1/regions/371600/catalog", ok: 200, body: fixed(`{"code":"AZ01","class":"A"}` + "\n")},
		"PUT /v1/regions/{}/catalog":  {path: "/v1/regions/371600/catalog", ok: 200, body: fixed(`{"code":"AZ02","class":"B","selfpay_prop":"0.10"}` + "\n")},
		"POST /v1/regions/{}/policies": {path: "/v1/regions/371600/policies", ok: 201,
			body: func(n int) []byte {
				return upload("371600", fmt.Sprintf("vaz%d", n), "2030-01-01", wasm, cases, demoKey("371600"))
			}},
		"POST /v1/regions/{}/policies/check": {path: "/v1/regions/371600/policies/check", ok: 200,
			body: func(n int) []byte {
				return upload("371600", fmt.Sprintf("vazc%d", n), "2030-01-01", wasm, cases, demoKey("371600"))
			}},
		"GET /v1/regions/{}/policies":              {path: "/v1/regions/371600/policies", body: noBody, ok: 200},
		"POST /v1/regions/{}/policies/{}/withdraw": {path: "/v1/regions/371600/policies/v2023/withdraw", body: noBody, ok: 200},
		"POST /v1/regions/{}/shadow":               {path: "/v1/regions/371600/shadow", ok: 200, body: fixed(`{"version":"v2024","from":"2025-01-01","to":"2025-12-31"}`)},
		"POST /v1/regions/{}/replay":               {path: "/v1/regions/371600/replay", ok: 200, body: fixed(`{}`)},
		"POST /v1/ledger/replay":                   {path: "/v1/ledger/replay", ok: 200, body: fixed(`{}`)},
		"GET /v1/clearing/months/{}":               {path: "/v1/clearing/months/2025-06", body: noBody, ok: 200},
		"POST /v1/clearing/months/{}/close":        {path: "/v1/clearing/months/2025-01/close", body: noBody, ok: 200},
		"GET /v1/clearing/export":                  {path: "/v1/clearing/export", body: noBody, ok: 200},
		"GET /v1/clearing/checkpoint":              {path: "/v1/clearing/checkpoint", body: noBody, ok: 200},
		"GET /v1/clearing/proofs/inclusion/{}":     {path: "/v1/clearing/proofs/inclusion/" + s, body: noBody, ok: 200},
		"GET /v1/clearing/proofs/consistency":      {path: "/v1/clearing/proofs/consistency?from=1&to=1", body: noBody, ok: 200},
	}
}

// want is the status principal who gets from route r.
func (e authzEntry) want(r Route, who string) int {
	if r.Role == "" {
		return e.ok // public: tokens are ignored
	}
	switch who {
	case whoNone, whoBad:
		return 401
	}
	own := map[Role]string{RoleHospital: whoHospital, RoleRegion: whoRegion, RoleClearing: whoClearing}[r.Role]
	switch {
	case who == own:
		return e.ok
	case r.Role == RoleHospital && who == whoOtherHospital:
		if e.scoped {
			return 404
		}
		return e.ok
	}
	return 403
}

// TestAuthorizationMatrix calls every route of Routes() as every kind of
// principal and checks the status: no or an unknown token 401, a token of
// another role 403, another region 403, another hospital 404 on the
// hospital's settlement (never its content), the principal the route is
// for its success status. The unauthorized calls come first and must
// leave the ledger unchanged. A route missing from the matrix fails.
func TestAuthorizationMatrix(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}, "152500": {strings.Replace(empActive, "EMP1", "EMP2", 1)}})))
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("AZ-S", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	s := decodeAnswer(t, body).SettlementID
	matrix := authzMatrix(t, s)
	routes := Routes()
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Pattern < routes[j].Pattern })
	n := 0
	seen := map[string]bool{}
	for _, r := range routes {
		name := r.Method + " " + r.Pattern
		seen[name] = true
		e, ok := matrix[name]
		if !ok {
			t.Errorf("route %s has no entry in the authorization matrix (authz_test.go): say who may call it", name)
			continue
		}
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			head := h.head()
			for _, p := range authzPrincipals {
				want := e.want(r, p.who)
				if want == e.ok && r.Role != "" {
					continue // called last, after every refusal
				}
				n++
				do := h.do
				if want == 401 {
					do = h.doEarly // may be answered before the body is read
				}
				status, body := do(r.Method, e.path, p.token, e.body(n))
				if status != want {
					t.Errorf("%s as %s: %d %.200s, want %d", name, p.who, status, body, want)
				}
				if want == 404 && strings.Contains(string(body), `"seq"`) {
					t.Errorf("%s as %s disclosed the settlement: %.200s", name, p.who, body)
				}
			}
			if got := h.head(); got != head {
				t.Fatalf("refused calls of %s wrote to the ledger (head %d -> %d)", name, head, got)
			}
			for _, p := range authzPrincipals {
				if r.Role == "" || e.want(r, p.who) != e.ok {
					continue
				}
				n++
				status, body := h.do(r.Method, e.path, p.token, e.body(n))
				if status != e.ok {
					t.Errorf("%s as %s: %d %.300s, want %d", name, p.who, status, body, e.ok)
				}
			}
		})
	}
	for name := range matrix {
		if !seen[name] {
			t.Logf("matrix entry %s names no registered route (removed?)", name)
		}
	}
	if rep, err := h.db.Audit(nil); err != nil || !rep.OK() {
		t.Fatalf("audit after the matrix: %v %v", err, rep.Err())
	}
}
