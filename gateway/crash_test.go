package gateway

import (
	"encoding/json"
	"fmt"
	"math/rand"
	randv2 "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/ledger"
)

// crashSeed is MEDGATE_CRASH_SEED, or a fresh seed; tests print it.
func crashSeed(t *testing.T) int64 {
	t.Helper()
	if s := os.Getenv("MEDGATE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("MEDGATE_CRASH_SEED: %v", err)
		}
		return v
	}
	return time.Now().UnixNano() % 1_000_000_000
}

// rawDo is harness.do without failing the test on a transport error.
func (h *harness) rawDo(method, path, token string, body []byte) (int, []byte, error) {
	resp, err := h.roundTrip(method, path, token, "", body, 10*time.Second)
	if err != nil {
		return 0, nil, err
	}
	defer fasthttp.ReleaseResponse(resp)
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// crashWorld has persons in the three reference regions.
func crashWorld(t *testing.T) *World {
	ps := map[string][]string{}
	for i := 0; i < 12; i++ {
		region := []string{"371600", "152500", "370000"}[i%3]
		p := strings.Replace(empActive, `"EMP1"`, fmt.Sprintf(`"P%02d"`, i), 1)
		if i%4 == 3 {
			p = strings.Replace(strings.Replace(resident, `"RES1"`, fmt.Sprintf(`"P%02d"`, i), 1), `"0.00"`, `"300.00"`, 1)
		}
		ps[region] = append(ps[region], p)
	}
	return refWorld(t, ps)
}

var crashHospitals = []string{"H3716020001", "H3716210001", "H3701020001", "H1525020001"}

// wop is one write of the in-process crash workload.
type wop struct {
	key, token, path string
	body             []byte
	credit           bool
	hospital         string
	target           string // reversals: the settlement reversed
	sent             bool   // an attempt got no answer
	seen             uint64 // the seq the ledger had for it while unanswered
	acked            bool
	seq              uint64
	id               string
	refused          bool
}

type crashLoad struct {
	t        *testing.T
	mu       sync.Mutex
	ops      map[string]*wop
	pending  []*wop
	settled  []*wop
	failures []string
	next     int
	replays  int
}

func (c *crashLoad) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) < 30 {
		c.failures = append(c.failures, fmt.Sprintf(format, args...))
	}
}

func (c *crashLoad) newOp(rng *rand.Rand) *wop {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	n := c.next
	var o *wop
	switch r := rng.Intn(10); {
	case r < 2 && len(c.settled) > 0:
		i := rng.Intn(len(c.settled))
		s := c.settled[i]
		c.settled[i] = c.settled[len(c.settled)-1]
		c.settled = c.settled[:len(c.settled)-1]
		id := fmt.Sprintf("rv-%d", n)
		o = &wop{key: s.hospital + "/" + id, token: s.token, hospital: s.hospital, path: "/v1/settlements/" + s.id + "/reversal", target: s.id,
			body: []byte(fmt.Sprintf(`{"request_id":%q,"reason":"crash test"}`, id))}
	case r < 3:
		i := rng.Intn(12)
		region := []string{"371600", "152500", "370000"}[i%3]
		ref := fmt.Sprintf("cr-%d", n)
		o = &wop{key: region + "/" + ref, token: "tok-region-" + region, credit: true,
			path: fmt.Sprintf("/v1/regions/%s/persons/P%02d/credits", region, i),
			body: []byte(fmt.Sprintf(`{"reference":%q,"amount":"%d.00"}`, ref, 1+rng.Intn(100)))}
	default:
		i := rng.Intn(12)
		region := []string{"371600", "152500", "370000"}[i%3]
		h := crashHospitals[rng.Intn(len(crashHospitals))]
		id := fmt.Sprintf("st-%d", n)
		price := 10 + rng.Intn(900)
		items := fmt.Sprintf(`[{"code":"XA01","unit_price":"%d.00","quantity":"1","amount":"%d.00","trace_codes":["TC-%d"]},{"code":"XB01","unit_price":"3.50","quantity":"2","amount":"7.00"}]`, price, price, n)
		o = &wop{key: h + "/" + id, token: "tok-" + h, hospital: h, path: "/v1/settlements",
			body: settleBody(id, fmt.Sprintf("P%02d", i), region, fmt.Sprintf(`{"type":"outpatient","visit_date":"2025-%02d-10"}`, 1+rng.Intn(12)), items)}
	}
	c.ops[o.key] = o
	return o
}

