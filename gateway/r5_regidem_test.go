package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"medgate/engine/abi"
)

// doKeyed is harness.do with Idempotency-Key headers (one per key; none
// for no keys).
func (h *harness) doKeyed(method, path, token string, keys []string, body []byte) (int, []byte) {
	h.tb.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://gateway" + path)
	req.Header.Set("Authorization", "Bearer "+token)
	for _, k := range keys {
		req.Header.Add("Idempotency-Key", k)
	}
	req.SetBody(body)
	req.Header.SetContentType("application/x-ndjson")
	if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		h.tb.Fatalf("%s %s: %v", method, path, err)
	}
	checkAnswer(h.tb, method, path, body, resp)
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

// regionAnswer decodes a region write's answer into a map, and says
// whether it was replayed.
func regionAnswer(tb testing.TB, status int, body []byte) (map[string]any, bool) {
	tb.Helper()
	var m map[string]any
	if status != 200 || json.Unmarshal(body, &m) != nil {
		tb.Fatalf("answer %d %s", status, body)
	}
	r, _ := m["replayed"].(bool)
	return m, r
}

// sameAnswerBut compares two answers apart from "replayed".
func sameAnswerBut(tb testing.TB, what string, first, again map[string]any) {
	tb.Helper()
	a, b := map[string]any{}, map[string]any{}
	for k, v := range first {
		a[k] = v
	}
	for k, v := range again {
		b[k] = v
	}
	delete(a, "replayed")
	delete(b, "replayed")
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		tb.Errorf("%s: the replay is not the first answer:\nfirst %s\nagain %s", what, ja, jb)
	}
}

const regidemPersons, regidemTok = "/v1/regions/371600/persons", "tok-region-371600"

// TestRegionKeyPersonsRetryDoesNotUndoALaterChange: a region's job sends
// an upsert that times out but was applied; the region then changes the
// person (retired); the job retries its first upsert. With the same
// Idempotency-Key the retry is answered with the first answer
// ("replayed": true) and writes nothing: the person stays retired.
func TestRegionKeyPersonsRetryDoesNotUndoALaterChange(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	first := strings.Replace(empActive, "EMP1", "NEW1", 1)
	st, out := h.doKeyed("POST", regidemPersons, regidemTok, []string{"job-2026-12-05-001"}, []byte(first))
	a1, replayed := regionAnswer(t, st, out)
	if replayed || a1["replayed"] != false || a1["created"] != float64(1) {
		t.Fatalf("first upsert: %s", out)
	}
	later := strings.Replace(first, `"employment":"active"`, `"employment":"retired"`, 1)
	if st, out := h.do("POST", regidemPersons, regidemTok, []byte(later)); st != 200 {
		t.Fatalf("later change: %d %s", st, out)
	}
	st, out = h.doKeyed("POST", regidemPersons, regidemTok, []string{"job-2026-12-05-001"}, []byte(first))
	a2, replayed := regionAnswer(t, st, out)
	if !replayed {
		t.Errorf("the retry is not said replayed: %s", out)
	}
	sameAnswerBut(t, "persons", a1, a2)
	if p, ok, err := h.db.Person("371600", "NEW1"); err != nil || !ok || p.Facts.Employment != abi.EmploymentRetired {
		t.Errorf("the retry undid the later change: %+v %v %v", p.Facts, ok, err)
	}
	// Without the header a write is as it was: no "replayed", written again.
	st, out = h.do("POST", regidemPersons, regidemTok, []byte(first))
	if a3, _ := regionAnswer(t, st, out); a3["replayed"] != nil {
		t.Errorf("an answer without a key says replayed: %s", out)
	}
	if p, _, _ := h.db.Person("371600", "NEW1"); p.Facts.Employment != abi.EmploymentActive {
		t.Errorf("a write without a key was not applied")
	}
}

