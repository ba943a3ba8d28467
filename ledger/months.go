package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ChinaTime is UTC+8 (China Standard Time, no daylight saving): clearing
// months and reconciliation dates are counted in it.
var ChinaTime = time.FixedZone("UTC+8", 8*3600)

// Month is a clearing month as the number YYYYMM (202610 is October 2026).
// An entry belongs to the month, in UTC+8, of its CommittedAt.
type Month uint32

// MonthOf is the clearing month of a commit time (unix nanoseconds).
func MonthOf(unixNano int64) Month {
	t := time.Unix(0, unixNano).In(ChinaTime)
	return MakeMonth(t.Year(), int(t.Month()))
}

// MakeMonth is the month of year y, month m (1–12).
func MakeMonth(y, m int) Month { return Month(y*100 + m) }

// ParseMonth parses "YYYY-MM" (years 1000–9999).
func ParseMonth(s string) (Month, bool) {
	if len(s) != 7 || s[4] != '-' || s[0] == '0' {
		return 0, false
	}
	v := 0
	for i, c := range []byte(s) {
		if i == 4 {
			continue
		}
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if m := v % 100; m < 1 || m > 12 {
		return 0, false
	}
	return Month(v), true
}

// Year and Num are the month's year and number (1–12).
func (m Month) Year() int { return int(m) / 100 }
func (m Month) Num() int  { return int(m) % 100 }

// String is "YYYY-MM".
func (m Month) String() string { return fmt.Sprintf("%04d-%02d", m.Year(), m.Num()) }

// Start is the month's first instant (UTC+8).
func (m Month) Start() time.Time {
	return time.Date(m.Year(), time.Month(m.Num()), 1, 0, 0, 0, 0, ChinaTime)
}

// End is the first instant of the next month.
func (m Month) End() time.Time { return m.Next().Start() }

// Commit times are int64 Unix nanoseconds: the instants they can hold.
var (
	firstNanoTime = time.Unix(0, math.MinInt64)
	lastNanoTime  = time.Unix(0, math.MaxInt64)
)

// endNano is End in Unix nanoseconds, clamped to the int64 range
// (time.UnixNano wraps around 2^64 ns outside 1678-2262).
func (m Month) endNano() int64 {
	switch e := m.End(); {
	case e.Before(firstNanoTime):
		return math.MinInt64
	case e.After(lastNanoTime):
		return math.MaxInt64
	default:
		return e.UnixNano()
	}
}

// Next is the following month.
func (m Month) Next() Month {
	if m.Num() == 12 {
		return MakeMonth(m.Year()+1, 1)
	}
	return m + 1
}

// PairTotals are one (insured region, treating region) pair's entries of a
// month: how many settlements and reversals were committed in it and the
// sums of their amounts (reversals carry negated amounts, so the sums are
// net of reversals).
type PairTotals struct {
	InsuredRegion  string
	TreatingRegion string
	Settlements    uint64
	Reversals      uint64
	Amounts        Amounts
}

// MonthTotals are a month's pair totals, sorted by insured then treating
// region. Seq and Hash name the last entry committed before the month's end
// (the head, for a month not over; 0 and zeros when there is none): the
// ledger prefix 1..Seq holds every entry of the month, and every later
// entry belongs to a later month.
type MonthTotals struct {
	Month Month
	Seq   uint64
	Hash  [32]byte
	Pairs []PairTotals
}

// ErrMonthNotOver: a month cannot be closed before it ends (UTC+8) [409].
var ErrMonthNotOver = errors.New("ledger: the month is not over")

// Derived-state key prefixes (see the package documentation).
const (
	pfxPair    = 'a' // a | month(4) | lp(insured) | lp(treating) -> pair totals
	pfxMonth   = 'A' // A | month(4) -> first seq(8) | last seq(8) | last hash(32)
	pfxClosed  = 'z' // z | month(4) -> seq(8) | hash(32) | closed at(8) | frozen statement
	pfxHospRow = 'i' // i | lp(hospital) | committed at(8) | seq(8) -> hospital row
	pfxTree    = 'l' // l | stored hash index(8) -> tlog stored hash (32)
)

func appendMonthKey(b []byte, pfx byte, m Month) []byte {
	b = append(b, pfx)
	return be.AppendUint32(b, uint32(m))
}

func appendPairKey(b []byte, m Month, insured, treating string) []byte {
	b = appendMonthKey(b, pfxPair, m)
	b = appendLP(b, insured)
	return appendLP(b, treating)
}

func appendHospitalRowKey(b []byte, hospital string, at int64, seq uint64) []byte {
	b = appendHospitalRowPrefix(b, hospital)
	b = be.AppendUint64(b, uint64(at)^(1<<63))
	return be.AppendUint64(b, seq)
}

func appendHospitalRowPrefix(b []byte, hospital string) []byte {
	b = append(b, pfxHospRow)
	return appendLP(b, hospital)
}

// amountFields lists the 13 amounts in their encoding order.
func amountFields(a *Amounts) [13]*int64 {
	return [13]*int64{&a.Total, &a.FullSelfPay, &a.OverLimit, &a.PreSelfPay,
		&a.Eligible, &a.Deductible, &a.BasicFund, &a.SeriousIllness, &a.MedicalAssistance,
		&a.FundTotal, &a.PersonalAccount, &a.Cash, &a.PersonalTotal}
}

func (a *Amounts) add(o *Amounts) {
	dst, src := amountFields(a), amountFields(o)
	for i := range dst {
		*dst[i] += *src[i]
	}
}

// Pair totals value: u settlements | u reversals | 13 × s amounts.
func appendPairValue(b []byte, p *PairTotals) []byte {
	b = binary.AppendUvarint(b, p.Settlements)
	b = binary.AppendUvarint(b, p.Reversals)
	for _, f := range amountFields(&p.Amounts) {
		b = binary.AppendVarint(b, *f)
	}
	return b
}

func decodePairValue(v []byte, p *PairTotals) error {
	d := decoder{b: v}
	p.Settlements = d.uvarint()
	p.Reversals = d.uvarint()
	for _, f := range amountFields(&p.Amounts) {
		*f = d.varint()
	}
	if d.err == nil && d.off != len(v) {
		d.fail("trailing bytes")
	}
	return d.err
}

// monthMeta is the A record: the month's first and last entry.
type monthMeta struct {
	first, last uint64
	hash        [32]byte
}

func appendMonthMeta(b []byte, m *monthMeta) []byte {
	b = be.AppendUint64(b, m.first)
	b = be.AppendUint64(b, m.last)
	return append(b, m.hash[:]...)
}

func decodeMonthMeta(v []byte) (monthMeta, error) {
	if len(v) != 48 {
		return monthMeta{}, fmt.Errorf("%w: month record of %d bytes", ErrCorrupt, len(v))
	}
	return monthMeta{first: be.Uint64(v), last: be.Uint64(v[8:]), hash: [32]byte(v[16:48])}, nil
}

// readMonthTotals reads month m's totals from r (a snapshot, or the writer's
// batch).
func readMonthTotals(r pebble.Reader, m Month) (*MonthTotals, error) {
	mt := &MonthTotals{Month: m}
	// The last entry before the month's end is the last of the latest
	// month up to m that has entries.
	it, err := r.NewIter(&pebble.IterOptions{
		LowerBound: []byte{pfxMonth},
		UpperBound: appendMonthKey(nil, pfxMonth, m.Next()),
	})
	if err != nil {
		return nil, unreadable(err)
	}
	if it.Last() {
		meta, err := decodeMonthMeta(it.Value())
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		mt.Seq, mt.Hash = meta.last, meta.hash
	}
	if err := it.Close(); err != nil {
		return nil, unreadable(err)
	}
	lo := appendMonthKey(nil, pfxPair, m)
	it, err = r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: appendMonthKey(nil, pfxPair, m+1)})
	if err != nil {
		return nil, unreadable(err)
	}
	for it.First(); it.Valid(); it.Next() {
		ins, rest, ok1 := splitLP(it.Key()[len(lo):])
		trt, rest, ok2 := splitLP(rest)
		if !ok1 || !ok2 || len(rest) != 0 {
			_ = it.Close()
			return nil, fmt.Errorf("%w: pair key %x", ErrCorrupt, it.Key())
		}
		p := PairTotals{InsuredRegion: string(ins), TreatingRegion: string(trt)}
		if err := decodePairValue(it.Value(), &p); err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("ledger: month %s pair %s→%s: %w", m, ins, trt, err)
		}
		mt.Pairs = append(mt.Pairs, p)
	}
	if err := it.Close(); err != nil {
		return nil, unreadable(err)
	}
	sort.Slice(mt.Pairs, func(i, j int) bool {
		a, b := &mt.Pairs[i], &mt.Pairs[j]
		if a.InsuredRegion != b.InsuredRegion {
			return a.InsuredRegion < b.InsuredRegion
		}
		return a.TreatingRegion < b.TreatingRegion
	})
	return mt, nil
}

