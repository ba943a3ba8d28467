package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/valyala/fasthttp"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// specPattern turns an OpenAPI path ("/v1/settlements/{settlement_id}")
// into a route pattern ("/v1/settlements/{}").
func specPattern(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}

// Every route of the table is in openapi.yaml, and nothing else is.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	inSpec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec[method+" "+specPattern(path)] = true
		}
	}
	inTable := map[string]bool{}
	for _, r := range Routes() {
		inTable[r.Method+" "+r.Pattern] = true
	}
	var missing, extra []string
	for k := range inTable {
		if !inSpec[k] {
			missing = append(missing, k)
		}
	}
	for k := range inSpec {
		if !inTable[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.yaml:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("openapi.yaml describes endpoints that are not routes:\n  %s", strings.Join(extra, "\n  "))
	}
	// Routes needing a token say so; the operators' do not.
	for _, r := range Routes() {
		for path, item := range doc.Paths.Map() {
			if specPattern(path) != r.Pattern || item.GetOperation(r.Method) == nil {
				continue
			}
			op := item.GetOperation(r.Method)
			public := op.Security != nil && len(*op.Security) == 0
			if public != (r.Role == "") {
				t.Errorf("%s %s: security in openapi.yaml does not match the route's role %q", r.Method, path, r.Role)
			}
		}
	}
}

// contract checks real answers against openapi.yaml.
type contract struct {
	t       *testing.T
	doc     *openapi3.T
	h       *harness
	covered map[string]map[int]bool // operationId → statuses seen
}

type exchange struct {
	status int
	ctype  string
	body   []byte
	header *fasthttp.ResponseHeader
}

func (c *contract) operation(method, path string) (string, *openapi3.Operation) {
	reqSegs := strings.Split(strings.SplitN(path, "?", 2)[0], "/")
	for specPath, item := range c.doc.Paths.Map() {
		segs := strings.Split(specPath, "/")
		if len(segs) != len(reqSegs) {
			continue
		}
		ok := true
		for i, s := range segs {
			if !(strings.HasPrefix(s, "{") && reqSegs[i] != "") && s != reqSegs[i] {
				ok = false
				break
			}
		}
		if op := item.GetOperation(method); ok && op != nil {
			return specPath, op
		}
	}
	return "", nil
}

// do sends a request, checks the request body (for an answer 2xx) and the
// answer against the operation's declared responses, and returns it.
func (c *contract) do(method, path, token string, body []byte, ctype string) exchange {
	t := c.t
	t.Helper()
	resp, err := c.h.roundTrip(method, path, token, ctype, body, 30*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer fasthttp.ReleaseResponse(resp)
	ex := exchange{status: resp.StatusCode(), ctype: string(resp.Header.ContentType()), body: append([]byte(nil), resp.Body()...)}
	ex.header = &fasthttp.ResponseHeader{}
	resp.Header.CopyTo(ex.header)
	label := fmt.Sprintf("%s %s → %d", method, path, ex.status)

	specPath, op := c.operation(method, path)
	if op == nil {
		// No such endpoint (404) or method (405): an Error all the same.
		if ex.status != 404 && ex.status != 405 {
			t.Fatalf("%s: no operation in openapi.yaml", label)
		}
		if err := validateBody(jsonType, c.doc.Components.Schemas["Error"].Value, ex.body); err != nil {
			t.Errorf("%s: not an Error: %v\n%s", label, err, ex.body)
		}
		return ex
	}
	if c.covered[op.OperationID] == nil {
		c.covered[op.OperationID] = map[int]bool{}
	}
	c.covered[op.OperationID][ex.status] = true
	if len(resp.Header.Peek("X-Request-Id")) == 0 {
		t.Errorf("%s: no X-Request-Id", label)
	}
	ref := op.Responses.Status(ex.status)
	if ref == nil {
		ref = op.Responses.Default()
	}
	if ref == nil || ref.Value == nil {
		t.Errorf("%s: status %d is not declared for %s %s: %s", label, ex.status, method, specPath, ex.body)
		return ex
	}
	mt, _, _ := mime.ParseMediaType(ex.ctype)
	media := ref.Value.Content.Get(mt)
	if media == nil {
		t.Errorf("%s: content type %q is not declared", label, ex.ctype)
		return ex
	}
	if err := validateBody(mt, media.Schema.Value, ex.body); err != nil {
		t.Errorf("%s: the answer does not match openapi.yaml: %v\n%s", label, err, ex.body)
	}
	// A request the gateway took must match the declared request body.
	if ex.status/100 == 2 && body != nil && op.RequestBody != nil && ctype == "application/json" {
		if m := op.RequestBody.Value.Content.Get(ctype); m == nil {
			t.Errorf("%s: request content type %s is not declared", label, ctype)
		} else if err := validateBody(ctype, m.Schema.Value, body); err != nil {
			t.Errorf("%s: the request taken does not match openapi.yaml: %v\n%s", label, err, body)
		}
	}
	return ex
}

func validateBody(mediaType string, schema *openapi3.Schema, body []byte) error {
	switch mediaType {
	case "application/json":
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		return schema.VisitJSON(v, openapi3.MultiErrors())
	case "application/x-ndjson":
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<24)
		for n := 1; sc.Scan(); n++ {
			var v any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				return fmt.Errorf("line %d is not JSON: %v", n, err)
			}
			if err := schema.VisitJSON(v, openapi3.MultiErrors()); err != nil {
				return fmt.Errorf("line %d: %v", n, err)
			}
		}
		return sc.Err()
	default:
		return schema.VisitJSON(string(body))
	}
}

