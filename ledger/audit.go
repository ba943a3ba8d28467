package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"medgate/engine/abi"
)

// pfxOpening keys a person's opening balance, written once when the person
// is created (PutPersons), so that a later upsert of the person can answer
// it; the audit checks it against the person's opening-balance entry:
//
//	o | lp(region) | person -> opening balance, int64 (8)
//
// The person record's OpeningBalance is the last one upserted, which is not
// the opening balance once a known person is upserted with another one;
// stores written before this record existed fall back to it, and get the
// record when they are upgraded to format 4 (upgrade.go).
const pfxOpening = 'o'

func appendOpeningKey(b []byte, region, person string) []byte {
	b = append(b, pfxOpening)
	b = appendLP(b, region)
	return append(b, person...)
}

// maxAuditProblems bounds the problems an AuditReport lists (all are
// counted).
const maxAuditProblems = 50

// AuditReport is what an audit found. Beyond the hash chain and the Merkle
// tree, every record the writer maintains next to the entries is compared
// with a recomputation from the entries alone:
//
//   - idempotency keys: exactly one per entry, (hospital, request id) → the
//     entry's body hash and seq, and none other;
//   - trace codes: owner and freeing reversal, replaying settlements and
//     reversals in order (a code is never settled twice while in use);
//   - reversal markers: one per reversed settlement, naming its reversal;
//     a reversal mirrors its settlement (region, person, hospital,
//     treating region, year, amounts, balance, changes);
//   - counters per (insured region, person, year): the sum of the entries'
//     Changes, never negative after any entry;
//   - balances per person: Σ BalanceChange of the entries (settlements,
//     reversals, credits, opening balances), never negative; each credit
//     and opening balance states the balance after it (but one migrated
//     from format 3, upgrade.go), each credit record names its credit's
//     entry exactly, and each opening-balance record is its person's
//     opening-balance entry (0 without one);
//   - month totals per (month, insured, treating) and month records, hospital
//     rows, closed months (the frozen seq and hash name a real entry, and no
//     later entry was stamped inside a closed month), commit times never
//     going back.
type AuditReport struct {
	Entries     uint64 // entries audited, 1..head
	Settlements uint64
	Reversals   uint64
	Credits     uint64 // credit entries
	Openings    uint64 // opening-balance entries
	Head        [32]byte
	// ChainErr is the hash chain's first break (a *ChainError), TreeErr
	// the Merkle tree's (a *TreeError); the index audit runs either way.
	ChainErr error
	TreeErr  error
	// Checked counts the stored records compared, by kind.
	Checked AuditCounts
	// Problems lists the first differences found; TotalProblems counts all.
	Problems      []string
	TotalProblems int
}

// AuditCounts counts stored records by kind.
type AuditCounts struct {
	IdempotencyKeys int
	TraceCodes      int
	ReversalMarks   int
	CounterSets     int // (region, person, year) keys
	Persons         int // balances checked
	Credits         int // credit records
	Openings        int // opening-balance records
	MonthPairs      int
	Months          int
	HospitalRows    int
	ClosedMonths    int
}

// OK reports whether everything matched.
func (r *AuditReport) OK() bool {
	return r.ChainErr == nil && r.TreeErr == nil && r.TotalProblems == 0
}