// MonthTotals returns month m's totals so far, from the per-month
// aggregates the writer maintains (no entry is read). They are consistent:
// read from one snapshot, and answered only once the entry they cover is
// durable.
func (db *DB) MonthTotals(m Month) (*MonthTotals, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	snap := db.pdb.NewSnapshot()
	mt, err := readMonthTotals(snap, m)
	_ = snap.Close()
	if err != nil {
		return nil, err
	}
	if err := db.waitDurable(mt.Seq); err != nil {
		return nil, err
	}
	return mt, nil
}

// ClosedMonth is a closed month's frozen record.
type ClosedMonth struct {
	Month     Month
	Seq       uint64   // the MonthTotals' Seq when it was closed
	Hash      [32]byte // and Hash
	ClosedAt  int64    // unix nanoseconds
	Statement []byte   // the frozen statement, as rendered at the close
}

func appendClosedValue(b []byte, c *ClosedMonth) []byte {
	b = be.AppendUint64(b, c.Seq)
	b = append(b, c.Hash[:]...)
	b = be.AppendUint64(b, uint64(c.ClosedAt))
	return append(b, c.Statement...)
}

func decodeClosedValue(m Month, v []byte) (*ClosedMonth, error) {
	if len(v) < 48 {
		return nil, fmt.Errorf("%w: closed month record of %d bytes", ErrCorrupt, len(v))
	}
	return &ClosedMonth{Month: m, Seq: be.Uint64(v), Hash: [32]byte(v[8:40]),
		ClosedAt: int64(be.Uint64(v[40:48])), Statement: append([]byte(nil), v[48:]...)}, nil
}

