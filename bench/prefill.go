package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine/abi"
	"medgate/ledger"
)

// PrefillConfig configures Prefill.
type PrefillConfig struct {
	// Dir is the ledger directory (created if needed; entries are added
	// after whatever it holds).
	Dir string
	// Entries is how many settlements to add.
	Entries int
	// Writers is how many goroutines append at once (default 1024): enough
	// to fill the ledger writer's batches.
	Writers int
	// Seed makes the entries reproducible.
	Seed uint64
	// Progress, when set, gets a line every few seconds.
	Progress io.Writer
}

// PrefillResult is what a prefill did.
type PrefillResult struct {
	Entries       int
	Head          uint64
	Took          time.Duration
	BytesOnDisk   int64
	TraceCodes    int
	EntriesPerS   float64
	BytesPerEntry float64
}

// Prefill grows a ledger fast for the growth benchmark: it appends
// settlements through the ledger's own writer (the same batches, hash
// chain, indexes, month totals, hospital rows and Merkle tree as the
// gateway's, fsync'ed in group commits), without HTTP, catalog step or
// policy call. Each entry has the shape of a bench request's settlement: a
// hospital and an insured person of the bench world, 1–60 lines (median
// 20) with the hospital's catalog codes, a 20-digit trace code on every
// drug line (codes starting with 9, so they never collide with the load
// generator's, which start with 8), an encoded policy Input of the real
// size, two counter changes and notes; request ids are "pf-<n>". The
// amounts add up (lines to totals, funds plus personal part to the total)
// but are not what the reference policies would compute: a prefilled
// ledger is for measuring, not for `medgate audit --replay`.
func Prefill(ctx context.Context, w *World, cfg PrefillConfig) (*PrefillResult, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = 1024
	}
	db, err := ledger.Open(cfg.Dir, ledger.Options{Logger: zerolog.Nop(), MaxBatch: 512})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	start, err := prefillStart(db)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	var next, done, codes atomic.Int64
	var firstErr error
	var errOnce sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < cfg.Writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			gen := newPrefillGen(w, cfg.Seed, uint64(g))
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(cfg.Entries) {
					return
				}
				e := gen.entry(start + uint64(i))
				if err := db.Append(ctx, e); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("prefill entry %d: %w", i, err) })
					cancel()
					return
				}
				done.Add(1)
				codes.Add(int64(len(e.TraceCodes)))
			}
		}(g)
	}
	stop := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					n := done.Load()
					s := time.Since(began).Seconds()
					fmt.Fprintf(cfg.Progress, "prefill %8.0fs %12d entries %8.0f/s\n", s, n, float64(n)/s)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if firstErr != nil {
		return nil, firstErr
	}
	head, _ := db.Head()
	if err := db.Close(); err != nil {
		return nil, err
	}
	res := &PrefillResult{Entries: int(done.Load()), Head: head, Took: time.Since(began), TraceCodes: int(codes.Load())}
	res.BytesOnDisk = dirSize(cfg.Dir)
	res.EntriesPerS = float64(res.Entries) / res.Took.Seconds()
	if head > 0 {
		res.BytesPerEntry = float64(res.BytesOnDisk) / float64(head)
	}
	return res, nil
}