// Err is nil when the audit passed, else an error naming the first
// problems.
func (r *AuditReport) Err() error {
	if r.OK() {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "ledger audit of %d entries failed:", r.Entries)
	if r.ChainErr != nil {
		fmt.Fprintf(&b, "\n  chain: %v", r.ChainErr)
	}
	if r.TreeErr != nil {
		fmt.Fprintf(&b, "\n  tree: %v", r.TreeErr)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	if r.TotalProblems > len(r.Problems) {
		fmt.Fprintf(&b, "\n  … %d more", r.TotalProblems-len(r.Problems))
	}
	return errors.New(b.String())
}

func (r *AuditReport) problem(format string, args ...any) {
	r.TotalProblems++
	if len(r.Problems) < maxAuditProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// AuditOptions are an audit's optional parts.
type AuditOptions struct {
	// Visit, when not nil, sees each entry in order (and may keep it).
	Visit func(*Entry)
	// Statement, when not nil, renders a month's statement from its totals
	// as CloseMonth's render did: each closed month's frozen statement
	// must then be what it renders from the month's totals recomputed
	// from the entries. (The ledger stores the statement as rendered: only
	// its renderer can tell a rewritten one.)
	Statement func(*MonthTotals) ([]byte, error)
	// TempDir is where the audit sorts the records it expects (a new
	// directory, removed when it ends; os.TempDir() when empty): a few
	// hundred bytes an entry.
	TempDir string
	// Context, when not nil, interrupts the audit once it ends (an
	// operator's Ctrl-C): the audit then returns its error, having removed
	// its scratch store.
	Context context.Context
}

// Audit checks the chain and the tree (Verify, VerifyTree) and then every
// index against a recomputation from the entries (see AuditReport), from
// one snapshot. visit, when not nil, sees each entry in order (and may keep
// it). Meant for a quiet ledger: with writes going on, the chain and tree
// checks and the snapshot may cover different heads. The recomputation
// holds the counter sets, balances, month totals and months in memory and
// sorts the records expected of each entry in a scratch store on disk
// (auditsort.go), so its memory does not grow with the entries.
func (db *DB) Audit(visit func(*Entry)) (*AuditReport, error) {
	return db.AuditWith(AuditOptions{Visit: visit})
}

// AuditWith is Audit with options.
func (db *DB) AuditWith(o AuditOptions) (*AuditReport, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	rep := &AuditReport{}
	if _, err := db.Verify(); err != nil {
		var ce *ChainError
		if !errors.As(err, &ce) {
			return nil, err
		}
		rep.ChainErr = err
	} else if _, _, err := db.VerifyTree(); err != nil {
		var te *TreeError
		if !errors.As(err, &te) {
			return nil, err
		}
		rep.TreeErr = err
	}
	snap := db.pdb.NewSnapshot()
	defer snap.Close()
	if err := auditIndexes(snap, db.bshift, rep, o); err != nil {
		return nil, err
	}
	return rep, nil
}

// AuditStore opens the ledger in dir read-only (the gateway must be
// stopped; nothing is written, not even the WAL replay, so it can look at a
// store exactly as a crash left it) and audits it like DB.Audit.
func AuditStore(dir string, fs vfs.FS, visit func(*Entry)) (rep *AuditReport, err error) {
	return AuditStoreWith(dir, fs, AuditOptions{Visit: visit})
}

// AuditStoreWith is AuditStore with options.
func AuditStoreWith(dir string, fs vfs.FS, o AuditOptions) (rep *AuditReport, err error) {
	db, err := openReadOnly(dir, fs)
	if err != nil {
		return nil, err
	}
	defer closeReadOnly(db.pdb)
	// A corrupt block can make Pebble panic rather than fail the read.
	defer func() {
		if p := recover(); p != nil {
			rep, err = nil, fmt.Errorf("ledger: %s is unreadable (on-disk corruption): %v", dir, p)
		}
	}()
	if db.format != storeFormat {
		return nil, fmt.Errorf("ledger: %s has the store format %d of an older gateway: start the gateway on it once to upgrade it, then audit", dir, db.format)
	}
	rep, err = db.AuditWith(o)
	if err == nil && rep.ChainErr == nil {
		if err := beyondHead(db.pdb, db.head.Load().seq); err != nil {
			var ce *ChainError
			if !errors.As(err, &ce) {
				return nil, err
			}
			rep.ChainErr = err
		}
	}
	return rep, err
}

// --- the recomputation ----------------------------------------------------

type auditPersonKey struct{ region, person string }

type auditCounterKey struct {
	region, person string
	year           int32
}

type auditPairKey struct {
	m                 Month
	insured, treating string
}

type auditMonth struct {
	first, last uint64
	hash        [32]byte
}

type auditor struct {
	rep      *AuditReport
	shift    uint8 // the store's bucket shift (bucketed.go)
	head     uint64
	scratch  *auditScratch // the records expected of each entry, sorted
	counters map[auditCounterKey]map[string]int64
	balances map[auditPersonKey]int64 // Σ BalanceChange
	openings map[auditPersonKey]int64 // (region, person) -> opening entry
	pairs    map[auditPairKey]*PairTotals
	months   map[Month]*auditMonth
	render   func(*MonthTotals) ([]byte, error)
	readErr  error // the first failed read of an entry by seq
}

func auditIndexes(r pebble.Reader, shift uint8, rep *AuditReport, o AuditOptions) (err error) {
	visit := o.Visit
	scratch, err := openScratch(o.Context, o.TempDir)
	if err != nil {
		return fmt.Errorf("ledger: audit: the scratch store: %w", err)
	}
	defer func() {
		if cerr := scratch.close(); err == nil && cerr != nil {
			err = fmt.Errorf("ledger: audit: the scratch store: %w", cerr)
		}
	}()
	a := &auditor{
		rep:      rep,
		shift:    shift,
		render:   o.Statement,
		scratch:  scratch,
		counters: map[auditCounterKey]map[string]int64{},
		balances: map[auditPersonKey]int64{},
		openings: map[auditPersonKey]int64{},
		pairs:    map[auditPairKey]*PairTotals{},
		months:   map[Month]*auditMonth{},
	}
	var head uint64
	v, closer, err := r.Get(keyHead)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return err
	default:
		head, rep.Head, err = decodeHead(v)
		if cerr := closer.Close(); cerr != nil {
			err = unreadable(cerr) // read.go: lookup
		}
		if err != nil {
			return err
		}
	}
	a.head = head
	if err := a.entries(r, head, visit); err != nil {
		return err
	}
	if err := scratch.flush(); err != nil {
		return fmt.Errorf("ledger: audit: the scratch store: %w", err)
	}
	// checkClosed reads the recomputed month totals, which checkPairs
	// consumes.
	for _, step := range []func(pebble.Reader) error{
		a.checkIdem, a.checkTraces, a.checkReversed, a.checkCounters,
		a.checkBalances, a.checkClosed, a.checkPairs, a.checkMonths, a.checkRows,
	} {
		if err := firstErr(step(r), scratch.stopped()); err != nil {
			return err
		}
		if a.readErr != nil {
			return a.readErr
		}
	}
	return nil
}

// entries replays the entries 1..head into the expected state.
func (a *auditor) entries(r pebble.Reader, head uint64, visit func(*Entry)) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: appendEntryKey(nil, 1), UpperBound: appendEntryKey(nil, head+1)})
	if err != nil {
		return err
	}
	defer it.Close()
	want := uint64(1)
	var key []byte
	var prevAt int64
	for it.First(); it.Valid(); it.Next() {
		seq, ok := entryKeySeq(it.Key())
		if !ok {
			a.rep.problem("entry key %x malformed", it.Key())
			continue
		}
		if seq != want {
			a.rep.problem("entry %d missing", want)
			want = seq
		}
		want++
		e := new(Entry)
		if err := DecodeEntry(it.Value(), e); err != nil {
			a.rep.problem("entry %d does not decode: %v", seq, err)
			continue
		}
		a.rep.Entries++
		if e.CommittedAt < prevAt {
			a.rep.problem("entry %d committed at %d, before entry %d (%d)", seq, e.CommittedAt, seq-1, prevAt)
		}
		prevAt = e.CommittedAt
		if err := a.entry(r, seq, e, &key); err != nil {
			return err
		}
		// A failed scratch store or an interrupted audit: replaying the
		// rest would be in vain (a look at ctx costs little next to
		// decoding the entry).
		if err := firstErr(a.scratch.err, a.scratch.stopped()); err != nil {
			return err
		}
		if visit != nil {
			visit(e)
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if want != head+1 {
		a.rep.problem("entries end at %d, the head is %d", want-1, head)
	}
	return nil
}

// entry adds entry seq to the expected state: the records that grow with
// the entries go to the scratch store (auditsort.go), a reversal's
// settlement is read back from r.
func (a *auditor) entry(r pebble.Reader, seq uint64, e *Entry, key *[]byte) error {
	rep := a.rep
	if e.Kind.movesBalanceOnly() {
		return a.balanceEntry(seq, e)
	}
	sc := a.scratch
	var vb [48]byte
	*key = appendIdemKey((*key)[:0], 0, e.Hospital, e.RequestID)
	n := len(*key)
	*key = appendScratchGroupKey(*key, scratchIdem, (*key)[bucketKeyLen:n], scratchExpected)
	sc.set(be.AppendUint64((*key)[n:], seq), appendIdemValue(vb[:0], e.BodyHash, seq))

	year := e.Date.Year()
	var reverses uint64
	switch e.Kind {
	case KindSettlement:
		rep.Settlements++
		// The codes' states are replayed code by code (checkTraces).
		for i, c := range e.TraceCodes {
			*key = appendTraceEventKey((*key)[:0], c, seq, i)
			sc.set(*key, nil)
		}
	case KindReversal:
		rep.Reversals++
		oseq, ok := ParseSettlementID(e.Reverses)
		var s *Entry
		var by uint64
		if ok && oseq < seq {
			var err error
			if s, err = a.entryAt(r, oseq); err != nil {
				return err
			}
			if s != nil && s.Kind != KindSettlement {
				s = nil
			}
			*key = append(append((*key)[:0], scratchReversed), appendReversedKey(vb[:0], oseq)...)
			if by, err = a.reversedBy(*key); err != nil {
				return err
			}
		}
		switch {
		case s == nil:
			rep.problem("entry %d reverses %q, not an earlier settlement", seq, e.Reverses)
		case by != 0:
			rep.problem("entry %d reverses %s, already reversed by entry %d", seq, e.Reverses, by)
		default:
			// Written at once: a second reversal of oseq must find it.
			if err := sc.setNow(*key, be.AppendUint64(vb[:0], seq)); err != nil {
				return fmt.Errorf("ledger: audit: the scratch store: %w", err)
			}
			reverses = oseq
			// A reversal is booked against its settlement's hospital and
			// pair, and takes back exactly its amounts (the writer's
			// checkReversal).
			if s.InsuredRegion != e.InsuredRegion || s.PersonID != e.PersonID || s.Date.Year() != year ||
				s.Hospital != e.Hospital || s.TreatingRegion != e.TreatingRegion || s.Amounts.Negated() != e.Amounts ||
				s.BalanceChange != -e.BalanceChange || !negates(e.Changes, s.Changes) {
				rep.problem("entry %d does not mirror the settlement %s it reverses", seq, e.Reverses)
			}
			for i, c := range s.TraceCodes {
				*key = appendTraceEventKey((*key)[:0], c, seq, i)
				sc.set(*key, be.AppendUint64(vb[:0], oseq))
			}
		}
	default:
		rep.problem("entry %d has kind %d", seq, e.Kind)
	}

	if len(e.Changes) > 0 {
		ck := auditCounterKey{e.InsuredRegion, e.PersonID, year}
		cs := a.counters[ck]
		if cs == nil {
			cs = map[string]int64{}
			a.counters[ck] = cs
		}
		for _, c := range e.Changes {
			v, ok := abi.AddChecked(cs[c.Name], c.Value)
			if !ok || v < 0 {
				rep.problem("entry %d takes counter %s of %s/%s %d out of range", seq, c.Name, e.InsuredRegion, e.PersonID, year)
			}
			cs[c.Name] = v
		}
	}
	if e.BalanceChange != 0 {
		pk := auditPersonKey{e.InsuredRegion, e.PersonID}
		a.balances[pk] += e.BalanceChange
	}

	m := MonthOf(e.CommittedAt)
	pk := auditPairKey{m, e.InsuredRegion, e.TreatingRegion}
	p := a.pairs[pk]
	if p == nil {
		p = &PairTotals{InsuredRegion: e.InsuredRegion, TreatingRegion: e.TreatingRegion}
		a.pairs[pk] = p
	}
	if e.Kind == KindReversal {
		p.Reversals++
	} else {
		p.Settlements++
	}
	p.Amounts.add(&e.Amounts)
	mm := a.months[m]
	if mm == nil {
		mm = &auditMonth{first: seq}
		a.months[m] = mm
	}
	mm.last, mm.hash = seq, e.Hash
	*key = appendHospitalRowKey(append((*key)[:0], scratchRow), e.Hospital, e.CommittedAt, seq)
	sc.set(*key, appendHospitalRowValue(nil, e, reverses))
	if sc.err != nil {
		return fmt.Errorf("ledger: audit: the scratch store: %w", sc.err)
	}
	return nil
}

// appendTraceEventKey appends the scratch key of the i-th code of entry
// seq, which settles it or (a reversal) frees it.
func appendTraceEventKey(b []byte, code string, seq uint64, i int) []byte {
	b = append(b, scratchTrace)
	b = appendLP(b, code)
	b = append(b, scratchExpected)
	b = be.AppendUint64(b, seq)
	return be.AppendUint32(b, uint32(i))
}

// reversedBy is the reversal already met of the settlement whose scratch
// marker key is k, 0 if none.
func (a *auditor) reversedBy(k []byte) (uint64, error) {
	v, closer, err := a.scratch.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: audit: the scratch store: %w", err)
	}
	defer closer.Close()
	return be.Uint64(v), nil
}

