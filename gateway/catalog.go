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
	if c, ok := db.Catalog(region); ok {
		return c, true
	}
	if len(region) == 6 {
		if c, ok := db.Catalog(region[:4] + "00"); ok {
			return c, true
		}
		if c, ok := db.Catalog(region[:2] + "0000"); ok {
			return c, true
		}
	}
	return nil, false
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
