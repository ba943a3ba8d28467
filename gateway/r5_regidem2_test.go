package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestRegionKeyBalanceNotAppliedIsBounded: a region's nightly job re-sends
// its whole roster, each line with its account_balance; every known
// person's line was listed in balance_not_applied, so the answer grew with
// the roster (30,000 persons: 2.3 MB; a 32 MiB upload: about 45 MB), and
// under an Idempotency-Key the whole of it was built on the ledger's
// writer and stored with the key for good, once a night. The list now
// stops at MaxRejectedListed lines, as rejected does, and
// balance_not_applied_total counts them all; the replay is the same.
func TestRegionKeyBalanceNotAppliedIsBounded(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	const n = MaxRejectedListed + 500
	var body bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&body, `{"id":"R%d","scheme":"resident","account_balance":"1.00"}`+"\n", i)
	}
	if st, out := h.do("POST", regidemPersons, regidemTok, body.Bytes()); st != 200 {
		t.Fatalf("roster: %d %.300s", st, out)
	}
	type answer struct {
		Updated           int
		BalanceNotApplied []balanceNotApplied `json:"balance_not_applied"`
		Total             *int                `json:"balance_not_applied_total"`
		Replayed          bool
	}
	check := func(what string, st int, out []byte, replayed bool) {
		t.Helper()
		var a answer
		if st != 200 || json.Unmarshal(out, &a) != nil {
			t.Fatalf("%s: %d %.300s", what, st, out)
		}
		if a.Updated != n || a.Replayed != replayed {
			t.Fatalf("%s: updated %d, replayed %v", what, a.Updated, a.Replayed)
		}
		if len(a.BalanceNotApplied) != MaxRejectedListed || a.Total == nil || *a.Total != n {
			t.Fatalf("%s: %d balances not applied listed, total %v; want %d and %d (answer %d bytes)",
				what, len(a.BalanceNotApplied), a.Total, MaxRejectedListed, n, len(out))
		}
		first, last := a.BalanceNotApplied[0], a.BalanceNotApplied[MaxRejectedListed-1]
		if first.Line != 1 || first.ID != "R0" || last.Line != MaxRejectedListed || last.OpeningBalance != "1.00" {
			t.Fatalf("%s: listed %+v .. %+v", what, first, last)
		}
	}
	st, out := h.do("POST", regidemPersons, regidemTok, body.Bytes())
	check("without a key", st, out, false)
	st, out = h.doKeyed("POST", regidemPersons, regidemTok, []string{"nightly-1"}, body.Bytes())
	check("keyed", st, out, false)
	st, out = h.doKeyed("POST", regidemPersons, regidemTok, []string{"nightly-1"}, body.Bytes())
	check("replayed", st, out, true)
}

// TestRegionKeyRejectedReasonsAreBounded: rejected lists at most
// MaxRejectedListed lines, but each reason quoted the value it refused
// whole, so one persons line with a scheme of 8 MiB of bytes that are not
// UTF-8 was answered in 25 MB (each byte quoted as U+FFFD, three bytes),
// and under an Idempotency-Key that answer was built on the ledger's
// writer and stored with the key. A reason is now cut at MaxReasonBytes,
// still naming the field and its line.
func TestRegionKeyRejectedReasonsAreBounded(t *testing.T) {
	h := newHarness(t, refWorld(t, nil))
	// (Bytes that are not UTF-8 are now refused before any field is
	// read, naming the field without quoting it: a long value of UTF-8
	// text is what a reason could still quote.)
	huge := strings.Repeat("\u00e9", 1<<19)
	cases := []struct{ what, method, path, line, reason string }{
		{"persons", "POST", regidemPersons, `{"id":"X1","scheme":"` + huge + `"}`, `scheme "`},
		{"catalog", "POST", "/v1/regions/371602/catalog", `{"code":"XZ01","class":"` + huge + `"}`, `class "`},
		{"catalog replacement", "PUT", "/v1/regions/371602/catalog", `{"code":"XZ01","class":"A","price_cap":"` + huge + `"}`, `price_cap "`},
	}
	for i, c := range cases {
		st, out := h.doKeyed(c.method, c.path, regidemTok, []string{fmt.Sprintf("huge-%d", i)}, []byte(c.line+"\n"))
		var a struct{ Rejected []LineError }
		if (st != 200 && st != 400) || json.Unmarshal(out, &a) != nil || len(a.Rejected) != 1 {
			t.Fatalf("%s: %d %.300s", c.what, st, out)
		}
		r := a.Rejected[0]
		if r.Line != 1 || !bytes.HasPrefix([]byte(r.Reason), []byte(c.reason)) || len(r.Reason) > MaxReasonBytes+len("…") || len(out) > 4096 {
			t.Errorf("%s: answer of %d bytes, reason of %d: %.200s", c.what, len(out), len(r.Reason), r.Reason)
		}
	}
}