// entryAt reads entry seq back from r; nil if it is missing or does not
// decode (the scan of the entries reports either).
func (a *auditor) entryAt(r pebble.Reader, seq uint64) (*Entry, error) {
	v, closer, err := r.Get(appendEntryKey(nil, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	e := new(Entry)
	if DecodeEntry(v, e) != nil {
		return nil, nil
	}
	return e, nil
}

// balanceEntry replays a credit or an opening balance: it moves its
// person's balance and nothing a settlement moves (no idempotency key,
// trace code, counter, pair total or hospital row); it is in its month's
// range of entries.
func (a *auditor) balanceEntry(seq uint64, e *Entry) error {
	rep := a.rep
	noted := Entry{Seq: e.Seq, Kind: e.Kind, RequestID: e.RequestID, InsuredRegion: e.InsuredRegion, PersonID: e.PersonID,
		CommittedAt: e.CommittedAt, BalanceChange: e.BalanceChange, BalanceAfter: e.BalanceAfter, Migrated: e.Migrated,
		PrevHash: e.PrevHash, Hash: e.Hash, format: e.format}
	pk := auditPersonKey{e.InsuredRegion, e.PersonID}
	switch {
	case !sameEntryFields(e, &noted):
		rep.problem("entry %d, a %s, carries the fields of a settlement", seq, e.Kind)
	case e.InsuredRegion == "" || e.PersonID == "" || e.BalanceChange <= 0 || (e.Kind == KindCredit) != (e.RequestID != ""):
		rep.problem("entry %d, a %s of %d to %s/%s (reference %q), is not a valid one", seq, e.Kind, e.BalanceChange, e.InsuredRegion, e.PersonID, e.RequestID)
	}
	bal, ok := abi.AddChecked(a.balances[pk], e.BalanceChange)
	if !ok {
		rep.problem("entry %d takes the balance of %s/%s out of range", seq, e.InsuredRegion, e.PersonID)
	}
	a.balances[pk] = bal
	if !e.Migrated && e.BalanceAfter != bal {
		rep.problem("entry %d, a %s of %d to %s/%s, states the balance %d after it, the entries give %d",
			seq, e.Kind, e.BalanceChange, e.InsuredRegion, e.PersonID, e.BalanceAfter, bal)
	}
	if e.Kind == KindCredit {
		rep.Credits++
		// The credit record expected, in the scratch store (auditsort.go):
		// credits grow with the entries, as settlements do.
		key := append([]byte{scratchCredit}, appendCreditKey(nil, e.InsuredRegion, e.RequestID)...)
		v, closer, err := a.scratch.db.Get(key)
		switch {
		case err == nil:
			c, derr := decodeCreditValue(v, true)
			_ = closer.Close()
			if derr != nil {
				return fmt.Errorf("ledger: audit: the scratch store: %w", derr)
			}
			rep.problem("entry %d reuses credit reference %s/%s of entry %d", seq, e.InsuredRegion, e.RequestID, c.seq)
		case errors.Is(err, pebble.ErrNotFound):
			// Written at once: a second credit of the reference must
			// find it.
			if err := a.scratch.setNow(key, appendCreditValue(nil, e.PersonID, e.BalanceChange, e.BalanceAfter, seq)); err != nil {
				return fmt.Errorf("ledger: audit: the scratch store: %w", err)
			}
		default:
			return fmt.Errorf("ledger: audit: the scratch store: %w", err)
		}
	} else {
		rep.Openings++
		if _, dup := a.openings[pk]; dup {
			rep.problem("entry %d opens the balance of %s/%s a second time", seq, e.InsuredRegion, e.PersonID)
		}
		a.openings[pk] = e.BalanceChange
	}
	m := MonthOf(e.CommittedAt)
	mm := a.months[m]
	if mm == nil {
		mm = &auditMonth{first: seq}
		a.months[m] = mm
	}
	mm.last, mm.hash = seq, e.Hash
	return nil
}

// sameEntryFields reports whether two entries encode alike.
func sameEntryFields(a, b *Entry) bool {
	return bytes.Equal(appendEntryBody(nil, a), appendEntryBody(nil, b))
}

// scan calls fn for every stored key in [lower, upper) (keys and values
// are valid only during the call).
func scan(r pebble.Reader, lower, upper []byte, fn func(k, v []byte)) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		fn(it.Key(), it.Value())
	}
	return it.Close()
}

