package gateway

import (
	"encoding/json"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/valyala/fasthttp"
)

// Every answer a test gets through the harness (harness.roundTrip: h.do,
// the contract's exchanges) is held to openapi.yaml, which integrators
// generate their clients from: its status is declared for its operation,
// or is one the document's description says any route may answer; its
// body matches the declared schema, and so does a JSON request it took; an error's code (but for 400, whose
// codes name fields) is one the declared answer lists; every answer has
// an X-Request-Id and every 429 and 503 a Retry-After. A status answered
// only through `default` used to pass TestOpenAPIAnswersMatch, so the
// document could leave out what a client must handle.

var answerDoc struct {
	once sync.Once
	doc  *openapi3.T
	err  error
}

// anyRoute reports whether openapi.yaml's description lists status (with
// code) among the answers any route may give.
func anyRoute(status int, code string) bool {
	switch status {
	case 401, 405, 408, 413, 415, 431, 500:
		return true
	case 400:
		return code == "malformed_request"
	case 503:
		return code == "overloaded" || code == "shutting_down"
	}
	return false
}

// checkAnswer checks one answer against openapi.yaml (see above). It
// reports through tb and is skipped for benchmarks.
func checkAnswer(tb testing.TB, method, path string, reqBody []byte, resp *fasthttp.Response) {
	if _, bench := tb.(*testing.B); bench {
		return
	}
	tb.Helper()
	answerDoc.once.Do(func() {
		answerDoc.doc, answerDoc.err = openapi3.NewLoader().LoadFromData(OpenAPI)
	})
	if answerDoc.err != nil {
		tb.Errorf("openapi.yaml does not load: %v", answerDoc.err)
		return
	}
	doc := answerDoc.doc
	st := resp.StatusCode()
	body := resp.Body()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if st >= 400 {
		json.Unmarshal(body, &e)
	}
	code := e.Error.Code
	label := fmt.Sprintf("%s %s → %d %s", method, path, st, code)
	if len(resp.Header.Peek("X-Request-Id")) == 0 {
		tb.Errorf("%s: no X-Request-Id", label)
	}
	if (st == 429 || st == 503) && len(resp.Header.Peek("Retry-After")) == 0 {
		tb.Errorf("%s: no Retry-After", label)
	}
	opMethod := method
	if method == "HEAD" {
		opMethod = "GET" // HEAD is served wherever GET is
	}
	c := &contract{doc: doc}
	specPath, op := c.operation(opMethod, path)
	if op == nil {
		if st != 404 && st != 405 && !anyRoute(st, code) {
			tb.Errorf("%s: no operation in openapi.yaml", label)
		}
		return
	}
	ref := op.Responses.Status(st)
	desc := ""
	if ref == nil {
		if !anyRoute(st, code) {
			tb.Errorf("%s: status %d is not declared for %s %s in openapi.yaml (nor among the answers any route may give): %.300s",
				label, st, opMethod, specPath, body)
			return
		}
		ref = op.Responses.Default()
		desc = doc.Info.Description
	}
	if ref == nil || ref.Value == nil {
		return
	}
	if ref.Value.Description != nil {
		desc += *ref.Value.Description
	}
	if code != "" && st != 400 && !regexp.MustCompile(`(^|[^a-z_])`+code+`([^a-z_]|$)`).MatchString(desc) {
		tb.Errorf("%s: error code %s is not among those openapi.yaml lists for %d on %s %s", label, code, st, opMethod, specPath)
	}
	// A JSON body the gateway took is one the document allows: a schema
	// stricter than the gateway would make generated clients refuse
	// requests that work.
	// (Bodies are read whatever their Content-Type: only a route that
	// declares a JSON body is checked.)
	if st/100 == 2 && len(reqBody) > 0 && op.RequestBody != nil {
		if m := op.RequestBody.Value.Content.Get(jsonType); m != nil {
			if err := validateBody(jsonType, m.Schema.Value, reqBody); err != nil {
				tb.Errorf("%s: the request taken does not match openapi.yaml: %v\n%.300s", label, err, reqBody)
			}
		}
	}
	if method == "HEAD" {
		return
	}
	mt, _, _ := mime.ParseMediaType(string(resp.Header.ContentType()))
	media := ref.Value.Content.Get(mt)
	if media == nil {
		tb.Errorf("%s: content type %q is not declared", label, mt)
		return
	}
	if err := validateBody(mt, media.Schema.Value, body); err != nil {
		tb.Errorf("%s: the answer does not match openapi.yaml: %v\n%.300s", label, err, body)
	}
}

