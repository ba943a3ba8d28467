package ledger

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"medgate/engine/abi"
	"medgate/engine/money"
)

// ExportRecord is one line of the NDJSON export (GET /v1/clearing/export):
// the readable fields of an entry and, in Entry, its canonical encoding
// (base64), from which everything else can be checked: Hash =
// SHA-256(PrevHash || encoding without its last 32 bytes).
//
// A credit or an opening balance (kind "credit", "opening_balance") has no
// settlement id, hospital, treating region, date, visit type, policy or
// module (those fields are absent), amounts of 0 (it takes no part in
// clearing), and says Amount (the money put into the account),
// BalanceAfter and Migrated; a credit's RequestID is its reference.
type ExportRecord struct {
	Seq            uint64        `json:"seq"`
	SettlementID   string        `json:"settlement_id,omitempty"`
	Kind           string        `json:"kind"` // settlement | reversal | credit | opening_balance
	Reverses       string        `json:"reverses,omitempty"`
	RequestID      string        `json:"request_id"`
	Hospital       string        `json:"hospital,omitempty"`
	TreatingRegion string        `json:"treating_region,omitempty"`
	InsuredRegion  string        `json:"insured_region"`
	PersonID       string        `json:"person_id"`
	CommittedAt    string        `json:"committed_at"` // RFC 3339, UTC+8
	Month          string        `json:"month"`        // clearing month, YYYY-MM
	Date           string        `json:"settlement_date,omitempty"`
	VisitType      string        `json:"visit_type,omitempty"`
	PolicyVersion  string        `json:"policy_version,omitempty"`
	ModuleSHA256   string        `json:"module_sha256,omitempty"`
	Amounts        ExportAmounts `json:"amounts"`
	Amount         string        `json:"amount,omitempty"`        // credits, opening balances
	BalanceAfter   string        `json:"balance_after,omitempty"` // credits, opening balances
	Migrated       bool          `json:"migrated,omitempty"`      // credits, opening balances
	PrevHash       string        `json:"prev_hash"`
	Hash           string        `json:"hash"`
	Entry          string        `json:"entry"`
}

// ExportAmounts are the 13 amounts in yuan, named as in the settlement API.
type ExportAmounts struct {
	Total             string `json:"total"`
	FullSelfPay       string `json:"full_self_pay"`
	OverLimit         string `json:"over_limit"`
	PreSelfPay        string `json:"pre_self_pay"`
	Eligible          string `json:"eligible"`
	Deductible        string `json:"deductible"`
	BasicFund         string `json:"basic_fund"`
	SeriousIllness    string `json:"serious_illness"`
	MedicalAssistance string `json:"medical_assistance"`
	FundTotal         string `json:"fund_total"`
	PersonalAccount   string `json:"personal_account"`
	Cash              string `json:"cash"`
	PersonalTotal     string `json:"personal_total"`
}

var visitTypeNames = map[abi.VisitType]string{abi.VisitInpatient: "inpatient", abi.VisitOutpatient: "outpatient",
	abi.VisitChronic: "chronic", abi.VisitTwoDisease: "two_disease", abi.VisitMaternity: "maternity"}

