// Package money parses and prints the gateway's exact amounts: yuan strings
// with a fixed number of decimals, held as scaled integers (fen for money,
// micro-yuan for unit prices, ten-thousandths for quantities and ratios).
// Nothing here uses floating point.
package money

import (
	"errors"
	"math/bits"
	"strconv"
)

// Scales of the integer forms.
const (
	FenPerYuan     = 100
	MicroPerYuan   = 1_000_000
	QuantityScale  = 10_000               // quantity in ten-thousandths (4 decimals)
	RatioScale     = 10_000               // ratios in ten-thousandths (4 decimals)
	MaxFen         = 1_000_000_000_000_00 // 1e12 yuan: far above any bill
	maxIntegerPart = 1_000_000_000_000    // digits before the point
)

// Errors of Parse; callers turn them into a message naming the field.
var (
	ErrEmpty     = errors.New("is empty")
	ErrNegative  = errors.New("is negative")
	ErrSyntax    = errors.New("is not a decimal number")
	ErrDecimals  = errors.New("has too many decimals")
	ErrTooLarge  = errors.New("is too large")
	ErrNotAmount = errors.New("must be a string")
)

// Parse reads a non-negative decimal string with at most decimals digits
// after the point and returns it scaled by 10^decimals. It accepts "12",
// "12.5", "12.50"; it refuses signs, exponents, spaces, a bare ".", and
// more than decimals digits after the point — a hospital's amount with three
// decimals is an error, not something to round.
func Parse(s []byte, decimals int) (int64, error) {
	if len(s) == 0 {
		return 0, ErrEmpty
	}
	if s[0] == '-' {
		return 0, ErrNegative
	}
	var whole, frac int64
	i := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		whole = whole*10 + int64(s[i]-'0')
		if whole >= maxIntegerPart {
			return 0, ErrTooLarge
		}
	}
	if i == 0 {
		return 0, ErrSyntax
	}
	nfrac := 0
	if i < len(s) {
		if s[i] != '.' || i == len(s)-1 {
			return 0, ErrSyntax
		}
		for i++; i < len(s); i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, ErrSyntax
			}
			if nfrac == decimals {
				return 0, ErrDecimals
			}
			frac = frac*10 + int64(c-'0')
			nfrac++
		}
	}
	for ; nfrac < decimals; nfrac++ {
		frac *= 10
	}
	return whole*pow10[decimals] + frac, nil
}

var pow10 = [...]int64{1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000}

// AppendFen appends fen as yuan with two decimals ("-12.05").
func AppendFen(b []byte, fen int64) []byte {
	u := uint64(fen)
	if fen < 0 {
		b = append(b, '-')
		u = uint64(-fen)
	}
	b = strconv.AppendUint(b, u/100, 10)
	c := u % 100
	return append(b, '.', byte('0'+c/10), byte('0'+c%10))
}

// FormatFen is AppendFen as a string.
func FormatFen(fen int64) string { return string(AppendFen(nil, fen)) }

// AppendScaled appends v scaled by 10^decimals with all its decimals.
func AppendScaled(b []byte, v int64, decimals int) []byte {
	u := uint64(v)
	if v < 0 {
		b = append(b, '-')
		u = uint64(-v)
	}
	p := uint64(pow10[decimals])
	b = strconv.AppendUint(b, u/p, 10)
	if decimals == 0 {
		return b
	}
	b = append(b, '.')
	frac := strconv.AppendUint(nil, u%p+p, 10) // leading 1 keeps the zeros
	return append(b, frac[1:]...)
}

// MulRound returns round_half_up(a × b / div) for non-negative a, b and a
// positive div, exactly (128-bit intermediate). ok is false when the result
// does not fit in an int64.
func MulRound(a, b, div int64) (v int64, ok bool) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	// add div/2 for half-up rounding
	var carry uint64
	lo, carry = bits.Add64(lo, uint64(div/2), 0)
	hi += carry
	if hi >= uint64(div) {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, uint64(div))
	if q > 1<<63-1 {
		return 0, false
	}
	return int64(q), true
}

// LineAmount is round(unit_price × quantity) in fen, for unit_price in
// micro-yuan and quantity in ten-thousandths.
func LineAmount(unitPriceMicro, quantity int64) (int64, bool) {
	// micro × 1e-4 units = 1e-10 yuan; fen = 1e-2 yuan: divide by 1e8.
	return MulRound(unitPriceMicro, quantity, 100_000_000)
}
