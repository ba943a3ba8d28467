package killtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"

	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"medgate/engine/money"
	"medgate/ledger"
)

// TestGracefulShutdown sends SIGTERM to the real binary while clients are
// settling (bills of 200 lines, so that requests are in flight) and checks:
// the process exits 0 within the shutdown timeout; requests in flight at
// the signal are answered 200; a request that got no answer is not in the
// ledger (nothing is done unanswered) and every answered one is; the
// ledger closes cleanly ("ledger closed" without an error), the store
// audits clean, and the next start replays nothing from the WAL (no
// recovery: the ledger flushes at close).
func TestGracefulShutdown(t *testing.T) {
	e := readEnv(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	w := readWorld(t)
	p := start(t, db, "--log-level", "debug")
	p.ready(t, 60*time.Second)

	type outcome struct {
		hospital, id string
		began, ended time.Time
		status       int
		seq          uint64
		err          error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		sigAt    atomic.Int64
		wg       sync.WaitGroup
	)
	l := newLoad(t, w, e.seed, e.workers)
	for g := 0; g < e.workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(e.seed + int64(g)))
			for i := 0; ; i++ {
				h := w.hospitals[rng.Intn(len(w.hospitals))]
				pr := w.persons[rng.Intn(len(w.persons))]
				id := fmt.Sprintf("gs-%d-%d", g, i)
				o := outcome{hospital: h, id: id, began: time.Now()}
				status, b, err := call(context.Background(), l.http, "POST", p.base+"/v1/settlements", "demo-hospital-"+h, bigBill(rng, id, pr))
				o.ended, o.status, o.err = time.Now(), status, err
				var a answer
				if err == nil && status == 200 && json.Unmarshal(b, &a) == nil {
					o.seq = a.Seq
				} else if err == nil && status != 200 {
					t.Errorf("settlement %s: %d %s", id, status, b)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if err != nil && sigAt.Load() != 0 {
					return // the gateway is going away
				}
				if err != nil {
					t.Errorf("settlement %s before SIGTERM: %v", id, err)
					return
				}
			}
		}(g)
	}
	time.Sleep(1500 * time.Millisecond)
	sigAt.Store(time.Now().UnixNano())
	code := p.term(t, 60*time.Second)
	stopped := time.Now()
	wg.Wait()
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, tail(p.log.String(), 20))
	}
	log := p.log.String()
	closed := ""
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"ledger closed"`) {
			closed = line
		}
	}
	if closed == "" || strings.Contains(closed, `"error"`) {
		t.Errorf("the ledger did not close cleanly: %q\n%s", closed, tail(log, 20))
	}

	sig := time.Unix(0, sigAt.Load())
	inFlight, unanswered, answered := 0, 0, 0
	acked := map[string]uint64{}
	noAnswer := map[string]bool{}
	for _, o := range outcomes {
		k := o.hospital + "/" + o.id
		switch {
		case o.err != nil:
			unanswered++
			noAnswer[k] = true
		case o.status == 200:
			answered++
			acked[k] = o.seq
			if o.began.Before(sig) && o.ended.After(sig) {
				inFlight++
			}
		}
	}
	if inFlight == 0 {
		t.Errorf("no request was in flight at SIGTERM (%d answered, %d unanswered): the test proves nothing", answered, unanswered)
	}
	found := 0
	rep, err := ledger.AuditStore(db, nil, func(e *ledger.Entry) {
		k := e.Hospital + "/" + e.RequestID
		if noAnswer[k] {
			t.Errorf("%s is in the ledger (seq %d) but its client got no answer", k, e.Seq)
		}
		if seq, ok := acked[k]; ok {
			found++
			if seq != e.Seq {
				t.Errorf("%s answered seq %d, the ledger has %d", k, seq, e.Seq)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Error(err)
	}
	if found != len(acked) {
		t.Errorf("%d of %d answered settlements are in the ledger", found, len(acked))
	}

	// The next start needs no recovery.
	p = start(t, db, "--log-level", "debug")
	p.ready(t, 60*time.Second)
	keys, ok := walReplayed(p.log.String())
	if !ok || keys != 0 {
		t.Errorf("the start after a graceful shutdown replayed %d keys from the WAL (log line found: %v)", keys, ok)
	}
	if code := p.term(t, 30*time.Second); code != 0 {
		t.Errorf("second stop: exit code %d", code)
	}
	t.Logf("SIGTERM with %d requests in flight: all answered 200; the process stopped %v after the signal; %d settled before, %d requests without an answer (none in the ledger); restart replayed %d WAL keys",
		inFlight, stopped.Sub(sig).Round(time.Millisecond), answered, unanswered, keys)
}

// bigBill is a settlement of 200 lines.
func bigBill(rng *rand.Rand, id string, p personRef) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"request_id":%q,"person":{"id":%q,"insured_region":%q},"visit":{"type":"outpatient","visit_date":"2026-03-%02d"},"use_personal_account":true,"items":[`,
		id, p.id, p.region, 1+rng.Intn(28))
	for i := 0; i < 200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		price := int64(100 + rng.Intn(5000))
		fmt.Fprintf(&b, `{"code":%q,"unit_price":%q,"quantity":"1","amount":%q}`, codes[rng.Intn(len(codes))], money.FormatFen(price), money.FormatFen(price))
	}
	b.WriteString("]}")
	return []byte(b.String())
}