// TestRegionKeyCatalogRetryDoesNotUndoALaterChange: the same for a
// catalog replacement (PUT) and a catalog upsert (POST): a price cap
// changed after the first attempt stays changed.
func TestRegionKeyCatalogRetryDoesNotUndoALaterChange(t *testing.T) {
	for _, method := range []string{"PUT", "POST"} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, refWorld(t, nil))
			const path = "/v1/regions/371602/catalog"
			first := `{"code":"XA01","class":"A"}` + "\n" + `{"code":"XA02","class":"A","price_cap":"100.00"}` + "\n"
			st, out := h.doKeyed(method, path, regidemTok, []string{"cat-1"}, []byte(first))
			a1, replayed := regionAnswer(t, st, out)
			if replayed {
				t.Fatalf("first write replayed: %s", out)
			}
			if st, out := h.do("POST", path, regidemTok, []byte(`{"code":"XA02","class":"A","price_cap":"80.00"}`)); st != 200 {
				t.Fatalf("later change: %d %s", st, out)
			}
			st, out = h.doKeyed(method, path, regidemTok, []string{"cat-1"}, []byte(first))
			a2, replayed := regionAnswer(t, st, out)
			if !replayed {
				t.Errorf("the retry is not said replayed: %s", out)
			}
			sameAnswerBut(t, "catalog", a1, a2)
			c, _ := h.db.Catalog("371602")
			if e, ok := c.Lookup("XA02"); !ok || e.PriceCap != 80_000_000 {
				t.Errorf("the retry undid the later price cap: %+v %v", e, ok)
			}
		})
	}
}

// TestRegionKeySurvivesARestart: the key is in the store, not in memory.
func TestRegionKeySurvivesARestart(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	first := strings.Replace(empActive, `"employment":"active"`, `"employment":"retired"`, 1)
	st, out := h.doKeyed("POST", regidemPersons, regidemTok, []string{"k-restart"}, []byte(first))
	a1, _ := regionAnswer(t, st, out)
	if st, out := h.do("POST", regidemPersons, regidemTok, []byte(empActive)); st != 200 {
		t.Fatalf("later change: %d %s", st, out)
	}
	h.restart()
	st, out = h.doKeyed("POST", regidemPersons, regidemTok, []string{"k-restart"}, []byte(first))
	a2, replayed := regionAnswer(t, st, out)
	if !replayed {
		t.Errorf("after a restart the retry is not a replay: %s", out)
	}
	sameAnswerBut(t, "after a restart", a1, a2)
	if p, _, _ := h.db.Person("371600", "EMP1"); p.Facts.Employment != abi.EmploymentActive {
		t.Errorf("after a restart the retry undid the later change")
	}
}

// keyError checks an error answer names the header.
func keyError(tb testing.TB, what string, st int, out []byte, wantStatus int, wantCode string) {
	tb.Helper()
	a := decodeAnswer(tb, out)
	if st != wantStatus || a.Error == nil || a.Error.Code != wantCode || a.Error.Field != "Idempotency-Key" {
		tb.Errorf("%s: %d %s, want %d %s naming Idempotency-Key", what, st, out, wantStatus, wantCode)
	}
}

// TestRegionKeyReusedElsewhereConflicts: the same key with another body,
// or on another route (another method, another region's catalog, the
// persons route), is 409 idempotency_conflict naming the header, and
// writes nothing.
func TestRegionKeyReusedElsewhereConflicts(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}}))
	const cat = "/v1/regions/371602/catalog"
	body := `{"code":"XA02","class":"A","price_cap":"90.00"}`
	if st, out := h.doKeyed("POST", cat, regidemTok, []string{"k1"}, []byte(body)); st != 200 {
		t.Fatalf("first: %d %s", st, out)
	}
	other := `{"code":"XA02","class":"A","price_cap":"70.00"}`
	st, out := h.doKeyed("POST", cat, regidemTok, []string{"k1"}, []byte(other))
	keyError(t, "another body", st, out, 409, "idempotency_conflict")
	st, out = h.doKeyed("PUT", cat, regidemTok, []string{"k1"}, []byte(other))
	keyError(t, "another method", st, out, 409, "idempotency_conflict")
	st, out = h.doKeyed("POST", "/v1/regions/371621/catalog", regidemTok, []string{"k1"}, []byte(other))
	keyError(t, "another region's catalog", st, out, 409, "idempotency_conflict")
	c, _ := h.db.Catalog("371602")
	if e, _ := c.Lookup("XA02"); e.PriceCap != 90_000_000 {
		t.Errorf("a conflict wrote: price cap %d", e.PriceCap)
	}
	if c, _ := h.db.Catalog("371621"); c.Len() != 4 {
		t.Errorf("a conflict wrote into 371621's catalog: %d codes", c.Len())
	}
	if _, ok := h.db.Catalog("371602"); !ok {
		t.Errorf("a conflicting PUT replaced the catalog")
	}
	newP := strings.Replace(empActive, "EMP1", "NEW9", 1)
	st, out = h.doKeyed("POST", regidemPersons, regidemTok, []string{"k1"}, []byte(newP))
	keyError(t, "the persons route", st, out, 409, "idempotency_conflict")
	if _, ok, _ := h.db.Person("371600", "NEW9"); ok {
		t.Errorf("a conflicting upsert wrote a person")
	}
}