// send makes one attempt; the outcome is filed under c.mu, so that a
// crash snapshot sees acknowledgements atomically.
func (c *crashLoad) send(h *harness, o *wop) {
	status, body, err := h.rawDo("POST", o.path, o.token, o.body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil || status == 503 {
		if err != nil {
			o.sent = true
		}
		c.pending = append(c.pending, o)
		return
	}
	var a struct {
		ID       string `json:"settlement_id"`
		Seq      uint64 `json:"seq"`
		Replayed bool   `json:"replayed"`
	}
	json.Unmarshal(body, &a)
	switch {
	case status == 200:
		if a.Replayed && !o.sent {
			c.failures = append(c.failures, fmt.Sprintf("%s: first attempt answered as a replay", o.key))
		}
		if o.seen != 0 {
			if !a.Replayed || (!o.credit && a.Seq != o.seen) { // a credit answers no seq
				c.failures = append(c.failures, fmt.Sprintf("%s: was seq %d in the ledger, the retry answered seq %d replayed=%v", o.key, o.seen, a.Seq, a.Replayed))
			}
			c.replays++
		}
		o.acked, o.seq, o.id = true, a.Seq, a.ID
		if !o.credit && !strings.Contains(o.path, "reversal") {
			c.settled = append(c.settled, o)
		}
	case status == 422 && !o.credit:
		if o.seen != 0 {
			c.failures = append(c.failures, fmt.Sprintf("%s: refused on a retry although seq %d committed", o.key, o.seen))
		}
		o.refused = true
	default:
		c.failures = append(c.failures, fmt.Sprintf("%s: %d %s", o.key, status, body))
	}
}

// TestCrashSimulation runs a concurrent settlement workload through the
// gateway on Pebble's crashable in-memory filesystem and, at random
// moments, takes a crash clone keeping a random share of the unsynced
// data, reopens the gateway on it and checks: the audit passes; every
// write acknowledged before the crash is there, as answered; nothing
// unsent is there; writes that got no answer but reached the clone are
// answered as replays when retried. MEDGATE_CRASH_ROUNDS sets the number
// of crashes (default 4); MEDGATE_CRASH_SEED replays one.
func TestCrashSimulation(t *testing.T) {
	seed := crashSeed(t)
	rounds := 4
	if n, err := strconv.Atoi(os.Getenv("MEDGATE_CRASH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	t.Logf("seed %d (MEDGATE_CRASH_SEED=%d replays it), %d crashes", seed, seed, rounds)
	defer func() {
		if t.Failed() {
			t.Logf("failed with MEDGATE_CRASH_SEED=%d", seed)
		}
	}()
	rng := rand.New(rand.NewSource(seed))
	fs := vfs.NewCrashableMem()
	h := &harness{tb: t, fs: fs, dir: "ledger", world: crashWorld(t), policies: &engine.Policies{}}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)
	c := &crashLoad{t: t, ops: map[string]*wop{}}
	const workers = 8
	var totalAcked, totalEntries int
	for round := 1; round <= rounds; round++ {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wrng := rand.New(rand.NewSource(seed*7919 + int64(round)*131 + int64(w)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c.mu.Lock()
					var o *wop
					if n := len(c.pending); n > 0 {
						o, c.pending = c.pending[n-1], c.pending[:n-1]
					}
					c.mu.Unlock()
					if o == nil {
						o = c.newOp(wrng)
					}
					c.send(h, o)
				}
			}()
		}
		time.Sleep(time.Duration(20+rng.Intn(120)) * time.Millisecond)
		// The crash: acknowledgements so far are the snapshot.
		c.mu.Lock()
		before := map[string]bool{}
		for k, o := range c.ops {
			if o.acked {
				before[k] = true
			}
		}
		keep := rng.Intn(101)
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: keep, RNG: randv2.New(randv2.NewPCG(uint64(rng.Int63()), 1))})
		c.mu.Unlock()
		close(stop)
		wg.Wait()
		h.stop()

		fs = crashed
		h.fs = crashed
		h.start()
		entries := map[string]uint64{}
		rep, err := h.db.Audit(func(e *ledger.Entry) {
			switch e.Kind {
			case ledger.KindOpening: // the world's, not the load's
			case ledger.KindCredit: // keyed as its write: region/reference
				entries[e.InsuredRegion+"/"+e.RequestID] = e.Seq
			default:
				entries[e.Hospital+"/"+e.RequestID] = e.Seq
			}
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := rep.Err(); err != nil {
			t.Fatalf("round %d (kept %d%% of unsynced data): %v", round, keep, err)
		}
		c.mu.Lock()
		// Answers given after the clone never reached anybody, as far as
		// the crashed gateway goes: those writes are retried (a retry of
		// one the clone holds must be its replay), and reversals of
		// settlements the clone lacks are dropped (their target's id is
		// gone).
		lost := map[string]bool{}
		for k, o := range c.ops {
			if !o.acked || before[k] {
				continue
			}
			if _, ok := entries[k]; !ok && o.id != "" && o.target == "" {
				lost[o.id] = true
			}
			o.acked, o.sent, o.id, o.seq = false, true, "", 0
			c.pending = append(c.pending, o)
		}
		var kept []*wop
		for _, o := range c.pending {
			if o.target != "" && lost[o.target] {
				if _, ok := entries[o.key]; ok {
					t.Errorf("round %d: %s reverses a settlement the crash lost, yet it is in the ledger", round, o.key)
				}
				delete(c.ops, o.key)
				continue
			}
			kept = append(kept, o)
		}
		c.pending = kept
		var settled []*wop
		for _, o := range c.settled {
			if o.acked {
				settled = append(settled, o)
			}
		}
		c.settled = settled
		for k, seq := range entries {
			o := c.ops[k]
			switch {
			case o == nil:
				t.Errorf("round %d: entry %d (%s) was never sent", round, seq, k)
			case o.refused:
				t.Errorf("round %d: entry %d (%s) was refused but is in the ledger", round, seq, k)
			case o.acked && !o.credit && o.seq != seq: // a credit answers no seq
				t.Errorf("round %d: %s acknowledged as seq %d, the ledger has %d", round, k, o.seq, seq)
			case !o.acked:
				o.seen = seq
			}
		}
		acked := 0
		for k, o := range c.ops {
			if o.acked {
				if !o.credit {
					acked++
				}
				if _, ok := entries[k]; !ok {
					t.Errorf("round %d: acknowledged %s (seq %d) lost in the crash", round, k, o.seq)
				}
			}
		}
		// A retry of a write the clone holds must be its replay: drain.
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		for len(pending) > 0 {
			o := pending[0]
			pending = pending[1:]
			c.send(h, o)
			c.mu.Lock()
			pending = append(pending, c.pending...)
			c.pending = nil
			c.mu.Unlock()
		}
		if len(c.failures) > 0 {
			t.Fatalf("round %d:\n  %s", round, strings.Join(c.failures, "\n  "))
		}
		totalAcked, totalEntries = acked, len(entries)
		t.Logf("round %d: crash kept %d%% of unsynced data; %d entries survive; the %d writes acknowledged before the crash (credits included) all there", round, keep, len(entries), len(before))
	}
	t.Logf("%d crashes, %d acknowledged settlements and reversals, %d entries, %d retries answered as replays", rounds, totalAcked, totalEntries, c.replays)
}
