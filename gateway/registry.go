package gateway

import (
	"errors"
	"fmt"
	"strings"

	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// PersonRecord is an insured person as regions send it (api.md).
type PersonRecord struct {
	ID                   string   `json:"id"`
	Scheme               string   `json:"scheme"`
	Employment           string   `json:"employment"`
	Groups               []string `json:"groups"`
	Conditions           []string `json:"conditions"`
	Registration         string   `json:"registration"`
	AccountBalance       string   `json:"account_balance"`
	EnrolledOn           string   `json:"enrolled_on"`
	InConcentratedPeriod bool     `json:"in_concentrated_period"`
	LapsedYears          int32    `json:"lapsed_years"`
	RepaidYears          int32    `json:"repaid_years"`
	ContinuousYears      int32    `json:"continuous_years"`
	ZeroClaimYears       int32    `json:"zero_claim_years"`
}

// Groups a person may belong to, with policies.md §2's names.
var knownGroups = map[string]bool{"destitute": true, "subsistence": true, "low_income_edge": true, "monitored": true, "illness_poverty": true}

// ParsePerson parses and validates one person line of region.
func ParsePerson(region string, line []byte) (ledger.Person, error) {
	p, _, err := parsePerson(region, line)
	return p, err
}

// parsePerson is ParsePerson, also saying whether the line gave an
// account_balance.
func parsePerson(region string, line []byte) (ledger.Person, bool, error) {
	var r PersonRecord
	if err := strictJSON(line, &r); err != nil {
		return ledger.Person{}, false, lineJSONError(err, line, "person object")
	}
	p := ledger.Person{ID: r.ID, Region: region}
	// The id is a segment of the credits path: "." and ".." would be
	// normalized away by HTTP, and a backslash read as a slash, leaving
	// an account no region can credit.
	if r.ID == "" || len(r.ID) > MaxIDLen || strings.ContainsAny(r.ID, " /\\") || hasControl(r.ID) || r.ID == "." || r.ID == ".." {
		return p, false, fmt.Errorf("id must be 1 to %d characters without spaces, control characters, slashes or backslashes, other than . and ..", MaxIDLen)
	}
	f := &p.Facts
	switch r.Scheme {
	case "employee":
		f.Scheme = abi.SchemeEmployee
	case "resident":
		f.Scheme = abi.SchemeResident
	default:
		return p, false, fmt.Errorf("scheme %q is not employee or resident", r.Scheme)
	}
	switch r.Employment {
	case "active":
		f.Employment = abi.EmploymentActive
	case "retired":
		f.Employment = abi.EmploymentRetired
	case "":
	default:
		return p, false, fmt.Errorf("employment %q is not active or retired", r.Employment)
	}
	switch r.Registration {
	case "long_term":
		f.Registration = abi.RegistrationLongTerm
	case "referral":
		f.Registration = abi.RegistrationReferral
	case "temporary":
		f.Registration = abi.RegistrationTemporary
	case "none", "":
		f.Registration = abi.RegistrationNone
	default:
		return p, false, fmt.Errorf("registration %q is not long_term, referral, temporary or none", r.Registration)
	}
	for _, g := range r.Groups {
		if !knownGroups[g] {
			return p, false, fmt.Errorf("group %q is not one of destitute, subsistence, low_income_edge, monitored, illness_poverty", g)
		}
	}
	for _, c := range r.Conditions {
		if c == "" || len(c) > MaxIDLen {
			return p, false, fmt.Errorf("condition %q is malformed", c)
		}
	}
	if len(r.Groups) > abi.MaxStrings {
		return p, false, fmt.Errorf("groups has %d entries, at most %d", len(r.Groups), abi.MaxStrings)
	}
	if len(r.Conditions) > abi.MaxStrings {
		return p, false, fmt.Errorf("conditions has %d entries, at most %d", len(r.Conditions), abi.MaxStrings)
	}
	f.Groups, f.Conditions = r.Groups, r.Conditions
	if r.AccountBalance != "" {
		bal, err := money.Parse([]byte(r.AccountBalance), 2)
		if err != nil {
			return p, false, fmt.Errorf("account_balance %q %v", r.AccountBalance, err)
		}
		p.OpeningBalance = bal
	}
	if r.EnrolledOn != "" {
		d, ok := ParseDate([]byte(r.EnrolledOn))
		if !ok {
			return p, false, fmt.Errorf("enrolled_on %q is not a date YYYY-MM-DD", r.EnrolledOn)
		}
		f.EnrolledOn = d
	}
	f.InConcentratedPeriod = r.InConcentratedPeriod
	for _, y := range [...]struct {
		name string
		n    int32
	}{{"lapsed_years", r.LapsedYears}, {"repaid_years", r.RepaidYears}, {"continuous_years", r.ContinuousYears}, {"zero_claim_years", r.ZeroClaimYears}} {
		if y.n < 0 {
			return p, false, fmt.Errorf("%s %d must not be negative", y.name, y.n)
		}
	}
	f.LapsedYears, f.RepaidYears, f.ContinuousYears, f.ZeroClaimYears = r.LapsedYears, r.RepaidYears, r.ContinuousYears, r.ZeroClaimYears
	return p, r.AccountBalance != "", nil
}

// CatalogRecord is one catalog line (api.md).
type CatalogRecord struct {
	Code        string  `json:"code"`
	Class       string  `json:"class"`
	SelfpayProp *string `json:"selfpay_prop"`
	PriceCap    *string `json:"price_cap"`
}

// ParseCatalogEntry parses and validates one catalog line (policies.md §1):
// a class B entry must carry a selfpay_prop between 0 and 1 with at most 4
// decimals.
func ParseCatalogEntry(line []byte) (ledger.CatalogEntry, error) {
	var r CatalogRecord
	if err := strictJSON(line, &r); err != nil {
		return ledger.CatalogEntry{}, lineJSONError(err, line, "catalog object")
	}
	e := ledger.CatalogEntry{Code: r.Code}
	if r.Code == "" || len(r.Code) > MaxIDLen || strings.ContainsAny(r.Code, " \t\r\n") {
		return e, fmt.Errorf("code must be 1 to %d characters without spaces", MaxIDLen)
	}
	switch r.Class {
	case "A":
		e.Class = abi.ClassA
	case "B":
		e.Class = abi.ClassB
	case "C":
		e.Class = abi.ClassC
	default:
		return e, fmt.Errorf("class %q is not A, B or C", r.Class)
	}
	if e.Class == abi.ClassB {
		if r.SelfpayProp == nil {
			return e, fmt.Errorf("class B entry %s has no selfpay_prop", r.Code)
		}
		v, err := money.Parse([]byte(*r.SelfpayProp), 4)
		if err != nil || v > money.RatioScale {
			return e, fmt.Errorf("selfpay_prop %q must be a ratio between 0 and 1 with at most 4 decimals", *r.SelfpayProp)
		}
		e.SelfpayProp = v
	} else if r.SelfpayProp != nil {
		if v, err := money.Parse([]byte(*r.SelfpayProp), 4); err != nil || v != 0 {
			return e, fmt.Errorf("selfpay_prop applies to class B only")
		}
	}
	if r.PriceCap != nil {
		v, err := money.Parse([]byte(*r.PriceCap), 6)
		if err != nil {
			return e, fmt.Errorf("price_cap %q %v", *r.PriceCap, err)
		}
		e.PriceCap, e.HasPriceCap = v, true
	}
	return e, nil
}

// lineJSONError is a refused NDJSON line's reason for an error of
// strictJSON: bodyJSONError's words (the field as sent and the JSON it
// must be), not encoding/json's, which name the gateway's Go types.
func lineJSONError(err error, line []byte, what string) error {
	var e *Error
	if errors.As(bodyJSONError(err, line, what), &e) {
		return errors.New(e.Message)
	}
	return fmt.Errorf("not a valid %s: %v", what, err)
}

// HospitalRecord is one hospital of hospitals.json.
type HospitalRecord struct {
	ID                   string `json:"id"`
	Region               string `json:"region"`
	Level                uint8  `json:"level"`
	AssistanceDesignated bool   `json:"assistance_designated"`
}

// Hospital validates r.
func (r HospitalRecord) Hospital() (ledger.Hospital, error) {
	if r.ID == "" || len(r.ID) > MaxIDLen {
		return ledger.Hospital{}, fmt.Errorf("hospital id must be 1 to %d characters", MaxIDLen)
	}
	if !isRegion(r.Region) {
		return ledger.Hospital{}, fmt.Errorf("hospital %s: region %q is not a 6-digit code", r.ID, r.Region)
	}
	if r.Level < 1 || r.Level > 3 {
		return ledger.Hospital{}, fmt.Errorf("hospital %s: level %d is not 1, 2 or 3", r.ID, r.Level)
	}
	return ledger.Hospital{ID: r.ID, Region: r.Region, Level: r.Level, AssistanceDesignated: r.AssistanceDesignated}, nil
}

// hasControl says whether s has an ASCII control character.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}