// NewExportRecord renders entry e whose stored encoding is enc.
func NewExportRecord(e *Entry, enc []byte) *ExportRecord {
	kind := "settlement"
	if e.Kind == KindReversal {
		kind = "reversal"
	}
	vt, ok := visitTypeNames[e.VisitType]
	if !ok {
		vt = fmt.Sprintf("unknown(%d)", e.VisitType)
	}
	f := money.FormatFen
	a := &e.Amounts
	if e.Kind.movesBalanceOnly() {
		return &ExportRecord{
			Seq: e.Seq, Kind: e.Kind.String(), RequestID: e.RequestID, InsuredRegion: e.InsuredRegion, PersonID: e.PersonID,
			CommittedAt: time.Unix(0, e.CommittedAt).In(ChinaTime).Format(time.RFC3339Nano),
			Month:       MonthOf(e.CommittedAt).String(),
			Amounts: ExportAmounts{Total: f(a.Total), FullSelfPay: f(a.FullSelfPay), OverLimit: f(a.OverLimit),
				PreSelfPay: f(a.PreSelfPay), Eligible: f(a.Eligible), Deductible: f(a.Deductible), BasicFund: f(a.BasicFund),
				SeriousIllness: f(a.SeriousIllness), MedicalAssistance: f(a.MedicalAssistance), FundTotal: f(a.FundTotal),
				PersonalAccount: f(a.PersonalAccount), Cash: f(a.Cash), PersonalTotal: f(a.PersonalTotal)},
			Amount: f(e.BalanceChange), BalanceAfter: f(e.BalanceAfter), Migrated: e.Migrated,
			PrevHash: hex.EncodeToString(e.PrevHash[:]), Hash: hex.EncodeToString(e.Hash[:]),
			Entry: base64.StdEncoding.EncodeToString(enc),
		}
	}
	return &ExportRecord{
		Seq: e.Seq, SettlementID: e.SettlementID, Kind: kind, Reverses: e.Reverses, RequestID: e.RequestID,
		Hospital: e.Hospital, TreatingRegion: e.TreatingRegion, InsuredRegion: e.InsuredRegion, PersonID: e.PersonID,
		CommittedAt: time.Unix(0, e.CommittedAt).In(ChinaTime).Format(time.RFC3339Nano),
		Month:       MonthOf(e.CommittedAt).String(),
		Date:        fmt.Sprintf("%04d-%02d-%02d", e.Date.Year(), e.Date.Month(), e.Date.Day()),
		VisitType:   vt, PolicyVersion: e.PolicyVersion, ModuleSHA256: hex.EncodeToString(e.ModuleSHA256[:]),
		Amounts: ExportAmounts{Total: f(a.Total), FullSelfPay: f(a.FullSelfPay), OverLimit: f(a.OverLimit),
			PreSelfPay: f(a.PreSelfPay), Eligible: f(a.Eligible), Deductible: f(a.Deductible), BasicFund: f(a.BasicFund),
			SeriousIllness: f(a.SeriousIllness), MedicalAssistance: f(a.MedicalAssistance), FundTotal: f(a.FundTotal),
			PersonalAccount: f(a.PersonalAccount), Cash: f(a.Cash), PersonalTotal: f(a.PersonalTotal)},
		PrevHash: hex.EncodeToString(e.PrevHash[:]), Hash: hex.EncodeToString(e.Hash[:]),
		Entry: base64.StdEncoding.EncodeToString(enc),
	}
}

// entrySettlementID is the settlement id e must carry: its seq's, or none
// for a credit or an opening balance.
func entrySettlementID(e *Entry) string {
	if e.Kind.movesBalanceOnly() {
		return ""
	}
	return SettlementID(e.Seq)
}

// ScanRaw calls fn with each entry from seq from to seq to (inclusive; 0:
// the durable head as of the call) and its stored encoding (valid only
// during the call), in order, stopping at fn's first error. fn may block:
// no iterator is held while it runs, and once the ledger is closed the scan
// ends with ErrClosed (read.go: scanValues).
func (db *DB) ScanRaw(from, to uint64, fn func(e *Entry, enc []byte) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	head := db.head.Load().seq
	if to == 0 || to > head {
		to = head
	}
	var e Entry
	return db.scanValues(max(from, 1), to, func(seq uint64, v []byte) error {
		if err := DecodeEntry(v, &e); err != nil {
			return fmt.Errorf("ledger: entry %d: %w", seq, err)
		}
		return fn(&e, v)
	})
}

// ExportError names the first line of an export that does not verify.
type ExportError struct {
	Line   int
	Seq    uint64
	Kind   Kind // the entry's, once it decoded (0 before)
	Reason string
}

func (e *ExportError) Error() string {
	if e.Seq != 0 {
		return fmt.Sprintf("ledger: export line %d (seq %d): %s", e.Line, e.Seq, e.Reason)
	}
	return fmt.Sprintf("ledger: export line %d: %s", e.Line, e.Reason)
}

// ExportReport is what VerifyExport checked.
type ExportReport struct {
	From, To uint64 // seqs of the first and last line (0, 0: empty)
	Entries  uint64
	// Root is the Merkle root of entries 1..To, known when the export
	// starts at seq 1.
	Root    tlog.Hash
	HasRoot bool
	// CheckpointMatched: the checkpoint given had a size within the export
	// and its root and head hash matched.
	CheckpointMatched bool
}

