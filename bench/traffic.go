package bench

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"medgate/ledger"
)

// TrafficConfig shapes the generated requests.
type TrafficConfig struct {
	// QuotePermille of requests are quotes (default 50: 5 %).
	QuotePermille int
	// ReversalPermille of requests reverse an earlier acknowledged
	// settlement of the same hospital (default 10: 1 %).
	ReversalPermille int
	// UnknownCodePermille of bill lines carry a code that is in no catalog
	// (default 20: 2 %).
	UnknownCodePermille int
	// ZipfS and ZipfV skew the choice of person within a region:
	// P(rank k) ∝ (ZipfV + k)^-ZipfS (defaults 1.1 and 20: the busiest
	// person of a region gets about 1 % of its visits, the way a few
	// chronic patients dominate real traffic without one person
	// serializing the gateway).
	ZipfS, ZipfV float64
	// Seed makes the sequence of bills reproducible (request ids and trace
	// codes also carry Nonce).
	Seed uint64
	// Nonce (0–99,999) keeps request ids and trace codes of different runs
	// apart on the same ledger. 0: derived from the clock.
	Nonce uint32
}

func (c *TrafficConfig) ensureDefaults() {
	if c.QuotePermille == 0 {
		c.QuotePermille = 50
	}
	if c.ReversalPermille == 0 {
		c.ReversalPermille = 10
	}
	if c.UnknownCodePermille == 0 {
		c.UnknownCodePermille = 20
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	if c.ZipfV == 0 {
		c.ZipfV = 20
	}
	if c.Nonce == 0 {
		c.Nonce = uint32(time.Now().UnixNano()%99_999) + 1
	}
	c.Nonce %= 100_000
}

// Kind is what a request does.
type Kind uint8

// Request kinds.
const (
	KindSettle Kind = iota
	KindQuote
	KindReversal
	numKinds
)

func (k Kind) String() string { return [...]string{"settle", "quote", "reversal"}[k] }

// Traffic generates the requests of one target run. Streams draw from it
// concurrently; each Stream is used by one connection.
type Traffic struct {
	cfg       TrafficConfig
	world     *World
	hospitals []hospitalInfo
	hospPick  []int // hospital indexes, repeated by weight
	perms     map[string][]int32
	known     map[string]bool // every catalog code, to keep "unknown" codes unknown
	streams   atomic.Uint32
	// traceBlocks counts the blocks of trace code serials handed out.
	traceBlocks atomic.Uint64
	acked       ackPool
	// unchecked numbers the settlements acknowledged without an answer
	// to read (Done with checkBody false).
	unchecked atomic.Uint64
}

type hospitalInfo struct {
	Hospital
	auth string // "Bearer <token>"
}

// NewTraffic prepares the generator for world.
func NewTraffic(world *World, cfg TrafficConfig) *Traffic {
	cfg.ensureDefaults()
	t := &Traffic{cfg: cfg, world: world, perms: map[string][]int32{}, known: map[string]bool{}}
	for i, h := range world.Hospitals {
		t.hospitals = append(t.hospitals, hospitalInfo{Hospital: h, auth: "Bearer " + h.Token})
		// Higher-level hospitals see more patients.
		for range max(h.Level, 1) {
			t.hospPick = append(t.hospPick, i)
		}
		for _, c := range h.Codes {
			t.known[c] = true
		}
	}
	// A fixed shuffle per region, so that the Zipf-hot persons are a random
	// mix of schemes and conditions, not the first lines of the file.
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	for _, r := range world.Regions {
		p := make([]int32, len(world.Persons[r]))
		for i := range p {
			p[i] = int32(i)
		}
		rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
		t.perms[r] = p
	}
	t.acked.max = 8192
	return t
}

// Request is one generated request. Its buffers belong to the Stream that
// filled it and are reused by the Stream's next call.
type Request struct {
	Kind     Kind
	Path     []byte
	Auth     string // Authorization header value
	Body     []byte
	hospital int
}

// Stream generates the requests of one connection. It is not safe for
// concurrent use.
type Stream struct {
	t        *Traffic
	id       uint32
	rng      *rand.Rand
	zipf     map[string]*rand.Zipf
	seq      uint64
	trace    uint64 // the next trace code serial; traceEnd: past its block
	traceEnd uint64
	idx      []int32
	reqID    []byte
	header   []byte
}

// NewStream returns a new request stream.
func (t *Traffic) NewStream() *Stream {
	id := t.streams.Add(1)
	s := &Stream{t: t, id: id, rng: rand.New(rand.NewPCG(t.cfg.Seed, uint64(id))), zipf: map[string]*rand.Zipf{}}
	for _, r := range t.world.Regions {
		n := len(t.world.Persons[r])
		s.zipf[r] = rand.NewZipf(s.rng, t.cfg.ZipfS, t.cfg.ZipfV, uint64(n-1))
	}
	return s
}

// Next fills req with the stream's next request.
func (s *Stream) Next(req *Request) {
	s.seq++
	p := s.rng.IntN(1000)
	if p < s.t.cfg.ReversalPermille {
		if a, ok := s.t.acked.take(s.rng); ok {
			s.reversal(req, a)
			return
		}
	}
	req.Kind = KindSettle
	req.Path = append(req.Path[:0], "/v1/settlements"...)
	if p >= 1000-s.t.cfg.QuotePermille {
		req.Kind = KindQuote
		req.Path = append(req.Path, "/quote"...)
	}
	req.hospital = s.t.hospPick[s.rng.IntN(len(s.t.hospPick))]
	req.Auth = s.t.hospitals[req.hospital].auth
	req.Body = s.bill(req.Body[:0], req.Kind == KindQuote, &s.t.hospitals[req.hospital])
}

// requestID is unique per run (nonce), stream and request.
func (s *Stream) requestID() []byte {
	s.reqID = append(s.reqID[:0], 'b')
	s.reqID = strconv.AppendUint(s.reqID, uint64(s.t.cfg.Nonce), 10)
	s.reqID = append(s.reqID, '-')
	s.reqID = strconv.AppendUint(s.reqID, uint64(s.id), 10)
	s.reqID = append(s.reqID, '-')
	return strconv.AppendUint(s.reqID, s.seq, 10)
}

// traceBlock is how many trace codes a stream takes from its Traffic at a
// time.
const traceBlock = 100_000

// traceCode is a 20-digit drug trace code unique per run: "8", the nonce
// (5 digits) and a serial (14) unique in the Traffic. Streams take their
// serials in blocks, so that any number of them (a run makes one per
// connection and phase) never meet and they touch shared state once in
// traceBlock codes.
func (s *Stream) traceCode(b []byte) []byte {
	if s.trace == s.traceEnd {
		s.trace = (s.t.traceBlocks.Add(1) - 1) * traceBlock
		s.traceEnd = s.trace + traceBlock
	}
	b = append(b, '8')
	b = appendPadded(b, uint64(s.t.cfg.Nonce), 5)
	b = appendPadded(b, s.trace, 14)
	s.trace++
	return b
}

// appendPadded appends the width lowest decimal digits of v, zero-padded.
func appendPadded(b []byte, v uint64, width int) []byte {
	var d [20]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:width]...)
}

