package rules

import "medgate/engine/abi"

// NoLimit is the upper bound of an open-ended segment, and the cap of a pool
// without an annual cap.
const NoLimit int64 = 1<<63 - 1

// Segment is one tier of a tiered ratio: it runs from the previous segment's
// Upto (0 for the first) to its own Upto, both measured from where the tiers
// start, and pays BP basis points of the part of the amount inside it.
type Segment struct {
	Upto int64 // fen; NoLimit for the last, open-ended segment
	BP   int64
}

// Flat is a single open-ended segment at ratio bp.
func Flat(bp int64) [1]Segment { return [1]Segment{{Upto: NoLimit, BP: bp}} }

// Tiered computes Σ over segs of round(max(0, min(x, from+hi) − (from+lo)) ×
// ratio), each segment's share rounded half up on its own, where every ratio
// is first moved by deltaBP and bounded to [0, 100 %]. With from = 0 it is the
// basic fund's segments of E − D; with from = the threshold it is the
// serious-illness PAY function (policies.md §2.3).
func Tiered(x, from int64, segs []Segment, deltaBP int64) int64 {
	y := x - from
	if y <= 0 {
		return 0
	}
	var sum, lo int64
	for _, s := range segs {
		if y <= lo {
			break
		}
		part := Min(y, s.Upto) - lo
		sum += Pct(part, ClampBP(s.BP+deltaBP))
		lo = s.Upto
	}
	return sum
}

// appendTiered appends a description of Tiered(x, 0, segs, deltaBP):
// "10000.00 × 85% = 8500.00 + 4200.00 × 90% = 3780.00".
func appendTiered(b []byte, x int64, segs []Segment, deltaBP int64) []byte {
	var lo int64
	for i, s := range segs {
		if x <= lo && i > 0 {
			break
		}
		part := Min(x, s.Upto) - lo
		if part < 0 {
			part = 0
		}
		bp := ClampBP(s.BP + deltaBP)
		if i > 0 {
			b = append(b, " + "...)
		}
		b = AppendMoney(b, part)
		b = append(b, " × "...)
		b = AppendPercent(b, bp)
		if len(segs) > 1 {
			b = append(b, " = "...)
			b = AppendMoney(b, Pct(part, bp))
		}
		lo = s.Upto
	}
	return b
}

// Adjustment is the cross-region change of the basic-fund ratios, in basis
// points (0, −1000 or −2000), for the visit in (policies.md §2): only
// off-site inpatient, chronic and outpatient visits are adjusted; a
// long_term or referral registration or an emergency visit keeps the ratios;
// temporary lowers them by 10 pp; none (or any unknown registration) by
// 20 pp. Ratios never go below 0 (Tiered bounds them).
func Adjustment(in *abi.Input) int64 {
	if !in.Hospital.Offsite || in.Visit.Emergency {
		return 0
	}
	switch in.Visit.Type {
	case abi.VisitInpatient, abi.VisitChronic, abi.VisitOutpatient:
	default:
		return 0
	}
	switch in.Person.Registration {
	case abi.RegistrationLongTerm, abi.RegistrationReferral:
		return 0
	case abi.RegistrationTemporary:
		return -1000
	}
	return -2000
}

// OffsitePrefix is the insured region code stripped of its trailing "00"
// pairs (370000 → "37", 371600 → "3716", 152500 → "1525").
func OffsitePrefix(insured string) string {
	for len(insured) >= 2 && insured[len(insured)-2:] == "00" {
		insured = insured[:len(insured)-2]
	}
	return insured
}

// Offsite reports whether a hospital of region treating is off-site for a
// person insured in region insured: the treating code does not start with
// OffsitePrefix(insured). The host computes this (abi.Hospital.Offsite); the
// function is here so that tests and hosts share one definition.
func Offsite(treating, insured string) bool {
	p := OffsitePrefix(insured)
	return len(treating) < len(p) || treating[:len(p)] != p
}
