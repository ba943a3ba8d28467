package ledger

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// pfxCredit keys personal-account credits by reference:
//
//	x | lp(region) | reference -> lp(person) | amount int64 (8) | balance after (8) | seq (8)
//
// seq is the credit's entry (KindCredit), of which the record is an index
// (audit.go checks one against the other). Stores of format 3 and before
// had no seq (the record was the credit); the upgrade to format 4 appends
// their entries and adds it (upgrade.go).
const pfxCredit = 'x'

func appendCreditKey(b []byte, region, reference string) []byte {
	b = append(b, pfxCredit)
	b = appendLP(b, region)
	return append(b, reference...)
}

func appendCreditValue(b []byte, person string, amount, after int64, seq uint64) []byte {
	b = appendLP(b, person)
	b = be.AppendUint64(b, uint64(amount))
	b = be.AppendUint64(b, uint64(after))
	return be.AppendUint64(b, seq)
}

// creditRecord is a decoded credit record; seq is 0 in a record of
// format 3 (withSeq false).
type creditRecord struct {
	person        string
	amount, after int64
	seq           uint64
}

// decodeCreditValue decodes a credit record, with its entry's seq when
// withSeq, else in the layout of format 3.
func decodeCreditValue(v []byte, withSeq bool) (creditRecord, error) {
	p, rest, ok := splitLP(v)
	n := 16
	if withSeq {
		n = 24
	}
	if !ok || len(rest) != n {
		return creditRecord{}, fmt.Errorf("%w: credit record of %d bytes", ErrCorrupt, len(v))
	}
	c := creditRecord{person: string(p), amount: int64(be.Uint64(rest)), after: int64(be.Uint64(rest[8:]))}
	if withSeq {
		c.seq = be.Uint64(rest[16:])
	}
	return c, nil
}

// CreditConflictError is a credit reference reused for another person or
// amount.
type CreditConflictError struct {
	Reference string
}

func (e *CreditConflictError) Error() string {
	return fmt.Sprintf("ledger: credit reference %s was already used for another person or amount", e.Reference)
}

// Credit adds amount (fen, positive) to the personal-account balance of
// (region, person), durably and once per (region, reference): a retry with
// the same reference, person and amount changes nothing and answers the
// balance recorded by the first (replayed true). A credit is an entry of
// the hash chain (KindCredit, with the balance after it), so that an audit
// recomputes every balance from entries alone; it has no settlement id and
// takes no part in clearing.
func (db *DB) Credit(region, person, reference string, amount int64) (balance int64, replayed bool, err error) {
	if region == "" || person == "" || reference == "" {
		return 0, false, invalidRecord("credit: empty region, person or reference")
	}
	if amount <= 0 {
		return 0, false, invalidRecord("credit: amount must be positive")
	}
	r := &request{done: make(chan struct{}, 1)}
	r.opEntries = func(b *pebble.Batch, app func(*Entry) error) (int, error) {
		k := appendCreditKey(nil, region, reference)
		var prev creditRecord
		found, err := getIn(b, k, func(v []byte) (err error) {
			prev, err = decodeCreditValue(v, true)
			return err
		})
		if err != nil {
			return 0, err
		}
		if found {
			if prev.person != person || prev.amount != amount {
				return 0, &CreditConflictError{Reference: reference}
			}
			balance, replayed = prev.after, true
			return 0, nil
		}
		pk := appendPersonKey(nil, region, person)
		if ok, err := getIn(b, pk, func([]byte) error { return nil }); err != nil {
			return 0, err
		} else if !ok {
			return 0, ErrNotFound
		}
		e := &Entry{Kind: KindCredit, RequestID: reference, InsuredRegion: region, PersonID: person, BalanceChange: amount}
		if err := app(e); err != nil {
			return 0, err
		}
		balance = e.BalanceAfter
		return 1, nil
	}
	if _, err := db.submit(r); err != nil {
		return 0, false, err
	}
	return balance, replayed, nil
}