func prefixRange(pfx byte) ([]byte, []byte) { return []byte{pfx}, []byte{pfx + 1} }

// checkIdem compares the idempotency keys with those of the entries, name
// by name: the stored ones are sorted next to the expected ones in the
// scratch store first (they are stored bucket by bucket).
func (a *auditor) checkIdem(r pebble.Reader) error {
	sc := a.scratch
	var key []byte
	lo, hi := prefixRange(pfxIdem)
	err := scan(r, lo, hi, func(k, v []byte) {
		a.rep.Checked.IdempotencyKeys++
		if len(k) < bucketKeyLen {
			a.rep.problem("idempotency key %x is cut short", k)
			return
		}
		key = appendScratchGroupKey(key[:0], scratchIdem, k[bucketKeyLen:], scratchStored)
		sc.set(append(key, k[1:bucketKeyLen]...), v)
	})
	if err := firstErr(err, sc.flush()); err != nil {
		return err
	}
	return sc.groups(scratchIdem, func(name []byte, recs []scratchRec) {
		var want []byte // the last entry's: a request id reused is reported
		for _, x := range recs {
			if !x.stored {
				if want != nil {
					hosp, id, _ := splitLP(name)
					a.rep.problem("entry %d reuses request id %q of hospital %s", be.Uint64(x.suffix), id, hosp)
				}
				want = x.value
				continue
			}
			if want == nil {
				a.rep.problem("idempotency key %q names no entry", name)
				continue
			}
			seq := be.Uint64(want[32:])
			if !bytes.Equal(x.value, want) {
				got, _ := decodeIdemValue(x.value)
				a.rep.problem("idempotency key %q maps to seq %d, the entry is %d (or its body hash differs)", name, got.Seq, seq)
			} else if b := be.Uint32(x.suffix); uint64(b) != seq>>a.shift {
				a.rep.problem("idempotency key %q of entry %d is in bucket %d, not %d", name, seq, b, seq>>a.shift)
			}
			want = nil // matched: another record of the name names no entry
		}
		if want != nil {
			a.rep.problem("idempotency key %q of entry %d is missing", name, be.Uint64(want[32:]))
		}
	})
}