const jsonType = "application/json"

func (c *contract) json(method, path, token string, body any, want int) map[string]any {
	c.t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	ex := c.do(method, path, token, b, jsonType)
	if ex.status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, ex.status, want, ex.body)
	}
	var m map[string]any
	json.Unmarshal(ex.body, &m)
	return m
}

// Real requests to every endpoint, answered 2xx and with errors: each
// answer's status is declared and its body matches the declared schema.
func TestOpenAPIAnswersMatch(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive, resident}})))
	c := &contract{t: t, doc: loadOpenAPI(t), h: h, covered: map[string]map[int]bool{}}
	const hosp, other = "tok-H3716020001", "tok-H3701020001"
	const region, clearing = "tok-region-371600", "tok-clearing"

	// Operators.
	c.json("GET", "/healthz", "", nil, 200)
	if ex := c.do("GET", "/metrics", "", nil, ""); ex.status != 200 {
		t.Fatalf("/metrics: %d", ex.status)
	}
	if ex := c.do("GET", "/openapi.yaml", "", nil, ""); ex.status != 200 || !bytes.Equal(ex.body, OpenAPI) {
		t.Fatalf("/openapi.yaml: %d", ex.status)
	}

	// Hospitals.
	settle := func(id, person string) []byte { return settleBody(id, person, "371600", chronicVisit, oneLine) }
	quote := []byte(strings.Replace(string(settle("x", "EMP1")), `"request_id":"x",`, "", 1))
	c.json("POST", "/v1/settlements/quote", hosp, quote, 200)
	c.json("POST", "/v1/settlements/quote", hosp, strings.Replace(string(quote), `"1000.00"}`, `"1000.001"}`, 1), 400)
	c.json("POST", "/v1/settlements/quote", "", quote, 401)
	c.json("POST", "/v1/settlements/quote", region, quote, 403)
	s1 := c.json("POST", "/v1/settlements", hosp, settle("O-1", "EMP1"), 200)["settlement_id"].(string)
	c.json("POST", "/v1/settlements", hosp, settle("O-1", "EMP1"), 200)
	c.json("POST", "/v1/settlements", hosp, settle("O-1", "RES1"), 409)
	c.json("POST", "/v1/settlements", hosp, settle("O-2", "NOBODY"), 422)
	c.json("POST", "/v1/settlements", hosp, bytes.Repeat([]byte(" "), MaxBodyBytes+1), 413)
	c.json("PUT", "/v1/settlements", hosp, nil, 405)
	c.json("GET", "/v1/settlements/"+s1, hosp, nil, 200)
	c.json("GET", "/v1/settlements/"+s1, other, nil, 404)
	s2 := c.json("POST", "/v1/settlements", hosp, settle("O-3", "RES1"), 200)["settlement_id"].(string)
	r2 := c.json("POST", "/v1/settlements/"+s2+"/reversal", hosp, `{"request_id":"O-4","reason":"test"}`, 200)["settlement_id"].(string)
	c.json("POST", "/v1/settlements/"+s2+"/reversal", hosp, `{"request_id":"O-5"}`, 409)
	c.json("POST", "/v1/settlements/"+s2+"/reversal", hosp, `{"reason":"no id"}`, 400)
	c.json("GET", "/v1/settlements/"+s1+"/proof", hosp, nil, 200)
	c.json("GET", "/v1/settlements/"+s1+"/proof?tree_size=x", hosp, nil, 400)

	// Reconciliation.
	today := time.Now().In(chinaTime).Format("2006-01-02")
	c.json("POST", "/v1/reconciliation/totals", hosp, map[string]any{"from": today, "to": today, "count": 3,
		"total": "1000.00", "fund_total": "0.00", "personal_account": "0.00"}, 200)
	c.json("POST", "/v1/reconciliation/totals", hosp, map[string]any{"from": today, "to": today}, 400)
	c.json("POST", "/v1/reconciliation/details", hosp, map[string]any{"from": today, "to": today, "settlements": []map[string]string{
		{"settlement_id": s1, "total": "1.00", "fund_total": "0.00", "personal_account": "0.00"},
		{"settlement_id": "S999999999999", "total": "1.00", "fund_total": "0.00", "personal_account": "0.00"},
	}}, 200)

	// Regions.
	c.do("POST", "/v1/regions/371600/persons", region, []byte(empActive+"\n{\"id\":\"BAD\"}\n"), "application/x-ndjson")
	c.json("POST", "/v1/regions/371600/persons", "tok-region-152500", empActive, 403)
	c.do("POST", "/v1/regions/371602/catalog", region, []byte(`{"code":"XZ01","class":"A"}`+"\n"+`{"code":"XZ02","class":"Q"}`), "application/x-ndjson")
	c.do("PUT", "/v1/regions/371602/catalog", region, []byte(`{"code":"XA01","class":"A"}`+"\n"+`{"code":"XB01","class":"B","selfpay_prop":"0.10"}`), "application/x-ndjson")
	if ex := c.do("PUT", "/v1/regions/371602/catalog", region, []byte(`{"code":"XZ02","class":"Q"}`), "application/x-ndjson"); ex.status != 400 {
		t.Fatalf("a bad catalog replacement: %d", ex.status)
	}
	c.json("POST", "/v1/regions/371600/persons/EMP1/credits", region, `{"reference":"CR-1","amount":"10.00"}`, 200)
	c.json("POST", "/v1/regions/371600/persons/NOBODY/credits", region, `{"reference":"CR-2","amount":"10.00"}`, 404)
	c.json("GET", "/v1/regions/371600/policies", region, nil, 200)
	c.json("GET", "/v1/regions/37160/policies", region, nil, 404)
	wasm, cases := referenceWasm(t, "371600", "v2024"), readCases(t, "371600-v2024.json")
	c.json("POST", "/v1/regions/371600/policies/check", region, upload("371600", "c1", "2030-01-01", wasm, cases, demoKey("371600")), 200)
	c.json("POST", "/v1/regions/371600/policies/check", region, upload("371600", "c2", "2030-01-01", []byte("\x00asm junk"), cases, demoKey("371600")), 422)
	c.json("POST", "/v1/regions/371600/policies", region, upload("371600", "v2030", "2030-01-01", wasm, cases, demoKey("371600")), 201)
	c.json("POST", "/v1/regions/371600/policies", region, upload("371600", "v2030", "2030-01-01", wasm, cases, demoKey("371600")), 200)
	c.json("POST", "/v1/regions/371600/policies", region, upload("371600", "v2030", "2030-02-01", wasm, cases, demoKey("371600")), 409)
	c.json("POST", "/v1/regions/371600/policies", region, upload("371600", "v2031", "2031-01-01", []byte("\x00asm junk"), cases, demoKey("371600")), 422)
	c.json("POST", "/v1/regions/371600/policies", region, upload("371600", "v2032", "2031-01-01", wasm, cases, demoKey("152500")), 403)
	c.json("POST", "/v1/regions/371600/policies", region, `{"version":"bad version"}`, 400)
	c.json("POST", "/v1/regions/371600/policies", region, upload("371600", "..", "2031-01-01", wasm, cases, demoKey("371600")), 400)
	c.json("POST", "/v1/regions/371600/policies", region, upload("371600", ".", "2031-01-01", wasm, cases, demoKey("371600")), 400)
	c.json("POST", "/v1/regions/371600/policies/v2030/withdraw", region, nil, 200)
	c.json("POST", "/v1/regions/371600/policies/v2030/withdraw", region, nil, 200) // the same withdrawal again: replayed
	c.json("POST", "/v1/regions/371600/policies/v1999/withdraw", region, nil, 404)
	c.json("POST", "/v1/regions/371600/shadow", region, map[string]any{"version": "v2023", "from": "2025-01-01", "to": "2025-12-31", "top": 5}, 200)
	c.json("POST", "/v1/regions/371600/shadow", region, map[string]any{"module": base64.StdEncoding.EncodeToString(wasm), "from": "2025-01-01", "to": "2025-12-31"}, 200)
	c.json("POST", "/v1/regions/371600/shadow", region, map[string]any{"from": "2025-01-01", "to": "2025-12-31"}, 400)
	c.json("POST", "/v1/regions/371600/replay", region, `{"from_seq":1}`, 200)
	c.json("POST", "/v1/regions/371600/replay", region, nil, 200)
	c.json("POST", "/v1/ledger/replay", clearing, nil, 200)
	c.json("POST", "/v1/ledger/replay", region, nil, 403)

	// Clearing.
	now := time.Now().In(chinaTime)
	month, last := now.Format("2006-01"), now.AddDate(0, -1, -now.Day()+1).Format("2006-01")
	c.json("GET", "/v1/clearing/months/"+month, clearing, nil, 200)
	c.json("GET", "/v1/clearing/months/2026-13", clearing, nil, 400)
	c.json("POST", "/v1/clearing/months/"+last+"/close", clearing, nil, 200)
	c.json("POST", "/v1/clearing/months/"+month+"/close", clearing, nil, 409)
	c.json("GET", "/v1/clearing/months/"+month, hosp, nil, 403)
	// EMP1's opening balance, the settlements and reversal above, CR-1.
	if ex := c.do("GET", "/v1/clearing/export", clearing, nil, ""); ex.status != 200 || bytes.Count(ex.body, []byte("\n")) != 5 ||
		string(ex.header.Peek("X-Ledger-To-Seq")) != "5" {
		t.Fatalf("export: %d %s %s", ex.status, ex.header.Peek("X-Ledger-To-Seq"), ex.body)
	}
	c.json("GET", "/v1/clearing/export?from_seq=0", clearing, nil, 400)
	c.json("GET", "/v1/clearing/checkpoint", clearing, nil, 200)
	c.json("GET", "/v1/clearing/checkpoint?tree_size=99", clearing, nil, 400)
	c.json("GET", "/v1/clearing/proofs/inclusion/"+r2+"?tree_size=4", clearing, nil, 200) // entry 4: after EMP1's opening balance
	c.json("GET", "/v1/clearing/proofs/inclusion/S999999999999", clearing, nil, 404)
	c.json("GET", "/v1/clearing/proofs/consistency?from=1", clearing, nil, 200)
	c.json("GET", "/v1/clearing/proofs/consistency", clearing, nil, 400)

	// Every operation was exercised, with a success.
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			ok := false
			for st := range c.covered[op.OperationID] {
				ok = ok || st/100 == 2
			}
			if !ok {
				t.Errorf("%s %s (%s) has no successful exchange in this test", method, path, op.OperationID)
			}
		}
	}
}