// Closed returns month m's frozen record if the month is closed.
func (db *DB) Closed(m Month) (*ClosedMonth, bool, error) {
	kb := getKeyBuf()
	kb.b = appendMonthKey(kb.b[:0], pfxClosed, m)
	var c *ClosedMonth
	found, err := db.lookup(kb, func(v []byte) (err error) {
		c, err = decodeClosedValue(m, v)
		return err
	})
	putKeyBuf(kb)
	if err != nil || !found {
		return nil, false, err
	}
	if err := db.closeSynced(m); errors.Is(err, ErrWriteFailed) {
		// The close's batch failed: it stays visible until the restart,
		// but is not durable. The month's totals are, and reads of it keep
		// working as for any other: open, as far as the disk is known to
		// say (the close was answered 503), as ReversedBy does.
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	return c, true, nil
}

// closeSynced waits until month m's close, just read from the store, is
// known to be on disk, before anyone is told the month is closed. The
// writer applies a close before its sync, so a reader may see it while the
// sync is under way, or after the sync failed: a retried close would then
// be answered "closed" by a record a power cut can still take away. A close
// is known synced once its flight finished (CloseMonth's after) or when it
// was in the store at Open.
func (db *DB) closeSynced(m Month) error {
	for {
		ch := *db.notify.Load()
		if _, ok := db.closedSynced.Load(m); ok {
			return nil
		}
		// Not failed: the close's batch may still become durable while
		// the writer fails a later one (as waitDurable).
		if db.syncFailed.Load() {
			return ErrWriteFailed
		}
		if db.closed.Load() {
			return ErrClosed
		}
		<-ch
	}
}

// loadClosedSynced marks the closes in the store at Open as synced.
func (db *DB) loadClosedSynced() error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxClosed}, UpperBound: []byte{pfxClosed + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 5 {
			_ = it.Close()
			return fmt.Errorf("%w: closed month key %x", ErrCorrupt, k)
		}
		db.closedSynced.Store(Month(be.Uint32(k[1:])), struct{}{})
	}
	return it.Close()
}

// CloseMonth freezes month m: through the writer (so that no entry can
// slip in between), it reads the month's totals, hands them to render and
// stores what render returns together with the totals' Seq and Hash, synced.
// From then on the writer never stamps an entry earlier than the month's
// end, so nothing can be booked into it again (a reversal of one of its
// settlements lands in the month in which it is committed).
//
// A month that is already closed is not closed again: CloseMonth returns
// its record with created false. A month whose end (UTC+8) has not come by
// Options.Now is refused with ErrMonthNotOver.
func (db *DB) CloseMonth(m Month, render func(*MonthTotals) ([]byte, error)) (c *ClosedMonth, created bool, err error) {
	if db.closed.Load() {
		return nil, false, ErrClosed
	}
	r := &request{done: make(chan struct{}, 1)}
	r.op = func(b *pebble.Batch) (int, error) {
		key := appendMonthKey(nil, pfxClosed, m)
		found, err := getIn(b, key, func(v []byte) (err error) {
			c, err = decodeClosedValue(m, v)
			return err
		})
		if err != nil || found {
			return 0, err
		}
		now := db.now().UnixNano()
		end := m.endNano()
		if now < end {
			return 0, ErrMonthNotOver
		}
		mt, err := readMonthTotals(b, m)
		if err != nil {
			return 0, err
		}
		st, err := render(mt)
		if err != nil {
			return 0, err
		}
		nc := &ClosedMonth{Month: m, Seq: mt.Seq, Hash: mt.Hash, ClosedAt: now, Statement: st}
		if err := b.Set(key, appendClosedValue(nil, nc), nil); err != nil {
			return 0, err
		}
		db.floor = max(db.floor, end)
		c, created = nc, true
		return 1, nil
	}
	r.after = func() {
		// Synced (finish runs after only then): readers may say closed.
		db.closedSynced.Store(m, struct{}{})
		db.broadcast()
	}
	if _, err := db.submit(r); err != nil {
		return nil, false, err
	}
	return c, created, nil
}

