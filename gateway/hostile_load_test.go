package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/wasmgen"
	"medgate/gateway/internal/testenv"
	"medgate/ledger"
)

// hugeOutput is an Output header (version, no refusal, five zero amounts)
// followed by a counter count and a note count, padded to size bytes.
func hugeOutput(counters, notes uint32, size int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, abi.Version)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = append(b, make([]byte, 5*8)...)
	b = binary.LittleEndian.AppendUint32(b, counters)
	if counters == 0 {
		b = binary.LittleEndian.AppendUint32(b, notes)
	}
	if len(b) < size {
		b = append(b, make([]byte, size-len(b))...)
	}
	return b
}

// bigAnswerModule answers claim bytes at 64 KiB, out being their start
// (the rest is zeros), declaring enough memory for them (capped at 17 MiB:
// a claim beyond it lies outside memory).
func bigAnswerModule(out []byte, claim uint32) []byte {
	pages := uint32(1 + (max(len(out), int(min(claim, 16<<20)))+65535)/65536 + 1)
	m := wasmgen.Policy(1, 8192, wasmgen.Answer(65536, claim))
	m.MemoryMin = pages
	m.Data = []wasmgen.Data{{Offset: 65536, Bytes: out}}
	return m.Bytes()
}

// TestHostileHugeAnswers gives region 152500 modules whose answers are
// huge: 16 MiB of output, a million counters, a million notes, a length
// beyond memory. Each settlement is refused (422) at once, nothing is
// written, the host does not allocate what the answer claims, and the
// largest answer the ABI allows (256 notes of 4096 bytes) still settles.
func TestHostileHugeAnswers(t *testing.T) {
	eng, err := engine.New(context.Background(), engine.Config{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	w := refWorld(t, map[string][]string{"152500": {strings.Replace(empActive, "EMP1", "EMP2", 1)}})
	h := newHarness(t, w)
	var notes []string
	for i := 0; i < abi.MaxNotes; i++ {
		notes = append(notes, strings.Repeat(string(rune('a'+i%26)), abi.MaxString))
	}
	maxValid := (&abi.Output{Notes: notes}).AppendBinary(nil)
	cases := []struct {
		name   string
		wasm   []byte
		status int
		code   string
	}{
		{"16 MiB of output", bigAnswerModule(hugeOutput(0, 1, 0), 16<<20), 422, "policy_failed"},
		{"a million counters", bigAnswerModule(hugeOutput(1_000_000, 0, 0), 1<<20), 422, "policy_answer_invalid"},
		{"a million notes", bigAnswerModule(hugeOutput(0, 1_000_000, 0), 1<<20), 422, "policy_answer_invalid"},
		{"4 GiB claimed", bigAnswerModule(hugeOutput(0, 0, 64), 0xffffffff), 422, "policy_failed"},
		{"the largest valid answer", bigAnswerModule(maxValid, uint32(len(maxValid))), 200, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := eng.Load(context.Background(), "152500", fmt.Sprintf("huge%d", i), tc.wasm)
			if err != nil {
				t.Fatal(err)
			}
			h.policies.Put("152500", engine.Version{Name: fmt.Sprintf("huge%d", i), EffectiveFrom: 20230101, Module: m})
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			head := h.head()
			const n = 8
			for j := 0; j < n; j++ {
				began := time.Now()
				status, body := h.do("POST", "/v1/settlements", "tok-H3716020001",
					settleBody(fmt.Sprintf("HUGE-%d-%d", i, j), "EMP2", "152500", chronicVisit, oneLine))
				if status != tc.status || (tc.code != "" && !strings.Contains(string(body), tc.code)) {
					t.Fatalf("%d %.300s, want %d %s", status, body, tc.status, tc.code)
				}
				if d := time.Since(began); d > 2*time.Second {
					t.Fatalf("answered after %v", d)
				}
				if tc.status == 200 && (len(body) < abi.MaxNotes*abi.MaxString || len(body) > 2*abi.MaxNotes*abi.MaxString) {
					t.Fatalf("answer of %d bytes", len(body))
				}
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			// Each refused call discards its instance, so a fresh one (its
			// declared memory) is made per call; beyond that the host must
			// not allocate in proportion to what the answer claims.
			perCall := (after.TotalAlloc - before.TotalAlloc) / n
			t.Logf("%d calls: %d bytes allocated per call; heap in use %d MiB", n, perCall, after.HeapInuse>>20)
			if limit := uint64(len(tc.wasm)) + 40<<20; perCall > limit {
				t.Fatalf("%d bytes allocated per call (limit %d)", perCall, limit)
			}
			if tc.status != 200 && h.head() != head {
				t.Fatal("a refused answer wrote to the ledger")
			}
			if tc.status == 200 {
				e, err := h.db.Entry(h.head())
				if err != nil || len(e.Notes) != abi.MaxNotes || len(ledger.AppendEntry(nil, e)) > ledger.MaxEntrySize {
					t.Fatalf("entry: %v", err)
				}
			}
		})
	}
}

// latencies runs clients closed-loop for d and returns the sorted
// latencies of answers with status want (others are errors).
func latencies(t *testing.T, h *harness, clients int, d time.Duration, req func(client, i int) (path, token string, body []byte), want ...int) []time.Duration {
	var (
		mu  sync.Mutex
		out []time.Duration
		wg  sync.WaitGroup
	)
	end := time.Now().Add(d)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(end); i++ {
				path, token, body := req(c, i)
				began := time.Now()
				status, b, err := h.rawDo("POST", path, token, body)
				took := time.Since(began)
				if err != nil || !slices.Contains(want, status) {
					t.Errorf("%s: %d %v %.200s, want %v", path, status, err, b, want)
					return
				}
				mine = append(mine, took)
			}
			mu.Lock()
			out = append(out, mine...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestHostileRegionIsolation measures the p99 latency of settlements of
// two well-behaved regions, first alone, then while clients keep sending
// settlements of a third region whose module loops until its step budget
// runs out (each refused 422 policy_timeout, or 503 policy_unavailable
// beyond the calls it may queue), and bounds the second by
// the first.
func TestHostileRegionIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("measures latency for seconds")
	}
	var ps []string
	for i := 0; i < 8; i++ {
		ps = append(ps, strings.Replace(empActive, `"EMP1"`, fmt.Sprintf(`"G%d"`, i), 1))
	}
	w := refWorld(t, map[string][]string{"371600": ps[:4], "370000": ps[4:], "152500": {strings.Replace(empActive, "EMP1", "BAD", 1)}})
	h := newHarness(t, w)
	eng, _ := testenv.Engine(t)
	loop, err := eng.Load(context.Background(), "152500", "loop", wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	const good, bad = 4, 8
	const d = 2 * time.Second
	goodReq := func(c, i int) (string, string, []byte) {
		region, person := "371600", c/2%4
		if c%2 == 1 {
			region, person = "370000", 4+c/2%4
		}
		return "/v1/settlements", "tok-H3716020001", settleBody(fmt.Sprintf("G-%d-%d-%d", time.Now().UnixNano(), c, i), fmt.Sprintf("G%d", person), region, chronicVisit,
			`[{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"},{"code":"XB01","unit_price":"2.00","quantity":"3","amount":"6.00"}]`)
	}
	base := latencies(t, h, good, d, goodReq, 200)

	h.policies.Put("152500", engine.Version{Name: "loop", EffectiveFrom: 20230101, Module: loop})
	var hostile []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		hostile = latencies(t, h, bad, d+500*time.Millisecond, func(c, i int) (string, string, []byte) {
			return "/v1/settlements", "tok-H3716020001", settleBody(fmt.Sprintf("B-%d-%d", c, i), "BAD", "152500", chronicVisit, oneLine)
		}, 422, 503) // 503 policy_unavailable: beyond the calls a looping module may queue
	}()
	time.Sleep(200 * time.Millisecond)
	under := latencies(t, h, good, d, goodReq, 200)
	<-done
	b99, u99 := pct(base, 0.99), pct(under, 0.99)
	t.Logf("good regions alone: %d settlements, p50 %v p99 %v", len(base), pct(base, 0.5), b99)
	t.Logf("with %d clients of a looping region (%d refusals, p50 %v): %d settlements, p50 %v p99 %v (%.1f× the baseline p99)",
		bad, len(hostile), pct(hostile, 0.5), len(under), pct(under, 0.5), u99, float64(u99)/float64(max(b99, 1)))
	if limit := 5*b99 + 50*time.Millisecond; u99 > limit {
		t.Errorf("p99 of the good regions under a hostile one is %v, above %v (5 × baseline %v + 50 ms)", u99, limit, b99)
	}
}

// TestPolicyCheckImpossibleCounts: a region's dry-run check of a 15-byte
// module declaring 4 billion tables is refused (422, the compile check)
// instead of making the gateway allocate 150 GiB and die.
func TestPolicyCheckImpossibleCounts(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	for _, wasm := range []string{
		"\x00asm\x01\x00\x00\x00\x04\x05\xff\xff\xff\xff\x0f",
		"\x00asm\x01\x00\x00\x00\x02\x17\xfe\x8f\x82|0000000000000000000000000000000000000",
	} {
		body := upload("371600", "vbomb", "2030-01-01", []byte(wasm), readCases(t, "371600-v2024.json"), demoKey("371600"))
		for _, path := range []string{"/v1/regions/371600/policies/check", "/v1/regions/371600/policies"} {
			status, out := h.do("POST", path, "tok-region-371600", body)
			if status != 422 || !strings.Contains(string(out), `"compile"`) {
				t.Fatalf("%s: %d %.300s", path, status, out)
			}
		}
	}
	if status, _ := h.do("GET", "/healthz", "", nil); status != 200 {
		t.Fatal("the gateway is not healthy")
	}
}
