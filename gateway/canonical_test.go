package gateway

import (
	"strconv"
	"testing"

	"medgate/engine/abi"
)

// TestCanonicalFormIsStable pins the bytes appendCanonical writes: their
// hash is stored with every settlement to tell a retry from a reused
// request id, across restarts and versions, so they must never change.
// It also checks that it appends without allocating.
func TestCanonicalFormIsStable(t *testing.T) {
	r := &SettleRequest{
		RequestID:     "R-1",
		PersonID:      "152500198001011234",
		InsuredRegion: "152500",
		Visit: abi.Visit{
			Type: abi.VisitInpatient, AdmittedOn: 20000, DischargedOn: 20008,
			VisitDate: 20008, BirthOrder: 0, Emergency: true, Diagnoses: []string{"I10", "E11"},
		},
		UseAccount: true,
		Items: []Item{
			{Code: "XA01", UnitPrice: 12_500_000, Quantity: 20_000, Amount: 2500, TraceCodes: []string{"83912345678901234567"}},
			{Code: "中药", UnitPrice: 1, Quantity: 1, Amount: 0},
		},
	}
	want := "settle\x00" + "3:R-1" + "18:152500198001011234" + "6:152500" +
		itoa(int64(abi.VisitInpatient)) + ";20000;20008;20008;0;" + "EA" + "2;" + "3:I10" + "3:E11" +
		"2;" + "4:XA01" + "12500000;20000;2500;1;" + "20:83912345678901234567" +
		"6:中药" + "1;1;0;0;"
	if got := string(r.appendCanonical(nil)); got != want {
		t.Fatalf("canonical form changed:\n got %q\nwant %q", got, want)
	}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = r.appendCanonical(buf[:0]) }); n != 0 {
		t.Errorf("appendCanonical: %v allocations into a large enough buffer, want 0", n)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
