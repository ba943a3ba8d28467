// Package rules holds the arithmetic that the reference policies share:
// half-up rounding of integer ratios, tiered (segmented) ratios, the
// serious-illness PAY function counted from a threshold, the cross-region
// ratio adjustment, the waiting-period date arithmetic, annual caps, and the
// common steps of policies.md §2 (serious illness, medical assistance,
// personal account).
//
// Everything is integer fen (int64) and integer basis points (1 bp = 0.01 %,
// so 92.5 % is 9250); nothing here uses floating point. The package imports
// only strconv and medgate/engine/abi so that it compiles small for
// GOOS=wasip1 as well as natively.
package rules

import "strconv"

// Full is 100 % in basis points.
const Full = 10000

// Yuan converts whole yuan to fen.
func Yuan(y int64) int64 { return y * 100 }

// Pct returns round_half_up(x × bp / 10000) for x ≥ 0 and bp ≥ 0 without
// overflowing for any x that fits int64 (x is split by 10000 first).
// Negative inputs are treated as 0.
func Pct(x, bp int64) int64 {
	if x <= 0 || bp <= 0 {
		return 0
	}
	q, r := x/Full, x%Full
	return q*bp + (r*bp+Full/2)/Full
}

// Min returns the smaller of a and b.
func Min(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

// Max returns the larger of a and b.
func Max(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Room is what is left of a limit after used has been taken, never below 0.
func Room(limit, used int64) int64 { return Max(0, limit-used) }

// CutToCap returns amount cut to the room left under cap after used.
func CutToCap(amount, cap, used int64) int64 { return Min(Max(0, amount), Room(cap, used)) }

// ClampBP bounds a ratio to [0, 100 %].
func ClampBP(bp int64) int64 {
	if bp < 0 {
		return 0
	}
	if bp > Full {
		return Full
	}
	return bp
}

// AppendMoney appends fen as yuan with two decimals ("1234.50", "-0.05").
func AppendMoney(b []byte, fen int64) []byte {
	u := uint64(fen)
	if fen < 0 {
		b = append(b, '-')
		u = uint64(-fen) // correct for MinInt64 too, as unsigned
	}
	b = strconv.AppendUint(b, u/100, 10)
	c := u % 100
	return append(b, '.', byte('0'+c/10), byte('0'+c%10))
}

// Money formats fen as yuan with two decimals.
func Money(fen int64) string { return string(AppendMoney(make([]byte, 0, 24), fen)) }

// AppendPercent appends a ratio in basis points as a percentage without
// trailing zeros: 8500 → "85%", 9250 → "92.5%", 6525 → "65.25%".
func AppendPercent(b []byte, bp int64) []byte {
	if bp < 0 {
		b = append(b, '-')
		bp = -bp
	}
	b = strconv.AppendInt(b, bp/100, 10)
	if f := bp % 100; f != 0 {
		b = append(b, '.', byte('0'+f/10))
		if f%10 != 0 {
			b = append(b, byte('0'+f%10))
		}
	}
	return append(b, '%')
}

// Percent formats a ratio in basis points ("92.5%").
func Percent(bp int64) string { return string(AppendPercent(make([]byte, 0, 12), bp)) }