var reasons = []string{"billing correction", "wrong person", "duplicate bill", "patient withdrew"}

func (s *Stream) reversal(req *Request, a acked) {
	req.Kind = KindReversal
	req.hospital = a.hospital
	req.Auth = s.t.hospitals[a.hospital].auth
	req.Path = append(append(append(req.Path[:0], "/v1/settlements/"...), a.id...), "/reversal"...)
	b := append(req.Body[:0], `{"request_id":"`...)
	b = append(b, s.requestID()...)
	b = append(b, `","reason":"bench: `...)
	b = append(b, reasons[s.rng.IntN(len(reasons))]...)
	req.Body = append(b, `"}`...)
}

// Visit types and their diagnoses (ICD-10), to make bills look real.
var (
	diagInpatient  = []string{"I63.9", "J18.9", "K35.8", "S72.0", "C34.9", "I21.9", "N18.5", "K80.2"}
	diagOutpatient = []string{"J06.9", "K29.7", "M54.5", "I10", "E11.9", "L30.9"}
	diagChronic    = []string{"I10", "E11.9", "J44.9", "N18.3"}
	diagTwoDisease = []string{"I10", "E11.9"}
	diagMaternity  = []string{"O80", "O82"}
)

// Bill dates lie between these days (api.md allows any date; the reference
// policies are in force from 2023, so every bill finds one).
var (
	firstDay = makeDate(2025, 1, 1)
	lastDay  = makeDate(2026, 10, 31)
)