// checkTraces checks the trace-code records. Lookups read a code's newest
// record only (bucketed.go), so that one must be the code's state as the
// entries make it, in its owner's bucket. A code settled again after a
// reversal in a later bucket also keeps its older records; each must be a
// freed claim — its owner settled the code and was reversed by the entry
// that freed it — and sit in its owner's bucket. (A store upgraded from
// format 2 kept only the newest record of each code.) The stored records
// are sorted next to the code's settlements and reversals in the scratch
// store, which are replayed code by code: a code's state depends only on
// the entries naming it.
func (a *auditor) checkTraces(r pebble.Reader) error {
	sc := a.scratch
	var key []byte
	lo, hi := prefixRange(pfxTrace)
	err := scan(r, lo, hi, func(k, v []byte) {
		a.rep.Checked.TraceCodes++
		if _, _, err := decodeTraceValue(v); len(k) < bucketKeyLen || err != nil {
			a.rep.problem("trace code record %x: bad key or value", k)
			return
		}
		key = appendScratchGroupKey(key[:0], scratchTrace, k[bucketKeyLen:], scratchStored)
		sc.set(append(key, k[1:bucketKeyLen]...), v)
	})
	if err := firstErr(err, sc.flush()); err != nil {
		return err
	}
	type rec struct {
		bucket         uint32
		owner, freedBy uint64
	}
	var freed []rec // (owner, freedBy) of the reversals of the code's settlements
	return sc.groups(scratchTrace, func(name []byte, recs []scratchRec) {
		code := string(name)
		var want rec // the code's state as the entries make it
		settled := false
		freed = freed[:0]
		var newest rec
		stored := false
		for _, x := range recs {
			if !x.stored {
				seq := be.Uint64(x.suffix)
				if len(x.value) == 0 { // entry seq settles the code
					if settled && want.freedBy == 0 {
						a.rep.problem("entry %d settles trace code %q, in use by entry %d", seq, code, want.owner)
					}
					want, settled = rec{owner: seq}, true
					continue
				}
				oseq := be.Uint64(x.value) // entry seq reverses oseq
				freed = append(freed, rec{owner: oseq, freedBy: seq})
				if want.owner == oseq && want.freedBy == 0 {
					want.freedBy = seq
				}
				continue
			}
			owner, freedBy, _ := decodeTraceValue(x.value)
			t := rec{be.Uint32(x.suffix), owner, freedBy}
			if uint64(t.bucket) != owner>>a.shift {
				a.rep.problem("trace code %q: the record of owner %d is in bucket %d, not %d", code, owner, t.bucket, owner>>a.shift)
			}
			if stored && (newest.freedBy == 0 || !slices.Contains(freed, rec{owner: newest.owner, freedBy: newest.freedBy})) {
				// Records come bucket by bucket: t is newer.
				a.rep.problem("trace code %q: a stale record in bucket %d says owner %d freed by %d, which no settlement and reversal of it did", code, newest.bucket, newest.owner, newest.freedBy)
			}
			newest, stored = t, true
		}
		switch {
		case stored && !settled:
			a.rep.problem("trace code %q was settled by no entry", code)
		case stored && (newest.owner != want.owner || newest.freedBy != want.freedBy):
			a.rep.problem("trace code %q: stored owner %d freed by %d, recomputed %d freed by %d", code, newest.owner, newest.freedBy, want.owner, want.freedBy)
		case !stored && settled:
			a.rep.problem("trace code %q of entry %d is missing", code, want.owner)
		}
	})
}