// VerifyExport checks an NDJSON export: every line's entry encoding hashes
// to its hash, its readable fields are those of the encoding, seqs follow
// each other without gaps and each entry's PrevHash is the previous one's
// Hash (from the first line on; a first line of seq 1 must have a zero
// PrevHash). When the export starts at seq 1 it recomputes the Merkle root
// and, if cp is given and its size lies within the export, checks cp's root
// and head hash; a cp of size 0 (the empty tree) matches an empty export or
// one from seq 1 (cp's signature is the caller's to check: OpenCheckpoint).
func VerifyExport(r io.Reader, cp *Checkpoint) (*ExportReport, error) {
	rep := &ExportReport{}
	if cp != nil && cp.Size == 0 {
		// The empty tree (VERIFY.md: root SHA-256 of nothing, no head)
		// is the whole of an empty export and a prefix of every export
		// from seq 1; no line reaches its size, so it is checked here.
		if cp.Root != tlog.Hash(sha256.Sum256(nil)) || cp.Head != ([32]byte{}) {
			return rep, errors.New("ledger: the checkpoint of tree size 0 does not state the empty tree's root and head")
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4*MaxEntrySize)
	var (
		prev     [32]byte
		frontier []frontierNode // compact Merkle range of entries 1..n
		line     int
	)
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		// One record a line, each key once: what is verified is then what
		// any reader of the line sees, whether it reads the file as a
		// stream of JSON values or keeps a repeated key's first value.
		if err := oneObject(b); err != nil {
			return rep, &ExportError{Line: line, Reason: "not an export record: " + err.Error()}
		}
		var rec ExportRecord
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return rep, &ExportError{Line: line, Reason: "not an export record: " + err.Error()}
		}
		raw, err := base64.StdEncoding.DecodeString(rec.Entry)
		if err != nil {
			return rep, &ExportError{Line: line, Seq: rec.Seq, Reason: "entry is not base64"}
		}
		var e Entry
		if err := DecodeEntry(raw, &e); err != nil {
			return rep, &ExportError{Line: line, Seq: rec.Seq, Reason: err.Error()}
		}
		if EntryHash(e.PrevHash, raw[:len(raw)-32]) != e.Hash {
			return rep, &ExportError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: "hash does not match the entry's contents (altered)"}
		}
		if *NewExportRecord(&e, raw) != rec {
			return rep, &ExportError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: "readable fields differ from the entry's encoding"}
		}
		if e.SettlementID != entrySettlementID(&e) {
			return rep, &ExportError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: "settlement id does not match seq"}
		}
		if rep.Entries == 0 {
			rep.From = e.Seq
			if e.Seq == 1 && e.PrevHash != ([32]byte{}) {
				return rep, &ExportError{Line: line, Seq: 1, Kind: e.Kind, Reason: "the first entry has a previous hash"}
			}
		} else {
			if e.Seq != rep.To+1 {
				return rep, &ExportError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: fmt.Sprintf("seq follows %d (entry missing or reordered)", rep.To)}
			}
			if e.PrevHash != prev {
				return rep, &ExportError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: "previous hash does not match the previous entry"}
			}
		}
		prev = e.Hash
		rep.To = e.Seq
		rep.Entries++
		if rep.From == 1 {
			frontier = frontierAdd(frontier, LeafHash(e.Hash))
			if cp != nil && cp.Size == e.Seq {
				if frontierRoot(frontier) != cp.Root {
					return rep, &ExportError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: "the Merkle root of entries 1.." + fmt.Sprint(e.Seq) + " is not the checkpoint's"}
				}
				if cp.Head != e.Hash {
					return rep, &ExportError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: "the entry's hash is not the checkpoint's head"}
				}
				rep.CheckpointMatched = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return rep, &ExportError{Line: line + 1, Reason: err.Error()}
	}
	if rep.From == 1 {
		rep.Root, rep.HasRoot = frontierRoot(frontier), true
	}
	if cp != nil && cp.Size == 0 && rep.From <= 1 {
		rep.CheckpointMatched = true
	}
	return rep, nil
}

// oneObject checks that b is exactly one JSON value and that no object in
// it has a key twice (encoding/json would keep the last one silently).
func oneObject(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type object struct {
		keys      map[string]bool
		expectKey bool
	}
	var stack []*object // nil: an array
	values := 0
	valueDone := func() {
		if len(stack) == 0 {
			values++
		} else if o := stack[len(stack)-1]; o != nil {
			o.expectKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if values > 0 {
			return errors.New("data after the record")
		}
		if n := len(stack); n > 0 && stack[n-1] != nil && stack[n-1].expectKey {
			o := stack[n-1]
			if k, ok := tok.(string); ok {
				if o.keys[k] {
					return fmt.Errorf("key %q given twice", k)
				}
				o.keys[k], o.expectKey = true, false
				continue
			}
			// Only the object's end can stand where a key may.
			stack = stack[:n-1]
			valueDone()
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, expectKey: true})
		case json.Delim('['):
			stack = append(stack, nil)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
	if values != 1 {
		return errors.New("no record")
	}
	return nil
}

// frontierNode is a perfect subtree of the compact range: its hash and
// number of leaves.
type frontierNode struct {
	hash tlog.Hash
	size uint64
}

func frontierAdd(f []frontierNode, leaf tlog.Hash) []frontierNode {
	f = append(f, frontierNode{leaf, 1})
	for len(f) >= 2 && f[len(f)-1].size == f[len(f)-2].size {
		l, r := f[len(f)-2], f[len(f)-1]
		f = append(f[:len(f)-2], frontierNode{tlog.NodeHash(l.hash, r.hash), l.size * 2})
	}
	return f
}

// frontierRoot is RFC 6962's tree hash of the leaves added so far.
func frontierRoot(f []frontierNode) tlog.Hash {
	if len(f) == 0 {
		return tlog.Hash{}
	}
	h := f[len(f)-1].hash
	for i := len(f) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f[i].hash, h)
	}
	return h
}
