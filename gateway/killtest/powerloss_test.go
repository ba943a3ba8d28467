package killtest

import (
	"context"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"medgate/gateway/internal/testenv"
	"medgate/gateway/killtest/powerfs"
)

// powerMount mounts a powerfs over a fresh directory; the ledger is then
// db on the mount and backing/db on the disk under it.
func powerMount(t *testing.T, opts powerfs.Options) (fsys *powerfs.FS, mnt, backing string) {
	t.Helper()
	if err := powerfs.Available(); err != nil {
		t.Skipf("the power-cut tests need a FUSE mount: %v", err)
	}
	dir, err := os.MkdirTemp("", "medgate-powerloss-")
	if err != nil {
		t.Fatal(err)
	}
	backing, mnt = filepath.Join(dir, "disk"), filepath.Join(dir, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fsys, err = powerfs.Mount(backing, mnt, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fsys.Unmount(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("the ledger is kept in %s (medgate audit --db %s)", filepath.Join(backing, "db"), filepath.Join(backing, "db"))
			return
		}
		os.RemoveAll(dir)
	})
	return fsys, mnt, backing
}

// cutAndRemount cuts the power under the mount (every writer must be
// gone) and serves what the cut left again.
func cutAndRemount(t *testing.T, fsys *powerfs.FS) powerfs.Loss {
	t.Helper()
	lost, err := fsys.PowerCut()
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remount(); err != nil {
		t.Fatal(err)
	}
	return lost
}

// TestPowerLoss is the kill loop with the power cut as well: the ledger
// lives on a powerfs mount, and after each SIGKILL every byte not yet
// synced by fsync or fdatasync is lost, as when a machine loses power
// (TestKillLoop keeps the page cache, so it cannot tell a write synced
// before its answer from one only written). After each cut the same
// checks as the kill loop's (every other cut torn: a random part of what
// was not synced reached the disk, page by page): the audit passes, every acknowledged
// settlement, reversal and credit is there exactly once as answered,
// nothing refused or unsent is, and retries are replays. It runs
// MEDGATE_CRASH_CYCLES cycles through the gateway's own WAL syncs (direct
// fdatasync calls, ledger/walsync_linux.go).
func TestPowerLoss(t *testing.T) {
	e := readEnv(t)
	fsys, mnt, backing := powerMount(t, powerfs.Options{})
	t.Logf("power loss: %d cycles, %d workers, seed %d (MEDGATE_CRASH_SEED=%d replays the choices)", e.cycles, e.workers, e.seed, e.seed)
	live, onDisk := filepath.Join(mnt, "db"), filepath.Join(backing, "db")
	rng := rand.New(rand.NewSource(e.seed))
	l := newLoad(t, readWorld(t), e.seed, e.workers)
	began := time.Now()
	var entries uint64
	var lost powerfs.Loss
	syncs, torn := 0, 0
	for cycle := 1; cycle <= e.cycles; cycle++ {
		p := start(t, live, "--log-level", "debug")
		p.ready(t, 60*time.Second)
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			l.run(p.base, e.workers, cycle, stop, false)
			close(done)
		}()
		time.Sleep(time.Duration(300+rng.Intn(1200)) * time.Millisecond)
		p.kill(t)
		close(stop)
		<-done
		syncs += fsys.Syncs()
		// Every other cut is torn: some of what was not synced had
		// reached the disk, page by page.
		var n powerfs.Loss
		var err error
		if cycle%2 == 0 {
			n, err = fsys.PowerCutTorn(rng)
			torn++
		} else {
			n, err = fsys.PowerCut()
		}
		if err != nil {
			t.Fatal(err)
		}
		lost.Bytes += n.Bytes
		lost.Names += n.Names
		entries = l.check(t, onDisk, false)
		if t.Failed() || l.failures > 0 {
			l.report(t)
			t.Fatalf("cycle %d (seed %d) failed after the power cut; log tail:\n%s", cycle, e.seed, tail(p.log.String(), 20))
		}
		if err := fsys.Remount(); err != nil {
			t.Fatal(err)
		}
	}
	if l.stats.acked.Load() == 0 || syncs == 0 {
		t.Fatalf("nothing was tested: %d writes acknowledged, %d syncs", l.stats.acked.Load(), syncs)
	}

	// Drain, stop gracefully, cut the power once more: a graceful stop
	// leaves nothing unsynced.
	p := start(t, live)
	p.ready(t, 60*time.Second)
	l.run(p.base, e.workers, e.cycles+1, make(chan struct{}), true)
	again := l.replayAcknowledged(p.base, rng, 1000)
	if code := p.term(t, 60*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM\n%s", code, tail(p.log.String(), 20))
	}
	if _, err := fsys.PowerCut(); err != nil {
		t.Fatal(err)
	}
	entries = l.check(t, onDisk, true)
	out, err := exec.Command(binary(t), "audit", "--db", onDisk).CombinedOutput()
	if err != nil {
		t.Errorf("medgate audit: %v\n%s", err, out)
	}
	l.report(t)
	if err := fsys.Remount(); err != nil { // for the cleanup's unmount
		t.Fatal(err)
	}
	s := &l.stats
	t.Logf("power loss done in %v: %d cycles (%d cuts torn), %d syncs seen by the mount, at the cuts: %d unsynced bytes at risk and %d unsynced names lost, seed %d", time.Since(began).Round(time.Second), e.cycles, torn, syncs, lost.Bytes, lost.Names, e.seed)
	t.Logf("ledger: %d entries; acknowledged: %d settlements, %d reversals, %d credits; %d retries answered as replays; %d re-sent at the end, all replays",
		entries, s.byKind[opSettle].Load(), s.byKind[opReverse].Load(), s.byKind[opCredit].Load(), s.replayedRetries.Load(), again)
}

