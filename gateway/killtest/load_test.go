package killtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"medgate/engine/money"
	"medgate/ledger"
)

// opKind is what a client operation does.
type opKind int

const (
	opSettle opKind = iota
	opReverse
	opCredit
)

func (k opKind) String() string { return [...]string{"settlement", "reversal", "credit"}[k] }

// op is one write the client wants done exactly once. It keeps its body:
// a retry sends the same request id with the same body.
type op struct {
	kind     opKind
	key      string // hospital/request id (settle, reverse) or region/reference (credit)
	id       string // request id or credit reference
	hospital string
	token    string
	path     string
	body     []byte
	reverses string // reversals: the settlement reversed

	// Owned by whoever holds the op (a worker, or the checker between
	// cycles when no worker runs).
	attempts int    // requests sent that got no answer (may have committed)
	seenSeq  uint64 // the seq an audit found for it while unanswered
	acked    bool
	refused  bool
	ackSeq   uint64
	ackID    string
	ackTotal int64
	ackBal   string // credits: the balance answered
	replayed bool
}

// load is the client side of the kill loop: it records every operation,
// which were acknowledged, and retries the others.
type load struct {
	t     *testing.T
	world worldFacts
	seed  int64
	http  *http.Client

	mu        sync.Mutex
	base      string
	ops       map[string]*op
	pending   []*op // answered by nobody yet: retried first
	settled   []*op // acknowledged settlements not yet reversed
	failures  int
	failNotes []string

	nextID atomic.Int64
	stats  struct {
		acked, replayedRetries, refused, quotes, reads, transport, unavailable, retries atomic.Int64
		byKind                                                                          [3]atomic.Int64
	}
}

func newLoad(t *testing.T, w worldFacts, seed int64, workers int) *load {
	return &load{t: t, world: w, seed: seed, ops: map[string]*op{},
		http: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}}
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	if len(l.failNotes) < 40 {
		l.failNotes = append(l.failNotes, fmt.Sprintf(format, args...))
	}
}

// run drives workers against base until stop is closed. With drain, the
// workers only retry what is pending and return when nothing is.
func (l *load) run(base string, workers int, cycle int, stop <-chan struct{}, drain bool) {
	l.mu.Lock()
	l.base = base
	l.mu.Unlock()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(l.seed*1_000_003 + int64(cycle)*1009 + int64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !l.step(rng, base, drain) {
					return
				}
			}
		}(w)
	}
	wg.Wait()
}

// step does one operation; false when draining and nothing is pending.
func (l *load) step(rng *rand.Rand, base string, drain bool) bool {
	l.mu.Lock()
	var o *op
	if n := len(l.pending); n > 0 {
		o = l.pending[n-1]
		l.pending = l.pending[:n-1]
	}
	l.mu.Unlock()
	if o == nil && drain {
		return false
	}
	if o != nil {
		l.stats.retries.Add(1)
		l.send(base, o)
		return true
	}
	switch r := rng.Intn(100); {
	case r < 8:
		l.quote(rng, base)
	case r < 13:
		l.read(rng, base)
	case r < 23:
		if o = l.newReversal(rng); o == nil {
			o = l.newSettlement(rng)
		}
	case r < 28:
		o = l.newCredit(rng)
	default:
		o = l.newSettlement(rng)
	}
	if o != nil {
		l.send(base, o)
	}
	return true
}

func (l *load) register(o *op) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.ops[o.key]; dup {
		panic("killtest: operation key reused: " + o.key)
	}
	l.ops[o.key] = o
}

var codes = []string{"XA01", "XA02", "XB01", "XB02", "XC01", "ZZ99"}

