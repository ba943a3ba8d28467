package ledger

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"medgate/engine/abi"
)

// TestReviewRebuildUnderLoad: filters rebuilt over and over while
// settlements go on concurrently; every acknowledged trace code, request id
// and counters key is known at once and stays known.
func TestReviewRebuildUnderLoad(t *testing.T) {
	db, _ := openMem(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var rebuilds atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, kf := range []struct {
				f    *keyFilter
				kind filterKind
			}{{db.tfilter, traceFilterKind}, {db.ifilter, idemFilterKind}, {db.cfilter, countersFilterKind}} {
				select {
				case <-stop:
					return
				default:
				}
				db.rebuildFilter(kf.f, kf.kind)
				rebuilds.Add(1)
			}
		}
	}()
	ctx := context.Background()
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := "P" + strconv.Itoa(g)
			for i := 0; i < 150; i++ {
				r := "load-" + strconv.Itoa(g) + "-" + strconv.Itoa(i)
				// A new year each time: a new counters key.
				e := settlement(r, p, abi.Date(20000101+10000*i), []abi.Counter{{Name: "n", Value: 1}}, 0, "TC-"+r)
				if err := db.Append(ctx, e); err != nil {
					errs <- err
					return
				}
				var te *TraceCodeError
				if err := db.Append(ctx, settlement("again-"+r, p, testDate, nil, 0, "TC-"+r)); !errors.As(err, &te) {
					errs <- errors.New("code " + r + " sold twice")
					return
				}
				var de *DuplicateError
				if err := db.Append(ctx, settlement(r, p, testDate, nil, 0)); !errors.As(err, &de) {
					errs <- errors.New("request " + r + " settled twice")
					return
				}
				if c, err := db.Counters(region, p, int32(2000+i), nil); err != nil || len(c) != 1 {
					errs <- errors.New("counters of " + r + " unknown")
					return
				}
			}
		}()
	}
	go func() {
		// Stop rebuilding once the appenders are done.
		for {
			time.Sleep(5 * time.Millisecond)
			if seq, _ := db.Head(); seq >= 8*150 {
				close(stop)
				return
			}
			select {
			case err := <-errs:
				errs <- err
				close(stop)
				return
			default:
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d rebuilds", rebuilds.Load())
}

// TestReviewBucketsModel: random settlements, reversals, re-use of freed
// codes and retries in stores of 2 and 4 entries a bucket, against a model;
// with 2, also across a clean reopen (saved filters) and a crash (stale
// saved filters).
func TestReviewBucketsModel(t *testing.T) {
	for _, tc := range []struct {
		shift  uint8
		seed   int64
		reopen bool
	}{{1, 1, true}, {2, 2, false}} {
		t.Run(strconv.Itoa(int(tc.shift)), func(t *testing.T) {
			reviewBucketsModel(t, tc.shift, tc.seed, tc.reopen)
		})
	}
}

func reviewBucketsModel(t *testing.T, shift uint8, seed int64, reopen bool) {
	rnd := rand.New(rand.NewSource(seed))
	fs := vfs.NewCrashableMem()
	open := func(fs vfs.FS) *DB {
		o := testOptions(fs)
		o.bucketShift = shift
		db, err := Open("ledger", o)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open(fs)
	defer func() { _ = db.Close() }()
	ctx := context.Background()
	owner := map[string]string{}  // code -> settlement id holding it
	var settled []*Entry          // acknowledged settlements
	reversed := map[string]bool{} // settlement id -> reversed
	reqs := map[string]uint64{}   // request id -> seq
	n := 0
	for step := 0; step < 200; step++ {
		op := rnd.Intn(58)
		if reopen && (step == 70 || step == 140) {
			op = 58 + step/140 // a clean reopen, then a crash
		}
		switch {
		case op < 25: // a settlement of 1–3 codes from a small pool
			n++
			r := "m-" + strconv.Itoa(n)
			var codes []string
			seen := map[string]bool{}
			for j := rnd.Intn(3) + 1; j > 0; j-- {
				c := "C" + strconv.Itoa(rnd.Intn(25))
				if !seen[c] {
					seen[c] = true
					codes = append(codes, c)
				}
			}
			e := settlement(r, "P1", testDate, nil, 0, codes...)
			err := db.Append(ctx, e)
			var taken string
			for _, c := range codes {
				if owner[c] != "" {
					taken = c
					break
				}
			}
			var te *TraceCodeError
			switch {
			case taken != "" && !errors.As(err, &te):
				t.Fatalf("step %d: settlement with %s (held by %s) = %v", step, taken, owner[taken], err)
			case taken != "" && te.SettlementID != owner[te.Code]:
				t.Fatalf("step %d: %s said held by %q, model %q", step, te.Code, te.SettlementID, owner[te.Code])
			case taken == "" && err != nil:
				t.Fatalf("step %d: settlement of free codes %v: %v", step, codes, err)
			case err == nil:
				for _, c := range codes {
					owner[c] = e.SettlementID
				}
				settled = append(settled, e)
				reqs[r] = e.Seq
			}
		case op < 35 && len(settled) > 0: // a reversal
			s := settled[rnd.Intn(len(settled))]
			n++
			r := "m-" + strconv.Itoa(n)
			err := db.Append(ctx, reversal(r, s))
			var are *AlreadyReversedError
			switch {
			case reversed[s.SettlementID] && !errors.As(err, &are):
				t.Fatalf("step %d: second reversal of %s = %v", step, s.SettlementID, err)
			case !reversed[s.SettlementID] && err != nil:
				t.Fatalf("step %d: reversal of %s = %v", step, s.SettlementID, err)
			case err == nil:
				reversed[s.SettlementID] = true
				for _, c := range s.TraceCodes {
					if owner[c] == s.SettlementID {
						delete(owner, c)
					}
				}
				seq, _ := db.Head()
				reqs[r] = seq
			}
		case op < 45 && len(reqs) > 0: // a retry
			k := rnd.Intn(n) + 1
			r := "m-" + strconv.Itoa(k)
			seq, ok := reqs[r]
			id, found, err := db.Idempotency(hospital, r)
			if err != nil || found != ok || (ok && id.Seq != seq) {
				t.Fatalf("step %d: Idempotency(%s) = %+v %v %v, model %d %v", step, r, id, found, err, seq, ok)
			}
			if ok {
				var de *DuplicateError
				if err := db.Append(ctx, settlement(r, "P1", testDate, nil, 0)); !errors.As(err, &de) || de.Existing.Seq != seq {
					t.Fatalf("step %d: retry of %s (entry %d) = %v", step, r, seq, err)
				}
			}
		case op < 58: // every code's owner
			for i := 0; i < 25; i++ {
				c := "C" + strconv.Itoa(i)
				got, inUse, err := db.TraceCodeOwner(c)
				if err != nil || inUse != (owner[c] != "") || got != owner[c] {
					t.Fatalf("step %d: TraceCodeOwner(%s) = %q %v %v, model %q", step, c, got, inUse, err, owner[c])
				}
			}
		case op < 59: // a clean reopen
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = open(fs)
		default: // a crash
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			_ = db.Close()
			fs = crashed
			db = open(fs)
		}
	}
	auditOK(t, db)
}

// TestReviewFailedWritesReappear: entries whose commit failed (the client
// was told ErrWriteFailed) may reach the disk anyway; after a reopen that
// loads filters saved before the failure, their request ids and trace codes
// must be known, so that a retry finds its entry instead of settling again.
func TestReviewFailedWritesReappear(t *testing.T) {
	mem := vfs.NewMem()
	db, err := Open("data", testOptions(mem))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, settlement("r0", "P1", testDate, []abi.Counter{{Name: "n", Value: 1}}, 0, "T0"))
	if err := db.Close(); err != nil { // saves the filters at entry 1
		t.Fatal(err)
	}
	fault := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") {
			switch op.Kind {
			case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
				return errorfs.ErrInjected
			}
		}
		return nil
	})}
	db, err = Open("data", testOptions(errorfs.Wrap(mem, fault)))
	if err != nil {
		t.Fatal(err)
	}
	fault.On()
	for i := 1; i <= 3; i++ {
		r := "f" + strconv.Itoa(i)
		if err := db.Append(context.Background(), settlement(r, "P1", testDate, []abi.Counter{{Name: "n", Value: 1}}, 0, "F"+r)); !errors.Is(err, ErrWriteFailed) {
			t.Fatalf("append %s during the fault: %v", r, err)
		}
	}
	fault.Off()
	_ = db.Close()

	db, err = Open("data", testOptions(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seq, _ := db.Head()
	t.Logf("head %d after the reopen", seq)
	ctx := context.Background()
	err = db.Scan(1, func(e *Entry) error {
		id, ok, err := db.Idempotency(e.Hospital, e.RequestID)
		if err != nil || !ok || id.Seq != e.Seq {
			t.Errorf("Idempotency(%s) of entry %d = %+v %v %v", e.RequestID, e.Seq, id, ok, err)
		}
		var de *DuplicateError
		if err := db.Append(ctx, settlement(e.RequestID, "P1", testDate, nil, 0)); !errors.As(err, &de) {
			t.Errorf("retry of %s (entry %d) = %v", e.RequestID, e.Seq, err)
		}
		var te *TraceCodeError
		if err := db.Append(ctx, settlement("x-"+e.RequestID, "P1", testDate, nil, 0, e.TraceCodes...)); !errors.As(err, &te) {
			t.Errorf("codes of entry %d sold again: %v", e.Seq, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := counters(t, db, "P1", 2026)["n"]; got != int64(seq) {
		t.Fatalf("counter n = %d, want %d", got, seq)
	}
}

// TestFilterNoFalseNegativeUnderRebuild: while links are added (the filter
// starts at 4 keys) and rebuilds swap the state — a rebuild's scan sees the
// keys stored before it began, as a store scan would — every stored key is
// known right after it is stored and added, and at the end, for both ways
// keys reach the filter:
//   - stored, then added (idempotency and counters keys, writer.go);
//   - added, then stored, then added again if the filter changed since
//     (changedSince): the trace codes' protocol (tracecodes.go). Without
//     the second add, a rebuild that scanned the store before the key was
//     stored loses it (this case then fails).
func TestFilterNoFalseNegativeUnderRebuild(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(f *keyFilter, m *filterModel, keys []string)
	}{
		{"stored then added", func(f *keyFilter, m *filterModel, keys []string) {
			m.put(keys...)
			for _, k := range keys {
				f.addString(k)
			}
		}},
		{"added, stored, added again if changed", func(f *keyFilter, m *filterModel, keys []string) {
			st := f.state.Load()
			f.mayContainThenAdd(keys)
			m.put(keys...)
			if f.changedSince(st) {
				f.addEach(keys)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newKeyFilterOf(4)
			m := &filterModel{}
			stopRebuilds := m.rebuildOver(f)
			var failed atomic.Value
			var adders sync.WaitGroup
			for g := 0; g < 8; g++ {
				adders.Add(1)
				go func() {
					defer adders.Done()
					for i := 0; i < 3000; i++ {
						keys := []string{"k" + strconv.Itoa(g) + "-" + strconv.Itoa(i), "j" + strconv.Itoa(g) + "-" + strconv.Itoa(i)}
						tc.store(f, m, keys)
						for _, k := range keys {
							if !f.mayContain(k) {
								failed.Store(k)
								return
							}
						}
					}
				}()
			}
			adders.Wait()
			rebuilds := stopRebuilds()
			if k := failed.Load(); k != nil {
				t.Fatalf("key %s unknown right after it was stored", k)
			}
			for _, k := range m.keys {
				if !f.mayContain(k) {
					t.Fatalf("key %s unknown at the end (%d rebuilds)", k, rebuilds)
				}
			}
			t.Logf("%d rebuilds, %d links", rebuilds, len(f.state.Load().links))
		})
	}
}

// filterModel is a store of keys for filter tests: rebuildOver rebuilds a
// filter from it over and over, as rebuildFilter does from the store.
type filterModel struct {
	mu   sync.Mutex
	keys []string // guarded by mu
}

func (m *filterModel) put(keys ...string) {
	m.mu.Lock()
	m.keys = append(m.keys, keys...)
	m.mu.Unlock()
}

// rebuildOver rebuilds f from m (into links of 4 to 6 keys) until the
// returned stop is called; stop returns the number of rebuilds.
func (m *filterModel) rebuildOver(f *keyFilter) (stop func() int64) {
	quit := make(chan struct{})
	var rebuilds atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-quit:
				return
			default:
			}
			next := f.beginRebuild(4 + rebuilds.Load()%3)
			if next == nil {
				continue
			}
			m.mu.Lock()
			snap := append([]string(nil), m.keys...)
			m.mu.Unlock()
			for _, k := range snap {
				next.links[0].add(next.hash([]byte(k)))
			}
			f.endRebuild(next, true)
			rebuilds.Add(1)
		}
	}()
	return func() int64 {
		close(quit)
		wg.Wait()
		return rebuilds.Load()
	}
}

// TestOpenTwiceSaysWhy: a second gateway started on a directory another
// process holds is told so, not "resource temporarily unavailable".
func TestOpenTwiceSaysWhy(t *testing.T) {
	if dir := os.Getenv("MEDGATE_TEST_HOLD_LEDGER"); dir != "" {
		// The other process: hold the ledger until stdin closes.
		db, err := Open(dir, Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		db.Close()
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenTwiceSaysWhy$")
	cmd.Env = append(os.Environ(), "MEDGATE_TEST_HOLD_LEDGER="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("the other process: %q", line)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Open of a ledger another process holds: %v", err)
	}
}
