package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"medgate/engine"
	"medgate/engine/wasmgen"
)

// TestQuoteRefusesInTheSettlementsOrder: a quote tells the hospital what
// the settlement of the same bill would answer, so a bill that both reuses
// a settled trace code and fails in its region's policy gets the same
// refusal from both (the policy's, which a settlement meets first: its
// trace codes are checked when it is appended). Before, the quote looked
// its codes up before calling the policy and answered 409 where the
// settlement answered 422.
func TestQuoteRefusesInTheSettlementsOrder(t *testing.T) {
	h, eng := twoRegionHarness(t)
	coded := `[{"code":"XA01","unit_price":"10.00","quantity":"1","amount":"10.00","trace_codes":["83900000000000000077"]}]`
	if status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("Q-ORDER-1", "EMP1", "371600", chronicVisit, coded)); status != 200 {
		t.Fatalf("first settlement: %d %s", status, body)
	}
	m, err := eng.Load(context.Background(), "152500", "trap", wasmgen.Policy(1, 8192, []byte{wasmgen.OpUnreachable}).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	h.policies.Put("152500", engine.Version{Name: "trap", EffectiveFrom: 20230101, Module: m})
	head := h.head()

	var got [2]string
	for i, path := range []string{"/v1/settlements/quote", "/v1/settlements"} {
		status, body := h.do("POST", path, "tok-H3716020001", settleBody("Q-ORDER-2", "EMP2", "152500", chronicVisit, coded))
		var a answer
		json.Unmarshal(body, &a)
		if a.Error == nil {
			t.Fatalf("%s: %d %s, want an error", path, status, body)
		}
		got[i] = strings.Join([]string{itoa(int64(status)), a.Error.Code}, " ")
	}
	if got[0] != got[1] || got[1] != "422 policy_failed" {
		t.Fatalf("quote answered %q, settlement %q: want both 422 policy_failed", got[0], got[1])
	}
	if h.head() != head {
		t.Fatalf("ledger head moved from %d to %d", head, h.head())
	}
}
