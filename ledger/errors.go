package ledger

import (
	"errors"
	"fmt"
)

// Errors returned by the ledger. Check them with errors.Is / errors.As; the
// gateway maps them to HTTP statuses (suggested mapping in brackets).
var (
	// ErrNotFound: no such entry, or a reversal names an unknown
	// settlement [404].
	ErrNotFound = errors.New("ledger: not found")
	// ErrNotSettlement: a reversal names a reversal, which cannot be
	// reversed [409].
	ErrNotSettlement = errors.New("ledger: only a settlement can be reversed")
	// ErrReversalMismatch: a reversal does not mirror the reversed
	// settlement: its insured region, person or date year differ, or its
	// Changes / BalanceChange are not the negation of the settlement's (a
	// gateway bug; wraps a description) [500].
	ErrReversalMismatch = errors.New("ledger: reversal does not match the reversed settlement")
	// ErrCounterRange: applying the entry's counter changes would make a
	// counter negative or overflow int64 [409/500].
	ErrCounterRange = errors.New("ledger: counter out of range")
	// ErrInsufficientBalance: the personal-account balance would become
	// negative [409].
	ErrInsufficientBalance = errors.New("ledger: insufficient personal-account balance")
	// ErrInvalidEntry: the entry is malformed (wraps a description) [500].
	ErrInvalidEntry = errors.New("ledger: invalid entry")
	// ErrInvalidRecord: a registry record (hospital, catalog entry, person) is
	// malformed (wraps a description) [400].
	ErrInvalidRecord = errors.New("ledger: invalid record")
	// ErrEntryTooLarge: the encoded entry exceeds MaxEntrySize [413/500].
	ErrEntryTooLarge = errors.New("ledger: entry too large")
	// ErrWriteFailed: a write to the store failed; the ledger accepts no more
	// writes until it is reopened. Reads keep working [503].
	ErrWriteFailed = errors.New("ledger: write failed; ledger is read-only until restarted")
	// ErrLowDisk: the ledger's disk has less free space than
	// Options.MinFreeBytes; writes are refused until it has more. Reads
	// keep working [503].
	ErrLowDisk = errors.New("ledger: the disk is nearly full; writes are refused until space is freed")
	// ErrClosed: the DB is closed [503].
	ErrClosed = errors.New("ledger: closed")
	// ErrCorrupt: a stored value could not be decoded.
	ErrCorrupt = errors.New("ledger: corrupt record")
	// ErrUnreadable: the store could not be read (an I/O error, a block
	// found corrupt); wraps the cause. Nothing was written by the call
	// that met it [503].
	ErrUnreadable = errors.New("ledger: the store could not be read")
)

// DuplicateError is returned by Append when the idempotency key (Hospital,
// RequestID) was already used. Existing describes the entry that used it: the
// gateway replays it when Existing.BodyHash equals the request's, else answers
// 409.
type DuplicateError struct {
	Existing Idem
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("ledger: request id already used by %s", e.Existing.SettlementID)
}

// TraceCodeError is returned by Append when a drug trace code is already in
// use by a settlement that was not reversed (SettlementID names it), or is
// repeated within the entry itself (SettlementID is empty).
type TraceCodeError struct {
	Code         string
	SettlementID string
}

func (e *TraceCodeError) Error() string {
	if e.SettlementID == "" {
		return fmt.Sprintf("ledger: trace code %q repeated within the entry", e.Code)
	}
	return fmt.Sprintf("ledger: trace code %q already settled by %s", e.Code, e.SettlementID)
}

// AlreadyReversedError is returned by Append for a reversal of a settlement
// that has already been reversed, by ReversalID.
type AlreadyReversedError struct {
	ReversalID string
}

func (e *AlreadyReversedError) Error() string {
	return fmt.Sprintf("ledger: settlement already reversed by %s", e.ReversalID)
}

// ChainError is returned by Verify: Seq is the first sequence number at
// which the hash chain does not hold.
type ChainError struct {
	Seq uint64
	// Kind is the entry's kind as its bytes say, 0 when they cannot
	// (missing, truncated): a credit or an opening balance has no
	// settlement id to be named by.
	Kind   Kind
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("ledger: chain broken at seq %d: %s", e.Seq, e.Reason)
}

func invalidEntry(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidEntry, fmt.Sprintf(format, args...))
}

func invalidRecord(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRecord, fmt.Sprintf(format, args...))
}
