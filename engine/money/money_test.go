package money

import (
	"testing"

	"github.com/shopspring/decimal"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		decimals int
		want     int64
		err      error
	}{
		{"12.50", 2, 1250, nil},
		{"12.5", 2, 1250, nil},
		{"12", 2, 1200, nil},
		{"0.01", 2, 1, nil},
		{"0", 2, 0, nil},
		{"12.505", 2, 0, ErrDecimals},
		{"-1.00", 2, 0, ErrNegative},
		{"", 2, 0, ErrEmpty},
		{".5", 2, 0, ErrSyntax},
		{"5.", 2, 0, ErrSyntax},
		{"1e3", 2, 0, ErrSyntax},
		{" 1", 2, 0, ErrSyntax},
		{"+1", 2, 0, ErrSyntax},
		{"1.2.3", 2, 0, ErrSyntax},
		{"12.123456", 6, 12123456, nil},
		{"0.0001", 4, 1, nil},
		{"99999999999999", 2, 0, ErrTooLarge},
	}
	for _, tt := range tests {
		got, err := Parse([]byte(tt.in), tt.decimals)
		if err != tt.err || got != tt.want {
			t.Errorf("Parse(%q, %d) = %d, %v; want %d, %v", tt.in, tt.decimals, got, err, tt.want, tt.err)
		}
	}
}

func TestFormat(t *testing.T) {
	for fen, want := range map[int64]string{0: "0.00", 5: "0.05", -5: "-0.05", 123456: "1234.56", -200000: "-2000.00"} {
		if got := FormatFen(fen); got != want {
			t.Errorf("FormatFen(%d) = %q, want %q", fen, got, want)
		}
	}
	if got := string(AppendScaled(nil, 1000, 4)); got != "0.1000" {
		t.Errorf("AppendScaled = %q", got)
	}
}

// TestLineAmountMatchesDecimal checks the integer arithmetic against
// shopspring/decimal on awkward values.
func TestLineAmountMatchesDecimal(t *testing.T) {
	prices := []string{"0.000001", "0.005", "12.50", "45.555555", "999999.999999", "0.333333", "123456789.123456"}
	qtys := []string{"0.0001", "1", "2.5", "3.3333", "9999.9999", "0.5"}
	for _, p := range prices {
		for _, q := range qtys {
			pm, _ := Parse([]byte(p), 6)
			qm, _ := Parse([]byte(q), 4)
			got, ok := LineAmount(pm, qm)
			want := decimal.RequireFromString(p).Mul(decimal.RequireFromString(q)).Round(2) // half away from zero = half up for positives
			if !ok || FormatFen(got) != want.StringFixed(2) {
				t.Errorf("LineAmount(%s, %s) = %s, want %s", p, q, FormatFen(got), want.StringFixed(2))
			}
		}
	}
}

func TestMulRound(t *testing.T) {
	if v, ok := MulRound(5, 1000, 10000); !ok || v != 1 { // 0.5 fen rounds up
		t.Errorf("MulRound half = %d", v)
	}
	if v, ok := MulRound(4, 1000, 10000); !ok || v != 0 {
		t.Errorf("MulRound below half = %d", v)
	}
	if _, ok := MulRound(1<<62, 1<<62, 1); ok {
		t.Error("overflow not detected")
	}
}