// bill appends the JSON body of a settlement or quote at hospital h.
func (s *Stream) bill(b []byte, quote bool, h *hospitalInfo) []byte {
	rng := s.rng
	regions := s.t.world.Regions
	region := regions[rng.IntN(len(regions))]
	persons := s.t.world.Persons[region]
	person := &persons[s.t.perms[region][s.zipf[region].Uint64()]]

	b = append(b, '{')
	if !quote {
		b = append(append(append(b, `"request_id":"`...), s.requestID()...), `",`...)
	}
	b = append(b, `"person":{"id":"`...)
	b = append(b, person.ID...)
	b = append(b, `","insured_region":"`...)
	b = append(b, region...)
	b = append(b, `"},"visit":{"type":"`...)

	var diags []string
	end := firstDay + date(rng.IntN(int(lastDay-firstDay)+1))
	switch u := rng.IntN(100); {
	case u < 5:
		b = append(b, `maternity",`...)
		b = stay(b, end, 2+rng.IntN(4))
		b = append(b, `"birth_order":`...)
		b = strconv.AppendInt(b, int64(1+rng.IntN(2)+rng.IntN(2)), 10)
		b = append(b, ',')
		diags = diagMaternity
	case u < 35:
		b = append(b, `inpatient",`...)
		b = stay(b, end, 1+rng.IntN(20))
		diags = diagInpatient
	case u < 50 && person.Conditions:
		b = append(b, `chronic",`...)
		b = visitDate(b, end)
		diags = diagChronic
	case u < 60 && person.Conditions && person.Resident:
		b = append(b, `two_disease",`...)
		b = visitDate(b, end)
		diags = diagTwoDisease
	default:
		b = append(b, `outpatient",`...)
		b = visitDate(b, end)
		diags = diagOutpatient
	}
	b = append(b, `"emergency":`...)
	b = strconv.AppendBool(b, rng.IntN(100) < 3)
	b = append(b, `,"diagnoses":["`...)
	b = append(b, diags[rng.IntN(len(diags))]...)
	if rng.IntN(100) < 30 {
		b = append(append(b, `","`...), diags[rng.IntN(len(diags))]...)
	}
	b = append(b, `"]},"use_personal_account":`...)
	b = strconv.AppendBool(b, person.Account && rng.IntN(100) < 70 || !person.Account && rng.IntN(100) < 5)
	b = append(b, `,"items":[`...)
	b = s.items(b, h)
	return append(b, "]}"...)
}

// stay appends an admission and discharge of days nights ending on
// discharged, moved later when it would begin before firstDay.
func stay(b []byte, discharged date, days int) []byte {
	admitted := discharged - date(days)
	if admitted < firstDay {
		admitted, discharged = firstDay, firstDay+date(days)
	}
	b = append(b, `"admitted_on":"`...)
	b = admitted.appendTo(b)
	b = append(b, `","discharged_on":"`...)
	b = discharged.appendTo(b)
	return append(b, `",`...)
}

func visitDate(b []byte, d date) []byte {
	b = append(b, `"visit_date":"`...)
	b = d.appendTo(b)
	return append(b, `",`...)
}

// itemCount draws a bill's number of lines: log-normal with median 20,
// cut to 1–60.
func (s *Stream) itemCount() int {
	n := int(math.Round(20 * math.Exp(0.7*s.rng.NormFloat64())))
	return min(max(n, 1), 60)
}

// Quantities (ten-thousandths) and their weights: mostly whole units, some
// halves and quarters (tablets, dressings).
var quantities = []struct{ q, w int64 }{{10000, 50}, {20000, 20}, {30000, 15}, {5000, 8}, {15000, 4}, {2500, 3}}

