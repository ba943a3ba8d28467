package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/wasmgen"

	"github.com/valyala/fasthttp"
)

// TestCandidatesLeaveNoCompiledCode: a module that is only checked (the
// dry run, a refused upload) or tried (a shadow run with a module) must
// not be written to the compiled-code cache, which is kept across
// restarts: a region sending module after module could otherwise fill the
// disk that every region's ledger writes to.
func TestCandidatesLeaveNoCompiledCode(t *testing.T) {
	cache := t.TempDir()
	eng, err := engine.New(context.Background(), engine.Config{CacheDir: cache, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	store, err := engine.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{tb: t, fs: vfs.NewMem(), dir: "ledger", world: withRegionKeys(refWorld(t, nil)), policies: &engine.Policies{}}
	h.versions = NewVersions(eng, store, h.policies, zerolog.Nop())
	h.start()
	t.Cleanup(h.stop)

	files := func() int {
		n := 0
		filepath.WalkDir(cache, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	before := files()
	cases := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	for i := int64(1); i <= 3; i++ {
		wasm := answerModule(abi.Output{Basic: i}) // answers no case right
		status, out := h.do("POST", "/v1/regions/371600/policies/check", "tok-region-371600", upload("371600", "c", "2030-01-01", wasm, cases, key))
		if status != 422 {
			t.Fatalf("check: %d %s", status, out)
		}
		status, out = h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "u", "2030-01-01", wasm, cases, key))
		if status != 422 {
			t.Fatalf("upload: %d %s", status, out)
		}
		status, out = h.do("POST", "/v1/regions/371600/shadow", "tok-region-371600",
			[]byte(`{"module":"`+base64.StdEncoding.EncodeToString(wasm)+`","from":"2025-01-01","to":"2025-12-31"}`))
		if status != 200 {
			t.Fatalf("shadow: %d %s", status, out)
		}
	}
	if after := files(); after != before {
		t.Fatalf("checked and tried modules left %d files in the compiled-code cache", after-before)
	}
}

// TestShadowStopsOnALoopingCandidate: a what-if run of a module that runs
// out of time stops there instead of spending the time limit again on
// every settlement of the region's date range (a year of a region's
// settlements, at tens of ms each, would hold a CPU for hours, and a few
// such requests every CPU).
func TestShadowStopsOnALoopingCandidate(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	for i := 0; i < 20; i++ {
		if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001",
			settleBody(fmt.Sprintf("SH-%d", i), "EMP1", "371600", chronicVisit, `[{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"}]`)); status != 200 {
			t.Fatalf("settle: %d %s", status, out)
		}
	}
	loop := wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes()
	status, out := h.do("POST", "/v1/regions/371600/shadow", "tok-region-371600",
		[]byte(`{"module":"`+base64.StdEncoding.EncodeToString(loop)+`","from":"2025-01-01","to":"2025-12-31"}`))
	var rep struct {
		Settlements int                 `json:"settlements"`
		Failed      int                 `json:"failed"`
		Failures    []map[string]string `json:"failures"`
	}
	if err := json.Unmarshal(out, &rep); status != 200 || err != nil {
		t.Fatalf("shadow: %d %s", status, out)
	}
	if len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0]["error"], "time") {
		t.Fatalf("shadow ran the looping module %d times: %s", len(rep.Failures), out)
	}
}

// busyModule answers out after counting to n in memory on every call: a
// call of n steps, under the budget.
func busyModule(n int32, out abi.Output) []byte {
	b := out.AppendBinary(nil)
	body := wasmgen.Concat([]byte{wasmgen.OpLoop, wasmgen.BlockVoid},
		wasmgen.I32Const(0), wasmgen.I32Const(0), []byte{0x28, 2, 0}, wasmgen.I32Const(1), []byte{0x6A, 0x36, 2, 0}, // mem[0]++
		wasmgen.I32Const(0), []byte{0x28, 2, 0}, wasmgen.I32Const(n), []byte{0x49, 0x0D, 0, wasmgen.OpEnd}, // while mem[0] < n
		wasmgen.I32Const(0), wasmgen.I32Const(0), []byte{0x36, 2, 0}, // mem[0] = 0
		wasmgen.Answer(1024, uint32(len(b))))
	m := wasmgen.Policy(1, 8192, body)
	m.Data = []wasmgen.Data{{Offset: 1024, Bytes: b}}
	return m.Bytes()
}

// TestRegionPolicyWorkOneAtATime: a region's checks, uploads, shadow and
// replay runs execute modules for as long as their cases or settlements
// last; one region runs one of them at a time (429 region_busy for the
// next meanwhile), so that it cannot take every CPU from the others.
func TestRegionPolicyWorkOneAtATime(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	var one []json.RawMessage
	if err := json.Unmarshal(readCases(t, "371600-v2023.json"), &one); err != nil {
		t.Fatal(err)
	}
	many := make([]json.RawMessage, 300)
	for i := range many {
		many[i] = one[0]
	}
	cases, _ := json.Marshal(many)
	slow := upload("371600", "c", "2030-01-01", busyModule(4_000_000, abi.Output{}), cases, demoKey("371600"))
	first := make(chan int, 1)
	go func() {
		// Not h.do: its 10 s limit ends in Fatalf, which from this
		// goroutine would leave the test waiting on first for ever; a
		// loaded machine runs this check for longer than that.
		resp, err := h.roundTrip("POST", "/v1/regions/371600/policies/check", "tok-region-371600", "application/json", slow, 2*time.Minute)
		if err != nil {
			t.Errorf("the first check: %v", err)
			first <- -1
			return
		}
		first <- resp.StatusCode()
		fasthttp.ReleaseResponse(resp)
	}()
	time.Sleep(100 * time.Millisecond)
	resp, err := h.roundTrip("POST", "/v1/regions/371600/policies/check", "tok-region-371600", "application/json", slow, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 429 || !strings.Contains(string(resp.Body()), "region_busy") || len(resp.Header.Peek("Retry-After")) == 0 {
		t.Errorf("a second check while the first runs: %d %.300s (Retry-After %q), want 429 region_busy with Retry-After",
			resp.StatusCode(), resp.Body(), resp.Header.Peek("Retry-After"))
	}
	fasthttp.ReleaseResponse(resp)
	// Another region is not held up by it.
	if status, out := h.do("POST", "/v1/regions/152500/policies/check", "tok-region-152500",
		upload("152500", "c", "2030-01-01", answerModule(abi.Output{}), readCases(t, "152500-v1.json"), demoKey("152500"))); status != 422 {
		t.Errorf("another region's check: %d %.300s", status, out)
	}
	if status := <-first; status != 422 {
		t.Fatalf("the first check: %d", status)
	}
	// Once it has answered, the region may check again.
	if status, out := h.do("POST", "/v1/regions/371600/policies/check", "tok-region-371600",
		upload("371600", "c", "2030-01-01", answerModule(abi.Output{}), readCases(t, "371600-v2023.json"), demoKey("371600"))); status != 422 {
		t.Fatalf("a check after the first: %d %.300s", status, out)
	}
}