// settleBody is a bill of 1 to 5 lines; some lines carry trace codes,
// unique to the request.
func (l *load) settleBody(rng *rand.Rand, id string, p personRef) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"request_id":%q,"person":{"id":%q,"insured_region":%q},"visit":`, id, p.id, p.region)
	month, day := 1+rng.Intn(12), 1+rng.Intn(28)
	switch rng.Intn(4) {
	case 0:
		fmt.Fprintf(&b, `{"type":"inpatient","admitted_on":"2025-%02d-%02d","discharged_on":"2025-%02d-%02d","diagnoses":["I10"]}`, month, max(1, day-3), month, day)
	case 1:
		fmt.Fprintf(&b, `{"type":"chronic","visit_date":"2025-%02d-%02d","diagnoses":["I10"]}`, month, day)
	default:
		fmt.Fprintf(&b, `{"type":"outpatient","visit_date":"2025-%02d-%02d"}`, month, day)
	}
	fmt.Fprintf(&b, `,"use_personal_account":%v,"items":[`, rng.Intn(3) > 0)
	n := 1 + rng.Intn(5)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		price := int64(100 + rng.Intn(50_000)) // fen
		qty := int64(1 + rng.Intn(3))
		fmt.Fprintf(&b, `{"code":%q,"unit_price":%q,"quantity":"%d","amount":%q`, codes[rng.Intn(len(codes))],
			money.FormatFen(price), qty, money.FormatFen(price*qty))
		if rng.Intn(3) == 0 {
			fmt.Fprintf(&b, `,"trace_codes":["T%s-%d"]`, id, i)
		}
		b.WriteByte('}')
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func (l *load) newSettlement(rng *rand.Rand) *op {
	h := l.world.hospitals[rng.Intn(len(l.world.hospitals))]
	p := l.world.persons[rng.Intn(len(l.world.persons))]
	id := fmt.Sprintf("k%d-%d", l.seed%100000, l.nextID.Add(1))
	o := &op{kind: opSettle, key: h + "/" + id, id: id, hospital: h, token: "demo-hospital-" + h,
		path: "/v1/settlements", body: l.settleBody(rng, id, p)}
	l.register(o)
	return o
}

func (l *load) newReversal(rng *rand.Rand) *op {
	l.mu.Lock()
	n := len(l.settled)
	if n == 0 {
		l.mu.Unlock()
		return nil
	}
	i := rng.Intn(n)
	s := l.settled[i]
	l.settled[i] = l.settled[n-1]
	l.settled = l.settled[:n-1]
	l.mu.Unlock()
	id := fmt.Sprintf("k%d-%d-rv", l.seed%100000, l.nextID.Add(1))
	o := &op{kind: opReverse, key: s.hospital + "/" + id, id: id, hospital: s.hospital, token: s.token,
		path: "/v1/settlements/" + s.ackID + "/reversal", reverses: s.ackID,
		body: []byte(fmt.Sprintf(`{"request_id":%q,"reason":"kill loop"}`, id))}
	l.register(o)
	return o
}

func (l *load) newCredit(rng *rand.Rand) *op {
	p := l.world.persons[rng.Intn(len(l.world.persons))]
	ref := fmt.Sprintf("k%d-%d-cr", l.seed%100000, l.nextID.Add(1))
	o := &op{kind: opCredit, key: p.region + "/" + ref, id: ref, token: "demo-region-" + p.region,
		path: "/v1/regions/" + p.region + "/persons/" + p.id + "/credits",
		body: []byte(fmt.Sprintf(`{"reference":%q,"amount":%q}`, ref, money.FormatFen(int64(1+rng.Intn(20_000)))))}
	l.register(o)
	return o
}

func (l *load) quote(rng *rand.Rand, base string) {
	h := l.world.hospitals[rng.Intn(len(l.world.hospitals))]
	p := l.world.persons[rng.Intn(len(l.world.persons))]
	body := l.settleBody(rng, "q", p)
	status, b, err := call(context.Background(), l.http, "POST", base+"/v1/settlements/quote", "demo-hospital-"+h, body)
	switch {
	case err != nil:
		l.stats.transport.Add(1)
	case status == 200 || status == 422 || status == 503:
		l.stats.quotes.Add(1)
	default:
		l.fail("quote: %d %s", status, b)
	}
}

// read GETs an acknowledged settlement and checks it is the one answered.
func (l *load) read(rng *rand.Rand, base string) {
	l.mu.Lock()
	if len(l.settled) == 0 {
		l.mu.Unlock()
		return
	}
	s := l.settled[rng.Intn(len(l.settled))]
	id, seq, token := s.ackID, s.ackSeq, s.token
	l.mu.Unlock()
	status, b, err := call(context.Background(), l.http, "GET", base+"/v1/settlements/"+id, token, nil)
	if err != nil {
		l.stats.transport.Add(1)
		return
	}
	var a answer
	if status != 200 || json.Unmarshal(b, &a) != nil || a.Seq != seq {
		l.fail("GET %s (acknowledged as seq %d): %d %s", id, seq, status, b)
	}
	l.stats.reads.Add(1)
}

type answer struct {
	SettlementID string `json:"settlement_id"`
	Seq          uint64 `json:"seq"`
	Replayed     bool   `json:"replayed"`
	Amounts      struct {
		Total string `json:"total"`
	} `json:"amounts"`
	Balance string `json:"balance"`
	Error   *struct {
		Code string `json:"code"`
	} `json:"error"`
}

// send makes one attempt of o and files the outcome.
func (l *load) send(base string, o *op) {
	status, b, err := call(context.Background(), l.http, "POST", base+o.path, o.token, o.body)
	if err != nil {
		l.stats.transport.Add(1)
		o.attempts++
		l.requeue(o)
		time.Sleep(10 * time.Millisecond)
		return
	}
	var a answer
	_ = json.Unmarshal(b, &a)
	switch {
	case status == 200:
		l.ack(o, &a, b)
	case status == 503:
		// overloaded or ledger_unavailable: this attempt wrote nothing.
		l.stats.unavailable.Add(1)
		l.requeue(o)
		time.Sleep(10 * time.Millisecond)
	case status == 422 && o.kind == opSettle:
		if o.seenSeq != 0 {
			l.fail("%s %s: refused (%s) on a retry although an earlier attempt committed as seq %d", o.kind, o.key, b, o.seenSeq)
		}
		o.refused = true
		l.stats.refused.Add(1)
	default:
		l.fail("%s %s: %d %s", o.kind, o.key, status, b)
	}
}

func (l *load) requeue(o *op) {
	l.mu.Lock()
	l.pending = append(l.pending, o)
	l.mu.Unlock()
}

func (l *load) ack(o *op, a *answer, raw []byte) {
	if a.Replayed && o.attempts == 0 {
		l.fail("%s %s: its first attempt was answered as a replay: %s", o.kind, o.key, raw)
	}
	if o.kind == opCredit {
		if o.seenSeq != 0 && !a.Replayed {
			// A credit is an entry: one the ledger held before this retry
			// must be answered as its replay.
			l.fail("credit %s: committed as seq %d before the crash, the retry was not a replay: %s", o.key, o.seenSeq, raw)
		}
		if o.seenSeq != 0 {
			l.stats.replayedRetries.Add(1)
		}
		o.acked, o.replayed, o.ackBal = true, a.Replayed, a.Balance
		l.stats.acked.Add(1)
		l.stats.byKind[o.kind].Add(1)
		return
	}
	if o.seenSeq != 0 {
		// The ledger held it before this retry: it must be a replay of it.
		if !a.Replayed || a.Seq != o.seenSeq {
			l.fail("%s %s: committed as seq %d before the crash, the retry answered seq %d replayed=%v (duplicated?)",
				o.kind, o.key, o.seenSeq, a.Seq, a.Replayed)
		}
		l.stats.replayedRetries.Add(1)
	}
	total, ok := parseFen(a.Amounts.Total)
	if a.SettlementID == "" || a.Seq == 0 || !ok {
		l.fail("%s %s: answer without id, seq or total: %s", o.kind, o.key, raw)
	}
	o.acked, o.replayed, o.ackSeq, o.ackID, o.ackTotal = true, a.Replayed, a.Seq, a.SettlementID, total
	l.stats.acked.Add(1)
	l.stats.byKind[o.kind].Add(1)
	if o.kind == opSettle {
		l.mu.Lock()
		l.settled = append(l.settled, o)
		l.mu.Unlock()
	}
}

func parseFen(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	v, err := money.Parse([]byte(strings.TrimPrefix(s, "-")), 2)
	if err != nil {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// check compares what the client knows with the ledger as a crash left it
// (read-only, before any restart): the audit passes; every acknowledged
// settlement and reversal is there exactly once, as answered; nothing is
// there that the client did not send or saw refused. Entries of attempts
// that got no answer are remembered: their retry must be a replay. It
// returns the number of entries.
func (l *load) check(t *testing.T, db string, final bool) uint64 {
	t.Helper()
	type got struct {
		seq     uint64
		total   int64
		balance string // a credit's balance after it
	}
	entries := map[string]got{}
	rep, err := ledger.AuditStore(db, nil, func(e *ledger.Entry) {
		k := e.Hospital + "/" + e.RequestID
		switch e.Kind {
		case ledger.KindOpening:
			return // the world's
		case ledger.KindCredit:
			k = e.InsuredRegion + "/" + e.RequestID // as the client keys it
		}
		if _, dup := entries[k]; dup {
			l.fail("request %s is in the ledger twice (seq %d)", k, e.Seq)
		}
		entries[k] = got{e.Seq, e.Amounts.Total, money.FormatFen(e.BalanceAfter)}
	})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if err := rep.Err(); err != nil {
		l.fail("%v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, g := range entries {
		o := l.ops[k]
		switch {
		case o == nil:
			l.failLocked("entry %d (%s) was never sent by the client", g.seq, k)
		case o.refused:
			l.failLocked("entry %d (%s) was answered 422 but is in the ledger", g.seq, k)
		case o.acked && o.kind == opCredit:
			if o.ackBal != g.balance {
				l.failLocked("credit %s answered balance %s, its entry %d says %s", k, o.ackBal, g.seq, g.balance)
			}
		case o.acked:
			if o.ackSeq != g.seq || o.ackTotal != g.total {
				l.failLocked("%s %s acknowledged as seq %d total %d, the ledger has seq %d total %d", o.kind, k, o.ackSeq, o.ackTotal, g.seq, g.total)
			}
		default:
			if o.seenSeq != 0 && o.seenSeq != g.seq {
				l.failLocked("%s %s was seq %d at an earlier audit, now %d", o.kind, k, o.seenSeq, g.seq)
			}
			o.seenSeq = g.seq
			if final {
				l.failLocked("%s %s is in the ledger but was never acknowledged after draining", o.kind, k)
			}
		}
	}
	for k, o := range l.ops {
		if o.acked { // credits too: a credit is an entry
			if _, ok := entries[k]; !ok {
				l.failLocked("acknowledged %s %s (seq %d) is not in the ledger", o.kind, k, o.ackSeq)
			}
		}
	}
	return rep.Entries
}

func (l *load) failLocked(format string, args ...any) {
	l.failures++
	if len(l.failNotes) < 40 {
		l.failNotes = append(l.failNotes, fmt.Sprintf(format, args...))
	}
}

// replayAcknowledged re-sends up to n acknowledged operations (all kinds):
// each must be answered as a replay of its first answer.
func (l *load) replayAcknowledged(base string, rng *rand.Rand, n int) int {
	l.mu.Lock()
	var acked []*op
	for _, o := range l.ops {
		if o.acked {
			acked = append(acked, o)
		}
	}
	l.mu.Unlock()
	rng.Shuffle(len(acked), func(i, j int) { acked[i], acked[j] = acked[j], acked[i] })
	if len(acked) > n {
		acked = acked[:n]
	}
	for _, o := range acked {
		status, b, err := call(context.Background(), l.http, "POST", base+o.path, o.token, o.body)
		var a answer
		if err != nil || status != 200 || json.Unmarshal(b, &a) != nil || !a.Replayed ||
			(o.kind != opCredit && a.Seq != o.ackSeq) || (o.kind == opCredit && a.Balance != o.ackBal) {
			l.fail("%s %s again after the crashes: %v %d %s (first answer seq %d balance %s)", o.kind, o.key, err, status, b, o.ackSeq, o.ackBal)
		}
	}
	return len(acked)
}

func (l *load) report(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures > 0 {
		t.Errorf("%d failures; the first:\n  %s", l.failures, strings.Join(l.failNotes, "\n  "))
	}
}
