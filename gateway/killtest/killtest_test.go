package killtest

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestKillLoop runs the gateway under load, kills it with SIGKILL at a
// random moment (now and then while it is still starting), audits the
// ledger as the crash left it, restarts, and goes on, for
// MEDGATE_CRASH_CYCLES cycles. The client retries every unanswered write
// with the same request id and body. After each crash: the audit passes
// (chain, tree, every index equal to its recomputation from the entries);
// every acknowledged settlement and reversal is there exactly once, as
// answered; nothing unsent or refused is there; and a retry of a write
// that had reached the ledger is answered as its replay. At the end,
// everything pending is drained, acknowledged writes are sent again (all
// replays, credits included), and after a SIGTERM the ledger holds exactly
// the acknowledged writes.
func TestKillLoop(t *testing.T) {
	e := readEnv(t)
	t.Logf("kill loop: %d cycles, %d workers, seed %d (MEDGATE_CRASH_SEED=%d replays the choices)", e.cycles, e.workers, e.seed, e.seed)
	dir, err := os.MkdirTemp("", "medgate-killtest-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "db")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d; the ledger is kept in %s (medgate audit --db %s)", e.seed, db, db)
			return
		}
		os.RemoveAll(dir)
	})
	rng := rand.New(rand.NewSource(e.seed))
	l := newLoad(t, readWorld(t), e.seed, e.workers)
	began := time.Now()
	var entries uint64
	earlyKills, replays := 0, 0
	for cycle := 1; cycle <= e.cycles; cycle++ {
		p := start(t, db, "--log-level", "debug")
		early := cycle > 1 && rng.Intn(10) == 0
		if early {
			// Kill while it opens the ledger, compiles or applies the world.
			time.Sleep(time.Duration(rng.Intn(400)) * time.Millisecond)
			p.kill(t)
			earlyKills++
		} else {
			p.ready(t, 60*time.Second)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				l.run(p.base, e.workers, cycle, stop, false)
				close(done)
			}()
			time.Sleep(time.Duration(50+rng.Intn(1200)) * time.Millisecond)
			p.kill(t)
			close(stop)
			<-done
		}
		if n, ok := walReplayed(p.log.String()); ok && n > 0 {
			replays++
		}
		entries = l.check(t, db, false)
		if t.Failed() || l.failures > 0 {
			l.report(t)
			t.Fatalf("cycle %d (seed %d) failed; log tail:\n%s", cycle, e.seed, tail(p.log.String(), 20))
		}
		if cycle%10 == 0 || cycle == e.cycles {
			t.Logf("cycle %d: %d entries, %d acknowledged, %d replayed retries, %.0fs", cycle, entries, l.stats.acked.Load(), l.stats.replayedRetries.Load(), time.Since(began).Seconds())
		}
	}

	// Drain: answer everything pending, then every acknowledged write
	// again must be a replay.
	p := start(t, db)
	p.ready(t, 60*time.Second)
	l.run(p.base, e.workers, e.cycles+1, make(chan struct{}), true)
	again := l.replayAcknowledged(p.base, rng, 2000)
	if code := p.term(t, 60*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM\n%s", code, tail(p.log.String(), 20))
	}
	entries = l.check(t, db, true)
	out, err := exec.Command(binary(t), "audit", "--db", db).CombinedOutput()
	if err != nil {
		t.Errorf("medgate audit: %v\n%s", err, out)
	}
	l.report(t)
	s := &l.stats
	t.Logf("kill loop done in %v: %d cycles (%d killed while starting, %d restarts replayed the WAL), seed %d", time.Since(began).Round(time.Second), e.cycles, earlyKills, replays, e.seed)
	t.Logf("ledger: %d entries; acknowledged: %d settlements, %d reversals, %d credits; %d retries answered as replays of a write that had committed; %d re-sent at the end, all replays",
		entries, s.byKind[opSettle].Load(), s.byKind[opReverse].Load(), s.byKind[opCredit].Load(), s.replayedRetries.Load(), again)
	t.Logf("also: %d retries, %d transport errors, %d 503s, %d policy refusals, %d quotes, %d reads", s.retries.Load(), s.transport.Load(), s.unavailable.Load(), s.refused.Load(), s.quotes.Load(), s.reads.Load())
	t.Logf("medgate audit: %s", out)
}