// checkReversed compares the reversal markers with those the reversals
// give, in key order.
func (a *auditor) checkReversed(r pebble.Reader) error {
	return a.scratch.merge(scratchReversed, r, pfxReversed, func(k, want, got []byte) {
		if got != nil {
			a.rep.Checked.ReversalMarks++
			if len(k) != 9 {
				a.rep.problem("reversal marker key %x malformed", k)
				return
			}
		}
		seq := be.Uint64(k[1:])
		var w uint64
		if want != nil {
			w = be.Uint64(want)
		}
		if got == nil {
			a.rep.problem("settlement %d reversed by %d has no reversal marker", seq, w)
			return
		}
		if rev, err := decodeSeqValue(got); want == nil || err != nil || rev != w {
			a.rep.problem("settlement %d is marked reversed by %d, recomputed %d", seq, rev, w)
		}
	})
}

func (a *auditor) checkCounters(r pebble.Reader) error {
	lo, hi := prefixRange(pfxCounters)
	err := scan(r, lo, hi, func(k, v []byte) {
		a.rep.Checked.CounterSets++
		region, rest, ok1 := splitLP(k[1:])
		person, rest, ok2 := splitLP(rest)
		if !ok1 || !ok2 || len(rest) != 4 {
			a.rep.problem("counters key %x malformed", k)
			return
		}
		ck := auditCounterKey{string(region), string(person), int32(be.Uint32(rest) ^ 0x80000000)}
		got := map[string]int64{}
		if err := walkCounters(v, func(name []byte, value int64) { got[string(name)] = value }); err != nil {
			a.rep.problem("counters of %s/%s %d: %v", ck.region, ck.person, ck.year, err)
		}
		want := a.counters[ck]
		delete(a.counters, ck)
		switch {
		case !sameCounters(got, want):
			a.rep.problem("counters of %s/%s %d: stored %v, recomputed %v", ck.region, ck.person, ck.year, sortedCounters(got), sortedCounters(want))
		case !bytes.Equal(v, appendCounters(nil, sortedCounters(want))):
			// The same values, but not as the writer stores them (sorted by
			// name, each once, no zeros): the writer and a settlement's
			// policy input read the list as stored, so a name twice or out
			// of order would be read otherwise than a map of it says.
			a.rep.problem("counters of %s/%s %d: stored %x is not the canonical record of %v", ck.region, ck.person, ck.year, v, sortedCounters(want))
		}
	})
	for ck, want := range a.counters {
		if !sameCounters(nil, want) {
			a.rep.problem("counters of %s/%s %d missing, recomputed %v", ck.region, ck.person, ck.year, sortedCounters(want))
		}
	}
	return err
}

