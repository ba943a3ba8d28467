package ledger

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// pfxCredit keys personal-account credits:
//
//	x | lp(region) | reference -> lp(person) | amount int64 (8) | balance after (8)
const pfxCredit = 'x'

func appendCreditKey(b []byte, region, reference string) []byte {
	b = append(b, pfxCredit)
	b = appendLP(b, region)
	return append(b, reference...)
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
// balance recorded by the first (replayed true). A credit is a registry
// operation of the insured region (money put into an account), not a
// settlement: it is not a ledger entry and takes no part in clearing.
func (db *DB) Credit(region, person, reference string, amount int64) (balance int64, replayed bool, err error) {
	if region == "" || person == "" || reference == "" {
		return 0, false, invalidRecord("credit: empty region, person or reference")
	}
	if amount <= 0 {
		return 0, false, invalidRecord("credit: amount must be positive")
	}
	r := &request{done: make(chan struct{}, 1)}
	r.op = func(b *pebble.Batch) (int, error) {
		k := appendCreditKey(nil, region, reference)
		var prev []byte
		found, err := getIn(b, k, func(v []byte) error { prev = append(prev, v...); return nil })
		if err != nil {
			return 0, err
		}
		if found {
			p, rest, ok := splitLP(prev)
			if !ok || len(rest) != 16 {
				return 0, ErrCorrupt
			}
			if string(p) != person || int64(be.Uint64(rest)) != amount {
				return 0, &CreditConflictError{Reference: reference}
			}
			balance, replayed = int64(be.Uint64(rest[8:])), true
			return 0, nil
		}
		pk := appendPersonKey(nil, region, person)
		if ok, err := getIn(b, pk, func([]byte) error { return nil }); err != nil {
			return 0, err
		} else if !ok {
			return 0, ErrNotFound
		}
		bk := appendBalanceKey(nil, region, person)
		var cur int64
		if _, err := getIn(b, bk, func(v []byte) error {
			if len(v) != 8 {
				return ErrCorrupt
			}
			cur = int64(be.Uint64(v))
			return nil
		}); err != nil {
			return 0, err
		}
		next := cur + amount
		if next < cur {
			return 0, ErrCounterRange
		}
		if err := b.Set(bk, be.AppendUint64(nil, uint64(next)), nil); err != nil {
			return 0, err
		}
		v := appendLP(nil, person)
		v = be.AppendUint64(v, uint64(amount))
		v = be.AppendUint64(v, uint64(next))
		if err := b.Set(k, v, nil); err != nil {
			return 0, err
		}
		balance = next
		return 1, nil
	}
	if _, err := db.submit(r); err != nil {
		return 0, false, err
	}
	return balance, replayed, nil
}
