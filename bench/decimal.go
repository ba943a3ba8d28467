package bench

import (
	"math/rand/v2"
	"strconv"
)

// Amounts in requests are exact decimal strings (api.md); the generator
// holds them as scaled integers and never uses floating point for them.
const (
	microPerYuan = 1_000_000 // unit_price scale (6 decimals)
	qtyScale     = 10_000    // quantity scale (4 decimals)
)

var pow10 = [...]int64{1, 10, 100, 1_000, 10_000, 100_000, 1_000_000}

// lineAmount is round_half_up(unit_price × quantity) in fen, for a unit
// price in micro-yuan and a quantity in ten-thousandths: the gateway
// refuses a line whose amount is anything else. Prices below 10,000 yuan
// and quantities below 100 keep the product far inside int64.
func lineAmount(priceMicro, qty int64) int64 {
	const div = microPerYuan * qtyScale / 100 // 1e-10 yuan → fen
	return (priceMicro*qty + div/2) / div
}

// appendScaled appends v/10^scale with exactly decimals digits after the
// point (none and no point when decimals is 0). v must be a multiple of
// 10^(scale-decimals).
func appendScaled(b []byte, v int64, scale, decimals int) []byte {
	p := pow10[scale]
	b = strconv.AppendInt(b, v/p, 10)
	if decimals == 0 {
		return b
	}
	frac := v%p/pow10[scale-decimals] + pow10[decimals] // leading 1 keeps the zeros
	return append(append(b, '.'), strconv.AppendInt(nil, frac, 10)[1:]...)
}

func appendFen(b []byte, fen int64) []byte { return appendScaled(b, fen, 2, 2) }

func formatFen(fen int64) string { return string(appendFen(nil, fen)) }

// date is a civil date as days since 1970-01-01.
type date int32

func makeDate(y, m, d int) date {
	// Days from civil (H. Hinnant), integers only.
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return date(era*146097 + doe - 719468)
}

func (d date) civil() (y, m, dd int) {
	z := int(d) + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	dd = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, dd
}

func (d date) appendTo(b []byte) []byte {
	y, m, dd := d.civil()
	return append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+dd/10), byte('0'+dd%10))
}

func (d date) String() string { return string(d.appendTo(nil)) }

// compact is YYYYMMDD, as in a resident id number.
func (d date) compact() string {
	s := d.String()
	return s[0:4] + s[5:7] + s[8:10]
}

// randDate is a uniform day of the years from..to.
func randDate(rng *rand.Rand, from, to int) date {
	lo, hi := makeDate(from, 1, 1), makeDate(to+1, 1, 1)
	return lo + date(rng.IntN(int(hi-lo)))
}
