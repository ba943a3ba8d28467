package gateway

import (
	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// catalogFor returns the treating region's catalog: the hospital region's
// own, else its prefecture's (XXXX00), else its province's (XX0000)
// (policies.md §1). ok is false when none of them has a catalog.
func catalogFor(db *ledger.DB, region string) (*ledger.Catalog, bool) {
	chain, n := catalogChain(region)
	for _, r := range chain[:n] {
		if c, ok := db.Catalog(r); ok {
			return c, true
		}
	}
	return nil, false
}

// catalogChain is the regions whose catalog a hospital of region uses, in
// order: its own, then its prefecture's and its province's (policies.md
// §1); n of them. An array, not a slice: it is on every settlement's path.
func catalogChain(region string) (chain [3]string, n int) {
	chain[0], n = region, 1
	if len(region) != 6 {
		return chain, n
	}
	for _, r := range [2]string{region[:4] + "00", region[:2] + "0000"} {
		if r != chain[n-1] {
			chain[n] = r
			n++
		}
	}
	return chain, n
}

// splitLine is the catalog step for one line (policies.md §1).
func splitLine(e ledger.CatalogEntry, listed bool, it *Item) (abi.Line, bool) {
	l := abi.Line{Code: it.Code, Amount: it.Amount, Class: abi.ClassC, Listed: listed}
	if !listed || e.Class == abi.ClassC {
		l.FullSelfPay = it.Amount
		return l, true
	}
	l.Class = e.Class
	if e.HasPriceCap && it.UnitPrice > e.PriceCap {
		ol, ok := money.LineAmount(it.UnitPrice-e.PriceCap, it.Quantity)
		if !ok {
			return l, false
		}
		l.OverLimit = ol
	}
	rest := it.Amount - l.OverLimit
	if e.Class == abi.ClassB {
		pre, ok := money.MulRound(rest, e.SelfpayProp, money.RatioScale)
		if !ok {
			return l, false
		}
		l.PreSelfPay = pre
	}
	l.Eligible = rest - l.PreSelfPay
	return l, true
}

// isOffsite reports whether a visit at treating is off-site for insured:
// treating does not start with insured stripped of trailing "00" pairs.
func isOffsite(insured, treating string) bool {
	p := insured
	for len(p) >= 2 && p[len(p)-2:] == "00" {
		p = p[:len(p)-2]
	}
	return len(treating) < len(p) || treating[:len(p)] != p
}