// items appends n distinct bill lines drawn from h's catalog, a few of them
// with codes no catalog lists, and trace codes on drug lines (XD…).
func (s *Stream) items(b []byte, h *hospitalInfo) []byte {
	rng := s.rng
	n := s.itemCount()
	codes := h.Codes
	// Partial Fisher–Yates over the catalog's indexes: distinct codes.
	if cap(s.idx) < len(codes) {
		s.idx = make([]int32, len(codes))
	}
	idx := s.idx[:len(codes)]
	for i := range idx {
		idx[i] = int32(i)
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		var code string
		if len(codes) == 0 || i >= len(codes) || rng.IntN(1000) < s.t.cfg.UnknownCodePermille {
			code = s.unknownCode()
		} else {
			j := i + rng.IntN(len(idx)-i)
			idx[i], idx[j] = idx[j], idx[i]
			code = codes[idx[i]]
		}
		price := s.unitPrice()
		decimals := 4
		switch u := rng.IntN(100); {
		case u < 15:
			decimals = 0
		case u < 70:
			decimals = 2
		case u < 85:
			decimals = 3
		}
		step := pow10[6-decimals]
		price = max(price-price%step, step)
		qty := pickQuantity(rng)
		b = append(b, `{"code":"`...)
		b = append(b, code...)
		b = append(b, `","unit_price":"`...)
		b = appendScaled(b, price, 6, decimals)
		b = append(b, `","quantity":"`...)
		b = appendQuantity(b, qty)
		b = append(b, `","amount":"`...)
		b = appendFen(b, lineAmount(price, qty))
		b = append(b, '"')
		if len(code) > 2 && code[:2] == "XD" {
			b = append(b, `,"trace_codes":["`...)
			b = s.traceCode(b)
			if rng.IntN(100) < 20 {
				b = append(b, `","`...)
				b = s.traceCode(b)
			}
			b = append(b, `"]`...)
		}
		b = append(b, '}')
	}
	return b
}

// unitPrice is log-uniform between 0.50 and 2,000 yuan, in micro-yuan.
func (s *Stream) unitPrice() int64 {
	lo, hi := math.Log(0.5*microPerYuan), math.Log(2000*microPerYuan)
	return int64(math.Exp(lo + (hi-lo)*s.rng.Float64()))
}

func pickQuantity(rng *rand.Rand) int64 {
	u := rng.Int64N(100)
	for _, q := range quantities {
		if u < q.w {
			return q.q
		}
		u -= q.w
	}
	return qtyScale
}

// appendQuantity prints a quantity with as few decimals as it needs.
func appendQuantity(b []byte, q int64) []byte {
	switch {
	case q%qtyScale == 0:
		return appendScaled(b, q, 4, 0)
	case q%1000 == 0:
		return appendScaled(b, q, 4, 1)
	case q%100 == 0:
		return appendScaled(b, q, 4, 2)
	}
	return appendScaled(b, q, 4, 4)
}

// unknownCode is a code in no catalog (answered as an unlisted class C
// line).
func (s *Stream) unknownCode() string {
	for {
		c := "XU" + strconv.Itoa(10_000_000+s.rng.IntN(90_000_000))
		if !s.t.known[c] {
			return c
		}
	}
}

// Done tells the traffic how a request ended. A 200 settlement becomes a
// candidate for a later reversal; it returns a problem when a 200 answer
// is not what the request should get (a replay means a request id was
// reused: a generator bug).
func (t *Traffic) Done(req *Request, status int, body []byte, checkBody bool) (problem string) {
	if status != 200 {
		return ""
	}
	if !checkBody {
		// Not the gateway (the hello baseline): its answers name no
		// settlement, but it gets the same mix of requests, so a
		// settlement is "acknowledged" under an id of the gateway's shape
		// for a later reversal to name.
		if req.Kind == KindSettle {
			t.acked.put(acked{hospital: req.hospital, id: ledger.SettlementID(t.unchecked.Add(1))})
		}
		return ""
	}
	if req.Kind != KindQuote && !bytes.Contains(body, []byte(`"replayed":false`)) {
		return "replayed"
	}
	if req.Kind == KindSettle {
		id, ok := settlementID(body)
		if !ok {
			return "no_settlement_id"
		}
		t.acked.put(acked{hospital: req.hospital, id: id})
	}
	return ""
}

func settlementID(body []byte) (string, bool) {
	const key = `"settlement_id":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// acked is an acknowledged settlement that may be reversed.
type acked struct {
	hospital int
	id       string
}

// ackPool holds recent acknowledged settlements; a reversal takes one out,
// so no settlement is reversed twice (that would be a 409).
type ackPool struct {
	mu    sync.Mutex
	items []acked
	max   int
	n     uint64
}

func (p *ackPool) put(a acked) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if len(p.items) < p.max {
		p.items = append(p.items, a)
		return
	}
	// Full: overwrite a slot picked from the count (cheap, spreads ages).
	p.items[p.n*2654435761%uint64(len(p.items))] = a
}

func (p *ackPool) take(rng *rand.Rand) (acked, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.items) == 0 {
		return acked{}, false
	}
	i := rng.IntN(len(p.items))
	a := p.items[i]
	p.items[i] = p.items[len(p.items)-1]
	p.items = p.items[:len(p.items)-1]
	return a, true
}