// prefillStart is the number after the last entry an earlier prefill of
// db may have written. Entries are numbered when a goroutine takes them,
// not when they commit: a prefill that was stopped may have committed
// numbers above the ledger's head (up to one per goroutine in flight), and
// reusing them would repeat their trace codes. So the newest entries are
// read back, and numbering resumes after the highest "pf-<n>" among them.
func prefillStart(db *ledger.DB) (uint64, error) {
	head, _ := db.Head()
	start := head
	const window = 1 << 16 // far more than the writers ever in flight
	from := uint64(1)
	if head > window {
		from = head - window
	}
	err := db.Scan(from, func(e *ledger.Entry) error {
		if n, ok := strings.CutPrefix(e.RequestID, "pf-"); ok {
			if v, err := strconv.ParseUint(n, 10, 64); err == nil && v > start {
				start = v
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prefill: read the newest entries: %w", err)
	}
	return start, nil
}

// prefillGen makes the entries of one prefill goroutine.
type prefillGen struct {
	w   *World
	rng *rand.Rand
	in  abi.Input
	buf []byte
}

func newPrefillGen(w *World, seed, g uint64) *prefillGen {
	return &prefillGen{w: w, rng: rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, g))}
}

var prefillNotes = []string{
	"deductible: 200.00 this year, 200.00 applied before",
	"basic fund: eligible 1234.56 at 90% (level-3 hospital, inpatient)",
	"serious illness: below the threshold",
}

func (p *prefillGen) entry(n uint64) *ledger.Entry {
	rng := p.rng
	w := p.w
	h := &w.Hospitals[rng.IntN(len(w.Hospitals))]
	region := w.Regions[rng.IntN(len(w.Regions))]
	persons := w.Persons[region]
	person := persons[rng.IntN(len(persons))]
	nl := min(max(int(20*expNorm(rng)), 1), 60)
	date := abi.Date(20250101 + 100*int32(rng.IntN(12)) + int32(rng.IntN(28)))
	in := &p.in
	*in = abi.Input{Lines: in.Lines[:0], Date: date}
	in.Visit = abi.Visit{Type: abi.VisitOutpatient, VisitDate: date}
	in.Hospital = abi.Hospital{Level: uint8(h.Level), TreatingRegion: h.Region, InsuredRegion: region, Offsite: true}
	e := &ledger.Entry{
		Kind: ledger.KindSettlement, RequestID: "pf-" + strconv.FormatUint(n, 10),
		Hospital: h.ID, TreatingRegion: h.Region, InsuredRegion: region, PersonID: person.ID,
		Date: date, VisitType: abi.VisitOutpatient, PolicyVersion: "v1",
	}
	var sum int64
	for i := 0; i < nl; i++ {
		code := "XX9999"
		if len(h.Codes) > 0 {
			code = h.Codes[rng.IntN(len(h.Codes))]
		}
		amount := 50 + rng.Int64N(200_000)
		l := abi.Line{Code: code, Class: abi.ClassA, Listed: true, Amount: amount, Eligible: amount}
		in.Lines = append(in.Lines, l)
		e.Lines = append(e.Lines, ledger.Line(l))
		sum += amount
		if len(code) > 2 && code[:2] == "XD" {
			e.TraceCodes = append(e.TraceCodes, prefillTraceCode(n, i))
		}
	}
	in.Sums = abi.Sums{Total: sum, Eligible: sum}
	p.buf = in.AppendBinary(p.buf[:0])
	e.Input = append([]byte(nil), p.buf...)
	e.InputHash = sha256.Sum256(e.Input)
	binary.BigEndian.PutUint64(e.BodyHash[:], n)
	e.ModuleSHA256 = sha256.Sum256([]byte(region))
	fund := sum * 7 / 10
	e.Amounts = ledger.Amounts{Total: sum, Eligible: sum, BasicFund: fund, FundTotal: fund,
		Cash: sum - fund, PersonalTotal: sum - fund}
	e.Changes = []abi.Counter{{Name: "basic.out", Value: fund}, {Name: "visits", Value: 1}}
	e.Notes = append(e.Notes, prefillNotes...)
	return e
}

// expNorm is exp(0.7 N(0,1)): the bench traffic's log-normal line count.
func expNorm(rng *rand.Rand) float64 { return math.Exp(0.7 * rng.NormFloat64()) }

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// prefillTraceCode is "9", the entry's number (17 digits) and the line's
// (2): unique across prefills of one ledger.
func prefillTraceCode(n uint64, line int) string {
	b := make([]byte, 0, 20)
	b = append(b, '9')
	b = appendPadded(b, n, 17)
	return string(appendPadded(b, uint64(line), 2))
}