// lastClosedEnd is the end of the latest closed month (0 if none).
func lastClosedEnd(r pebble.Reader) (int64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxClosed}, UpperBound: []byte{pfxClosed + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	k := it.Key()
	if len(k) != 5 {
		return 0, fmt.Errorf("%w: closed month key %x", ErrCorrupt, k)
	}
	return Month(be.Uint32(k[1:])).endNano(), nil
}

// HospitalRow is one entry of a hospital, as reconciliation needs it.
type HospitalRow struct {
	Seq             uint64
	Kind            Kind
	Reverses        uint64 // reversals: the reversed settlement's seq
	CommittedAt     int64
	Total           int64 // medfee_sumamt
	FundTotal       int64 // fund_pay_sumamt
	PersonalAccount int64 // acct_pay
}

// Hospital row value: byte kind | u reverses | s total | s fund total |
// s personal account.
func appendHospitalRowValue(b []byte, e *Entry, reverses uint64) []byte {
	b = append(b, byte(e.Kind))
	b = binary.AppendUvarint(b, reverses)
	b = binary.AppendVarint(b, e.Amounts.Total)
	b = binary.AppendVarint(b, e.Amounts.FundTotal)
	return binary.AppendVarint(b, e.Amounts.PersonalAccount)
}

// HospitalRows calls fn, in commit order, for each entry of hospital
// committed in [from, to) (unix nanoseconds) and durable when the call
// began, from an index the writer keeps per hospital (no other entry is
// read). It returns the durable head it covers. fn must not block: Close
// waits for the rows being read (scanMu).
func (db *DB) HospitalRows(hospital string, from, to int64, fn func(*HospitalRow) error) (head uint64, err error) {
	db.scanMu.RLock()
	defer db.scanMu.RUnlock()
	if db.closed.Load() {
		return 0, ErrClosed
	}
	head = db.head.Load().seq
	if from >= to {
		return head, nil
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: appendHospitalRowKey(nil, hospital, from, 0),
		UpperBound: appendHospitalRowKey(nil, hospital, to, 0),
	})
	if err != nil {
		return 0, unreadable(err)
	}
	defer it.Close()
	plen := len(appendHospitalRowPrefix(nil, hospital))
	var row HospitalRow
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != plen+16 {
			return 0, fmt.Errorf("%w: hospital row key %x", ErrCorrupt, k)
		}
		row = HospitalRow{CommittedAt: int64(be.Uint64(k[plen:]) ^ (1 << 63)), Seq: be.Uint64(k[plen+8:])}
		if row.Seq > head {
			continue
		}
		d := decoder{b: it.Value()}
		row.Kind = Kind(d.byte())
		row.Reverses = d.uvarint()
		row.Total = d.varint()
		row.FundTotal = d.varint()
		row.PersonalAccount = d.varint()
		if d.err == nil && d.off != len(d.b) {
			d.fail("trailing bytes")
		}
		if d.err != nil {
			return 0, fmt.Errorf("ledger: hospital row %d: %w", row.Seq, d.err)
		}
		if err := fn(&row); err != nil {
			return 0, err
		}
	}
	if err := it.Error(); err != nil {
		return 0, unreadable(err)
	}
	return head, nil
}

// FirstSeqFrom returns the first entry committed in month m or later (in
// clearing time, UTC+8), and false if there is none. Commit times never go
// back (the writer's floor), so every entry from it on was committed in m
// or later, and none before it was: a scan of recent entries can start
// there instead of at entry 1.
func (db *DB) FirstSeqFrom(m Month) (uint64, bool, error) {
	// Under scanMu, as a scan's page: Close does not close the store
	// under this iterator.
	db.scanMu.RLock()
	defer db.scanMu.RUnlock()
	if db.closed.Load() {
		return 0, false, ErrClosed
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: appendMonthKey(nil, pfxMonth, m),
		UpperBound: []byte{pfxMonth + 1},
	})
	if err != nil {
		return 0, false, unreadable(err)
	}
	defer it.Close()
	if !it.First() {
		return 0, false, unreadable(it.Error())
	}
	meta, err := decodeMonthMeta(it.Value())
	if err != nil {
		return 0, false, err
	}
	return meta.first, true, nil
}
