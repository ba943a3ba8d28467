package gateway

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// logTo makes h's server log to a buffer at level (every line, no sampling).
func logTo(h *harness, level zerolog.Level) *syncBuffer {
	var buf syncBuffer
	log := zerolog.New(&buf).Level(level).With().Timestamp().Logger()
	h.srv.log = log
	h.srv.access = AccessLogSampling{Every: 1}.logger(log)
	h.srv.svc.log = log
	h.versions.log = log
	return &buf
}

// Person ids and diagnoses never reach the logs, at any level, whatever
// the request: a settlement, a quote, a refusal naming the person, a path
// holding the person's id.
func TestLogsHoldNoPersonalData(t *testing.T) {
	const person = "371602198807154321"
	const diagnosis = "E11.902"
	p := strings.Replace(empActive, `"EMP1"`, `"`+person+`"`, 1)
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {p}}))
	logs := logTo(h, zerolog.DebugLevel)

	visit := `{"type":"outpatient","visit_date":"2025-06-01","diagnoses":["` + diagnosis + `"]}`
	body := settleBody("L-1", person, "371600", visit, oneLine)
	a := decodeAnswer(t, mustDo(t, h, 200, "POST", "/v1/settlements", "tok-H3716020001", body))
	mustDo(t, h, 200, "POST", "/v1/settlements", "tok-H3716020001", body) // a replay
	quote := strings.Replace(string(body), `"request_id":"L-1",`, ``, 1)
	mustDo(t, h, 200, "POST", "/v1/settlements/quote", "tok-H3716020001", []byte(quote))
	mustDo(t, h, 409, "POST", "/v1/settlements", "tok-H3716020001", settleBody("L-1", person, "371600", visit, `[{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"}]`))
	mustDo(t, h, 422, "POST", "/v1/settlements", "tok-H3716020001", settleBody("L-2", person+"9", "371600", visit, oneLine))
	mustDo(t, h, 400, "POST", "/v1/settlements", "tok-H3716020001", settleBody("L-3", person, "371600", `{"type":"outpatient","diagnoses":["`+diagnosis+`"]}`, oneLine))
	mustDo(t, h, 200, "GET", "/v1/settlements/"+a.SettlementID, "tok-H3716020001", nil)
	mustDo(t, h, 200, "POST", "/v1/regions/371600/persons/"+person+"/credits", "tok-region-371600", []byte(`{"reference":"C-1","amount":"10.00"}`))
	mustDo(t, h, 404, "POST", "/v1/regions/371600/persons/"+person+"/debits", "tok-region-371600", nil)
	mustDo(t, h, 200, "POST", "/v1/settlements/"+a.SettlementID+"/reversal", "tok-H3716020001", []byte(`{"request_id":"L-4","reason":"patient `+person+`"}`))

	out := logs.String()
	for _, secret := range []string{person, diagnosis} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs hold %q:\n%s", secret, out)
		}
	}
	// Every request has its access line: id, method, route, status, duration.
	n := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("a log line is not JSON: %s", sc.Text())
		}
		if line["message"] != "request" {
			continue
		}
		n++
		for _, k := range []string{"req", "method", "route", "status", "took", "level"} {
			if _, ok := line[k]; !ok {
				t.Errorf("access line lacks %q: %s", k, sc.Text())
			}
		}
		if st := line["status"].(float64); st >= 400 && line["level"] != "warn" || st < 400 && line["level"] != "info" {
			t.Errorf("access line at the wrong level: %s", sc.Text())
		}
	}
	if n != 10 {
		t.Errorf("%d access lines for 10 requests:\n%s", n, out)
	}
	if !strings.Contains(out, `"route":"/v1/regions/{}/persons/{}/credits"`) || !strings.Contains(out, `"route":"unmatched"`) {
		t.Errorf("access lines do not name routes by pattern:\n%s", out)
	}
}

// Successful requests beyond the burst are sampled; failures never are.
func TestAccessLogSampling(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	var buf syncBuffer
	h.srv.access = AccessLogSampling{Burst: 3, Every: 1000}.logger(zerolog.New(&buf))
	for i := 0; i < 20; i++ {
		mustDo(t, h, 200, "GET", "/healthz", "", nil)
		mustDo(t, h, 401, "GET", "/v1/settlements/S1", "", nil)
	}
	out := buf.String()
	if ok, failed := strings.Count(out, `"status":200`), strings.Count(out, `"status":401`); ok > 4 || failed != 20 {
		t.Fatalf("%d successes and %d failures logged of 20 each:\n%s", ok, failed, out)
	}
}

func TestRedactIDs(t *testing.T) {
	for in, want := range map[string]string{
		"person \"37160219880715432X\": negative": "person \"[redacted]\": negative",
		"seq 123456789012345 and 42":              "seq [redacted] and 42",
		"S000000000001 ok":                        "S000000000001 ok",
		"":                                        "",
	} {
		if got := redactIDs(in); got != want {
			t.Errorf("redactIDs(%q) = %q, want %q", in, got, want)
		}
	}
}
