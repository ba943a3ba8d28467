package ledger

import (
	"fmt"

	"medgate/engine/abi"
)

// Kind tells a settlement entry from a reversal entry, and both from the
// entries that move a personal-account balance outside a settlement.
type Kind uint8

const (
	KindSettlement Kind = 1
	KindReversal   Kind = 2
	// KindCredit is a credit to a personal account (DB.Credit): RequestID
	// is its reference. KindOpening is the opening balance of a person the
	// registry created with a balance (DB.UpsertPersons). Both carry only
	// Seq, Kind, RequestID (credits), InsuredRegion, PersonID, CommittedAt,
	// BalanceChange (the amount, positive), BalanceAfter, Migrated and the
	// chain's hashes; they have no settlement id and take no part in
	// clearing, hospital rows or anything a hospital sees.
	KindCredit  Kind = 3
	KindOpening Kind = 4
)

// String names k as the export does.
func (k Kind) String() string {
	switch k {
	case KindSettlement:
		return "settlement"
	case KindReversal:
		return "reversal"
	case KindCredit:
		return "credit"
	case KindOpening:
		return "opening_balance"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// movesBalanceOnly reports whether k is a credit or an opening balance.
func (k Kind) movesBalanceOnly() bool { return k == KindCredit || k == KindOpening }

// Amounts are the 13 amounts of a settlement, in fen. For a reversal entry
// every amount is the negation of the reversed settlement's.
type Amounts struct {
	Total             int64 // medfee_sumamt
	FullSelfPay       int64 // fulamt_ownpay_amt
	OverLimit         int64 // overlmt_selfpay
	PreSelfPay        int64 // preselfpay_amt
	Eligible          int64 // inscp_scp_amt
	Deductible        int64 // act_pay_dedc
	BasicFund         int64 // hifp_pay
	SeriousIllness    int64 // hifmi_pay
	MedicalAssistance int64 // maf_pay
	FundTotal         int64 // fund_pay_sumamt
	PersonalAccount   int64 // acct_pay
	Cash              int64 // psn_cash_pay
	PersonalTotal     int64 // psn_part_amt
}

// Negated is a, every amount negated: a reversal's amounts.
func (a Amounts) Negated() Amounts {
	return Amounts{
		Total: -a.Total, FullSelfPay: -a.FullSelfPay, OverLimit: -a.OverLimit, PreSelfPay: -a.PreSelfPay,
		Eligible: -a.Eligible, Deductible: -a.Deductible, BasicFund: -a.BasicFund, SeriousIllness: -a.SeriousIllness,
		MedicalAssistance: -a.MedicalAssistance, FundTotal: -a.FundTotal, PersonalAccount: -a.PersonalAccount,
		Cash: -a.Cash, PersonalTotal: -a.PersonalTotal,
	}
}

// Line is one bill line's split after the catalog step, in fen.
type Line struct {
	Code        string
	Class       abi.Class
	Listed      bool
	Amount      int64
	FullSelfPay int64
	OverLimit   int64
	PreSelfPay  int64
	Eligible    int64
}

// Entry is one append-only ledger record: a settlement or a reversal.
//
// The writer assigns Seq, SettlementID, PrevHash and Hash; everything else is
// filled in by the caller of Append.
type Entry struct {
	Seq            uint64 // 1, 2, 3, ... without gaps
	Kind           Kind
	SettlementID   string   // assigned by Append from Seq
	Reverses       string   // reversals: the reversed settlement's id
	RequestID      string   // the hospital's idempotency key
	BodyHash       [32]byte // sha256 of the request body, for idempotency
	Hospital       string
	TreatingRegion string
	InsuredRegion  string
	PersonID       string
	CommittedAt    int64 // unix nanoseconds (UTC) when the writer took it

	Date          abi.Date // settlement date (its year keys the counters)
	VisitType     abi.VisitType
	PolicyVersion string
	ModuleSHA256  [32]byte
	// Input is the canonical ABI input the policy ran on (abi.Input encoded);
	// InputHash is its sha256. Replaying Input with the module of
	// ModuleSHA256 must give Output again.
	Input     []byte
	InputHash [32]byte

	Amounts Amounts
	Lines   []Line
	// Changes are the counter changes this entry applied (for a reversal,
	// their negation), in the insured region, for Date's year.
	Changes []abi.Counter
	// BalanceChange is the change of the personal-account balance
	// (−acct_pay for a settlement, +acct_pay for its reversal).
	BalanceChange int64
	// BalanceAfter is, for a credit or an opening balance, the balance
	// after it (what the credit answered); 0 for the other kinds.
	BalanceAfter int64
	// Migrated marks a credit or opening balance that the upgrade to store
	// format 4 appended for a record written before they were entries
	// (upgrade.go): its BalanceAfter is the balance answered then, not the
	// balance after the entries before it in the chain.
	Migrated   bool
	TraceCodes []string
	Notes      []string

	PrevHash [32]byte // Hash of entry Seq−1; zero for Seq 1
	Hash     [32]byte // sha256 over PrevHash and the canonical encoding

	// format is the encoding format the entry was decoded from, so that it
	// re-encodes to the bytes its Hash covers; 0 (a new entry) means
	// EntryFormat.
	format byte
}

// Hospital is a designated hospital (定点医疗机构) of a treating region.
type Hospital struct {
	ID                   string // "H3701020001"
	Region               string // its treating region, 6 digits
	Level                uint8  // 1, 2 or 3
	AssistanceDesignated bool
}

// CatalogEntry is one code of a treating region's catalog.
type CatalogEntry struct {
	Code  string
	Class abi.Class
	// SelfpayProp is class B's first self-pay ratio in ten-thousandths
	// (0.10 → 1000); 0 for classes A and C.
	SelfpayProp int64
	// PriceCap is the per-unit price cap in micro-yuan (1e-6 yuan), valid
	// when HasPriceCap.
	PriceCap    int64
	HasPriceCap bool
}

// Person is an insured person in the registry of their insured region.
// The running personal-account balance is kept apart from the record (see
// DB.Balance): OpeningBalance is used only when the person is first created.
type Person struct {
	ID             string
	Region         string     // insured region
	Facts          abi.Person // registry facts; Facts.AccountBalance is ignored
	OpeningBalance int64      // fen
}