// sameCounters compares counter sets, an absent counter being 0.
func sameCounters(a, b map[string]int64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func sortedCounters(m map[string]int64) []abi.Counter {
	var out []abi.Counter
	for k, v := range m {
		if v != 0 {
			out = append(out, abi.Counter{Name: k, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (a *auditor) checkBalances(r pebble.Reader) error {
	type person struct {
		stored        int64
		hasBal, known bool
	}
	ps := map[auditPersonKey]*person{}
	get := func(k auditPersonKey) *person {
		p := ps[k]
		if p == nil {
			p = &person{}
			ps[k] = p
		}
		return p
	}
	var firstErr error
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	lo, hi := prefixRange(pfxPerson)
	keep(scan(r, lo, hi, func(k, v []byte) {
		region, id, ok := splitLP(k[1:])
		if !ok {
			a.rep.problem("person key %x malformed", k)
			return
		}
		if _, err := decodePerson(v); err != nil {
			a.rep.problem("person %s/%s: %v", region, id, err)
			return
		}
		get(auditPersonKey{string(region), string(id)}).known = true
	}))
	// An opening-balance record is what an upsert answers as the opening
	// balance: it must be the opening-balance entry's (0 without one).
	lo, hi = prefixRange(pfxOpening)
	keep(scan(r, lo, hi, func(k, v []byte) {
		a.rep.Checked.Openings++
		region, id, ok := splitLP(k[1:])
		bal, err := decodeBalance(v)
		if !ok || err != nil {
			a.rep.problem("opening balance record %x malformed", k)
			return
		}
		pk := auditPersonKey{string(region), string(id)}
		if want := a.openings[pk]; bal != want {
			a.rep.problem("opening balance of %s/%s: the record says %d, the entries %d", region, id, bal, want)
		}
		delete(a.openings, pk)
	}))
	for k, v := range a.openings {
		a.rep.problem("opening balance of %s/%s: an entry of %d, no record", k.region, k.person, v)
	}
	// A credit record is the index of its reference: it must name its
	// credit's entry exactly.
	keep(a.scratch.merge(scratchCredit, r, pfxCredit, func(k, want, got []byte) {
		region, ref, ok := splitLP(k[1:])
		w, _ := decodeCreditValue(want, true) // written by balanceEntry
		if got == nil {
			a.rep.problem("credit %s/%s of entry %d has no credit record", region, ref, w.seq)
			return
		}
		a.rep.Checked.Credits++
		c, err := decodeCreditValue(got, true)
		if !ok || err != nil {
			a.rep.problem("credit record %x malformed", k)
			return
		}
		switch {
		case want == nil:
			a.rep.problem("credit %s/%s (%d to %s) has no credit entry", region, ref, c.amount, c.person)
		case c != w:
			a.rep.problem("credit %s/%s: the record says %d to %s, balance %d, entry %d; the entry %d to %s, balance %d, entry %d",
				region, ref, c.amount, c.person, c.after, c.seq, w.amount, w.person, w.after, w.seq)
		}
	}))
	lo, hi = prefixRange(pfxBalance)
	keep(scan(r, lo, hi, func(k, v []byte) {
		region, id, ok := splitLP(k[1:])
		bal, err := decodeBalance(v)
		if !ok || err != nil {
			a.rep.problem("balance record %x malformed", k)
			return
		}
		p := get(auditPersonKey{string(region), string(id)})
		p.stored, p.hasBal = bal, true
	}))
	for k, p := range ps {
		a.rep.Checked.Persons++
		want := a.balances[k]
		switch {
		case !p.known:
			a.rep.problem("balance of %s/%s, who is not in the registry", k.region, k.person)
		case !p.hasBal:
			a.rep.problem("balance of %s/%s missing, recomputed %d", k.region, k.person, want)
		case p.stored != want:
			a.rep.problem("balance of %s/%s: stored %d, the entries give %d", k.region, k.person, p.stored, want)
		case p.stored < 0:
			a.rep.problem("balance of %s/%s is negative: %d", k.region, k.person, p.stored)
		}
		delete(a.balances, k)
	}
	for k, v := range a.balances {
		a.rep.problem("entries move the balance of %s/%s (%d), who is not in the registry", k.region, k.person, v)
	}
	return firstErr
}

func (a *auditor) checkPairs(r pebble.Reader) error {
	lo, hi := prefixRange(pfxPair)
	err := scan(r, lo, hi, func(k, v []byte) {
		a.rep.Checked.MonthPairs++
		if len(k) < 5 {
			a.rep.problem("month pair key %x malformed", k)
			return
		}
		m := Month(be.Uint32(k[1:5]))
		ins, rest, ok1 := splitLP(k[5:])
		trt, rest, ok2 := splitLP(rest)
		if !ok1 || !ok2 || len(rest) != 0 {
			a.rep.problem("month pair key %x malformed", k)
			return
		}
		pk := auditPairKey{m, string(ins), string(trt)}
		var got PairTotals
		if err := decodePairValue(v, &got); err != nil {
			a.rep.problem("month %s pair %s→%s: %v", m, ins, trt, err)
			return
		}
		want := a.pairs[pk]
		delete(a.pairs, pk)
		if want == nil {
			want = &PairTotals{}
		}
		if got.Settlements != want.Settlements || got.Reversals != want.Reversals || got.Amounts != want.Amounts {
			a.rep.problem("month %s pair %s→%s: stored %d settlements %d reversals %+v, recomputed %d %d %+v",
				m, ins, trt, got.Settlements, got.Reversals, got.Amounts, want.Settlements, want.Reversals, want.Amounts)
		}
	})
	for pk := range a.pairs {
		a.rep.problem("month %s pair %s→%s missing", pk.m, pk.insured, pk.treating)
	}
	return err
}

func (a *auditor) checkMonths(r pebble.Reader) error {
	lo, hi := prefixRange(pfxMonth)
	err := scan(r, lo, hi, func(k, v []byte) {
		a.rep.Checked.Months++
		if len(k) != 5 {
			a.rep.problem("month key %x malformed", k)
			return
		}
		m := Month(be.Uint32(k[1:]))
		got, err := decodeMonthMeta(v)
		want := a.months[m]
		delete(a.months, m)
		if want == nil {
			want = &auditMonth{}
		}
		if err != nil || got.first != want.first || got.last != want.last || got.hash != want.hash {
			a.rep.problem("month %s record: stored entries %d..%d, recomputed %d..%d", m, got.first, got.last, want.first, want.last)
		}
	})
	for m := range a.months {
		a.rep.problem("month %s record missing", m)
	}
	return err
}

// checkRows compares the hospital rows with those the entries give, in key
// order.
func (a *auditor) checkRows(r pebble.Reader) error {
	return a.scratch.merge(scratchRow, r, pfxHospRow, func(k, want, got []byte) {
		switch {
		case got == nil:
			a.rep.problem("hospital row %x missing", k)
			return
		case want == nil:
			a.rep.problem("hospital row %x names no entry", k)
		case !bytes.Equal(got, want):
			a.rep.problem("hospital row %x differs from its entry", k)
		}
		a.rep.Checked.HospitalRows++
	})
}

func (a *auditor) checkClosed(r pebble.Reader) error {
	lo, hi := prefixRange(pfxClosed)
	return scan(r, lo, hi, func(k, v []byte) {
		a.rep.Checked.ClosedMonths++
		if len(k) != 5 {
			a.rep.problem("closed month key %x malformed", k)
			return
		}
		m := Month(be.Uint32(k[1:]))
		c, err := decodeClosedValue(m, v)
		if err != nil {
			a.rep.problem("closed month %s: %v", m, err)
			return
		}
		end := m.endNano()
		n := a.head
		// A missing entry or one that does not decode is reported by the
		// scan of the entries.
		committed := func(seq uint64) (int64, bool) {
			e, err := a.entryAt(r, seq)
			if err != nil && a.readErr == nil {
				a.readErr = err
			}
			if e == nil {
				return 0, false
			}
			return e.CommittedAt, true
		}
		switch {
		case c.Seq > n:
			a.rep.problem("closed month %s names entry %d beyond the head %d", m, c.Seq, n)
		case c.Seq > 0 && func() bool { at, ok := committed(c.Seq); return ok && at >= end }():
			a.rep.problem("closed month %s ends with entry %d, committed after the month", m, c.Seq)
		case c.Seq < n && func() bool { at, ok := committed(c.Seq + 1); return ok && at < end }():
			a.rep.problem("entry %d was committed inside month %s after it was closed at entry %d", c.Seq+1, m, c.Seq)
		}
		if c.Seq > 0 && c.Seq <= n {
			if h, ok := a.entryHash(r, c.Seq); !ok || h != c.Hash {
				a.rep.problem("closed month %s: the hash of entry %d differs from the frozen one", m, c.Seq)
			}
		}
		if c.ClosedAt < end {
			a.rep.problem("closed month %s was closed at %d, before its end %d", m, c.ClosedAt, end)
		}
		if a.render != nil {
			st, err := a.render(a.monthTotals(m, c))
			switch {
			case err != nil:
				a.rep.problem("closed month %s: its statement cannot be rendered again: %v", m, err)
			case !bytes.Equal(st, c.Statement):
				a.rep.problem("closed month %s: the frozen statement differs from the one its entries give:\n    stored     %s\n    recomputed %s", m, c.Statement, st)
			}
		}
	})
}

// monthTotals are month m's totals as its close read them: every entry
// of m lies at or before the close's seq (checked above), so its pairs are
// those the entries give.
func (a *auditor) monthTotals(m Month, c *ClosedMonth) *MonthTotals {
	mt := &MonthTotals{Month: m, Seq: c.Seq, Hash: c.Hash}
	for pk, p := range a.pairs {
		if pk.m == m {
			mt.Pairs = append(mt.Pairs, *p)
		}
	}
	sort.Slice(mt.Pairs, func(i, j int) bool {
		x, y := &mt.Pairs[i], &mt.Pairs[j]
		if x.InsuredRegion != y.InsuredRegion {
			return x.InsuredRegion < y.InsuredRegion
		}
		return x.TreatingRegion < y.TreatingRegion
	})
	return mt
}

func (a *auditor) entryHash(r pebble.Reader, seq uint64) ([32]byte, bool) {
	v, closer, err := r.Get(appendEntryKey(nil, seq))
	if err != nil {
		return [32]byte{}, false
	}
	defer closer.Close()
	if len(v) < 32 {
		return [32]byte{}, false
	}
	return [32]byte(v[len(v)-32:]), true
}