// TestRegionKeyIsPerRegion: two regions using the same key are two
// writes.
func TestRegionKeyIsPerRegion(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	p := strings.Replace(empActive, "EMP1", "SAME1", 1)
	for _, region := range []string{"371600", "152500"} {
		st, out := h.doKeyed("POST", "/v1/regions/"+region+"/persons", "tok-region-"+region, []string{"shared-key"}, []byte(p))
		if a, replayed := regionAnswer(t, st, out); replayed || a["created"] != float64(1) {
			t.Errorf("region %s with another region's key: %s", region, out)
		}
		if _, ok, err := h.db.Person(region, "SAME1"); !ok || err != nil {
			t.Errorf("region %s: person not written (%v)", region, err)
		}
	}
}

// TestRegionKeyMalformedRefused: a key that is empty, too long, holds a
// space, a control character or a byte outside printable ASCII, or is
// sent twice, is 400 naming the header, and nothing is written.
func TestRegionKeyMalformedRefused(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	p := strings.Replace(empActive, "EMP1", "BAD1", 1)
	cases := map[string][]string{
		"empty":      {""},
		"too long":   {strings.Repeat("k", 65)},
		"space":      {"job 1"},
		"tab":        {"job\t1"},
		"non-ASCII":  {"job\u00a01"},
		"sent twice": {"a", "a"},
	}
	for what, keys := range cases {
		st, out := h.doKeyed("POST", regidemPersons, regidemTok, keys, []byte(p))
		code := "invalid_field"
		if len(keys) > 1 {
			code = "duplicate_field"
		}
		keyError(t, what, st, out, 400, code)
		st, out = h.doKeyed("PUT", "/v1/regions/371602/catalog", regidemTok, keys, []byte(`{"code":"ZZ01","class":"A"}`))
		keyError(t, what+" (catalog)", st, out, 400, code)
	}
	if _, ok, _ := h.db.Person("371600", "BAD1"); ok {
		t.Errorf("a refused key wrote a person")
	}
	if c, _ := h.db.Catalog("371602"); c.Len() != 4 {
		t.Errorf("a refused key replaced the catalog: %d codes", c.Len())
	}
	// 64 printable characters are a key.
	k := strings.Repeat("~", 32) + strings.Repeat("!", 32)
	if st, out := h.doKeyed("POST", regidemPersons, regidemTok, []string{k}, []byte(p)); st != 200 {
		t.Errorf("a key of 64 printable characters: %d %s", st, out)
	}
}

// TestRegionKeyRetriesAtOnce: the same keyed write sent ten times at once
// is written once; every other answer is the first, replayed.
func TestRegionKeyRetriesAtOnce(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	const path = "/v1/regions/371602/catalog"
	body := []byte(`{"code":"XA02","class":"A","price_cap":"60.00"}` + "\n" + `{"code":"XN01","class":"A"}`)
	type got struct {
		st  int
		out []byte
	}
	ch := make(chan got, 10)
	for i := 0; i < 10; i++ {
		go func() {
			st, out := h.doKeyed("PUT", path, regidemTok, []string{"at-once"}, body)
			ch <- got{st, out}
		}()
	}
	var first map[string]any
	fresh := 0
	for i := 0; i < 10; i++ {
		g := <-ch
		a, replayed := regionAnswer(t, g.st, g.out)
		if !replayed {
			fresh++
		}
		if first == nil {
			first = a
		} else {
			sameAnswerBut(t, "at once", first, a)
		}
	}
	if fresh != 1 {
		t.Errorf("%d answers were not replays, want 1", fresh)
	}
	if c, _ := h.db.Catalog("371602"); c.Len() != 2 {
		t.Errorf("catalog has %d codes", c.Len())
	}
}