// Every route with a role refuses a query parameter it does not take (400
// unknown_field naming it): openapi.yaml must declare that 400 for each.
func TestOpenAPIEveryRouteDeclaresItsRefusals(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("DOC-1", "EMP1", "371600", chronicVisit, oneLine))
	if status != 200 {
		t.Fatalf("settle: %d %s", status, body)
	}
	matrix := authzMatrix(t, decodeAnswer(t, body).SettlementID)
	token := map[Role]string{RoleHospital: "tok-H3716020001", RoleRegion: "tok-region-371600", RoleClearing: "tok-clearing"}
	routes := Routes()
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Pattern < routes[j].Pattern })
	for _, r := range routes {
		if r.Role == "" {
			continue
		}
		e := matrix[r.Method+" "+r.Pattern]
		sep := "?"
		if strings.Contains(e.path, "?") {
			sep = "&"
		}
		status, body := h.do(r.Method, e.path+sep+"r4_unknown=1", token[r.Role], e.body(1))
		if a := decodeAnswer(t, body); status != 400 || a.Error == nil || a.Error.Code != "unknown_field" || a.Error.Field != "r4_unknown" {
			t.Errorf("%s %s with an unknown query parameter: %d %.200s, want 400 unknown_field", r.Method, r.Pattern, status, body)
		}
	}
}

// The reference world's persons and catalogs (api.md: the same lines as
// the region uploads) are lines openapi.yaml's Person and CatalogEntry
// describe, so the schemas are no stricter than what the gateway takes.
func TestOpenAPIWorldLinesMatchSchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	for dir, schema := range map[string]string{"persons": "Person", "catalogs": "CatalogEntry"} {
		files, err := filepath.Glob(filepath.Join("..", "testdata", "world", dir, "*.ndjson"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no world %s: %v", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := validateBody("application/x-ndjson", doc.Components.Schemas[schema].Value, b); err != nil {
				t.Errorf("%s: not a %s of openapi.yaml: %v", f, schema, err)
			}
		}
	}
}

// `medgate serve --help` names every page of the admin listener (the
// ledger's report was missing, though README documents it).
func TestServeHelpNamesTheAdminPages(t *testing.T) {
	var b strings.Builder
	WriteUsage(&b)
	for _, page := range []string{"/debug/pprof/", "/debug/ledger", "/metrics"} {
		i := strings.Index(b.String(), "--admin-listen")
		if i < 0 || !strings.Contains(b.String()[i:i+200], page) {
			t.Errorf("serve --help does not name %s under --admin-listen:\n%s", page, b.String())
		}
	}
}

// README: invalid settings are reported "each with the value given". A
// missing --checkpoint-key file was "no such file or directory" without
// its name, and a negative --procs or --policy-instances without the value.
func TestInvalidSettingsNameTheirValue(t *testing.T) {
	s := DefaultSettings()
	key := filepath.Join(t.TempDir(), "none.key")
	s.CheckpointKey, s.Procs, s.PolicyInstances = key, -3, -4
	err := s.Validate()
	for _, want := range []string{"--checkpoint-key: " + key + ":", "--procs: must not be negative, not -3", "--policy-instances: must not be negative, not -4"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not say %q: %v", want, err)
		}
	}
}