// TestPowerLossSeesALyingDisk is TestPowerLoss's control: the same cycle
// on a mount that answers the WAL's syncs without keeping anything (once
// the gateway serves) must end with acknowledged writes missing. Without
// it, a harness that lost nothing could not be told from one that checks
// nothing.
func TestPowerLossSeesALyingDisk(t *testing.T) {
	e := readEnv(t)
	var lie atomic.Bool
	fsys, mnt, backing := powerMount(t, powerfs.Options{IgnoreSync: func(name string) bool {
		return lie.Load() && strings.HasSuffix(name, ".log")
	}})
	l := newLoad(t, readWorld(t), e.seed, e.workers)
	p := start(t, filepath.Join(mnt, "db"))
	p.ready(t, 60*time.Second)
	lie.Store(true)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		l.run(p.base, e.workers, 1, stop, false)
		close(done)
	}()
	time.Sleep(time.Second)
	p.kill(t)
	close(stop)
	<-done
	cutAndRemount(t, fsys)
	acked := l.stats.acked.Load()
	l.check(t, filepath.Join(backing, "db"), false)
	lost := 0
	for _, n := range l.failNotes {
		if strings.Contains(n, "is not in the ledger") {
			lost++
		}
	}
	if acked == 0 || lost == 0 {
		t.Fatalf("a disk that kept none of the WAL's syncs lost nothing the harness saw: %d acknowledged, %d failures %q", acked, l.failures, l.failNotes)
	}
	t.Logf("control: %d writes acknowledged on a lying disk; the check found %d problems, e.g. %q", acked, l.failures, l.failNotes[0])
}

// TestPowerLossKeepsAnUpload: a policy version answered 201 on a new
// ledger is still there after a power cut. Modules and version records
// are files under <db>/policies, not Pebble keys: their names must be
// synced by the gateway itself. A new person and a month close answered
// before the cut are there too.
func TestPowerLossKeepsAnUpload(t *testing.T) {
	readEnv(t)
	fsys, mnt, _ := powerMount(t, powerfs.Options{})
	live := filepath.Join(mnt, "db")
	p := start(t, live)
	p.ready(t, 60*time.Second)

	root := testenv.RepoRoot()
	up := filepath.Join(t.TempDir(), "up.json")
	out, err := exec.Command(binary(t), "policy", "sign", "--region", "371600", "--version", "v2099-power",
		"--effective", "2099-01-01", "--demo-key", "--module", filepath.Join(testenv.ModuleDir(t), "371600", "v2024.wasm"),
		"--cases", filepath.Join(root, "testdata", "cases", "371600-v2024.json"), "-o", up).CombinedOutput()
	if err != nil {
		p.kill(t)
		t.Fatalf("policy sign: %v\n%s", err, out)
	}
	body, err := os.ReadFile(up)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	code, answer, err := call(context.Background(), c, "POST", p.base+"/v1/regions/371600/policies", "demo-region-371600", body)
	if err != nil || code != 201 {
		p.kill(t)
		t.Fatalf("upload: %d %s %v", code, answer, err)
	}
	person := `{"id": "371600199001019999", "scheme": "employee", "employment": "active", "groups": [], "conditions": [], "registration": "long_term", "account_balance": "0.00", "enrolled_on": "2010-01-01", "in_concentrated_period": true, "lapsed_years": 0, "repaid_years": 0, "continuous_years": 10, "zero_claim_years": 0}`
	if code, answer, err := call(context.Background(), c, "POST", p.base+"/v1/regions/371600/persons", "demo-region-371600", []byte(person)); err != nil || code != 200 || !strings.Contains(string(answer), `"created":1`) {
		p.kill(t)
		t.Fatalf("persons: %d %s %v", code, answer, err)
	}
	if code, answer, err := call(context.Background(), c, "POST", p.base+"/v1/clearing/months/2026-10/close", "demo-clearing", nil); err != nil || code != 200 {
		p.kill(t)
		t.Fatalf("month close: %d %s %v", code, answer, err)
	}
	p.kill(t)
	lost := cutAndRemount(t, fsys)
	p = start(t, live)
	p.ready(t, 60*time.Second)
	defer p.term(t, 60*time.Second)
	code, answer, err = call(context.Background(), c, "GET", p.base+"/v1/regions/371600/policies", "demo-region-371600", nil)
	if err != nil || code != 200 {
		t.Fatalf("list: %d %s %v", code, answer, err)
	}
	if !strings.Contains(string(answer), `"v2099-power"`) {
		t.Fatalf("the version answered 201 is gone after a power cut that lost %+v:\n%s", lost, answer)
	}
	code, answer, err = call(context.Background(), c, "GET", p.base+"/v1/clearing/months/2026-10", "demo-clearing", nil)
	if err != nil || code != 200 || !strings.Contains(string(answer), `"closed":true`) {
		t.Fatalf("the month closed before the cut: %d %s %v", code, answer, err)
	}
	quote := `{"request_id":"pq-1","person":{"id":"371600199001019999","insured_region":"371600"},` +
		`"visit":{"type":"outpatient","visit_date":"2026-11-20"},` +
		`"items":[{"code":"XA01","unit_price":"12.50","quantity":"2","amount":"25.00"}]}`
	code, answer, err = call(context.Background(), c, "POST", p.base+"/v1/settlements/quote", "demo-hospital-H3701020001", []byte(quote))
	if err != nil || code != 200 {
		t.Fatalf("a quote for the person created before the cut: %d %s %v", code, answer, err)
	}
	t.Logf("kept across a power cut that lost %+v: the upload, the person, the month close", lost)
}
