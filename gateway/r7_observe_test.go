package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// withFuncName appends a name section naming function idx name: wazero
// quotes such names, the module's own text, in a trap's stack trace.
func withFuncName(wasm []byte, idx uint32, name string) []byte {
	vec := func(b []byte) []byte { return append(wasmgen.U32(uint32(len(b))), b...) }
	names := append(wasmgen.U32(1), wasmgen.U32(idx)...)
	names = append(names, vec([]byte(name))...)
	sub := append([]byte{1}, vec(names)...) // subsection 1: function names
	content := append(vec([]byte("name")), sub...)
	return append(append(wasm, 0), vec(content)...)
}

// A policy that traps is logged with wazero's error, whose stack trace
// quotes the module's function names (up to 30 frames): a region's module
// whose function has a name of 1 MiB made each failed settlement of its
// insured persons write megabytes into the log. The line is now bounded.
func TestR7PolicyTrapLogLineIsBounded(t *testing.T) {
	h, eng := twoRegionHarness(t)
	logs := logTo(h, zerolog.InfoLevel)
	name := strings.Repeat("n", 1<<20)
	// settle (function 2) traps at once.
	wasm := withFuncName(wasmgen.Policy(1, 8192, []byte{wasmgen.OpUnreachable}).Bytes(), 2, name)
	mod, err := eng.Load(context.Background(), "152500", "trap", wasm)
	if err != nil {
		t.Fatal(err)
	}
	h.policies.Put("152500", engine.Version{Name: "trap", EffectiveFrom: 20230101, Module: mod})
	mustDo(t, h, 422, "POST", "/v1/settlements", "tok-H3716020001", settleBody("TRAP-1", "EMP2", "152500", chronicVisit, oneLine))
	out := logs.String()
	if !strings.Contains(out, "policy call failed") {
		t.Fatalf("no log line for the trap:\n%.2000s", out)
	}
	if !strings.Contains(out, "wasm stack trace") || !strings.Contains(out, "unreachable") {
		t.Errorf("the trap's line no longer says what trapped:\n%.2000s", out)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		if n := len(sc.Bytes()); n > 8<<10 {
			t.Errorf("a log line of %d bytes: %.300s…", n, sc.Text())
		}
	}
}

// A disk whose WAL sync hangs (a dying disk, a hung network volume) held
// every write of the gateway for as long as it hung, while /healthz said
// "ok" and no metric moved: a commit is observed only once it ends. Now
// /healthz says degraded with "ledger":"commit_stalled" once a commit has
// waited past commitStalledAfter, and medgate_ledger_commit_waiting_seconds
// says how long it has.
func TestR7HealthzSaysWhenACommitHangs(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	fault := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if hang.Load() && strings.HasSuffix(op.Path, ".log") {
			switch op.Kind {
			case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
				<-release
			}
		}
		return nil
	})
	h := &harness{tb: t, fs: errorfs.Wrap(vfs.NewMem(), fault), dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, map[string][]string{"371600": {empActive}})}
	h.versions = referenceVersions(t, h.policies)
	h.start()
	released := false
	defer func() {
		if !released {
			close(release)
		}
		h.stop()
	}()
	defer func(d time.Duration) { commitStalledAfter = d }(commitStalledAfter)
	commitStalledAfter = 300 * time.Millisecond

	if status, body := h.do("GET", "/healthz", "", nil); status != 200 || string(body) != `{"status":"ok"}` {
		t.Fatalf("healthz before the fault: %d %s", status, body)
	}
	hang.Store(true)
	settled := make(chan int, 1)
	go func() {
		status, _ := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("HANG-1", "EMP1", "371600", chronicVisit, oneLine))
		settled <- status
	}()
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var status int
		if status, body = h.do("GET", "/healthz", "", nil); status != 200 {
			t.Fatalf("healthz: %d %s", status, body)
		}
		if string(body) != `{"status":"ok"}` {
			break
		}
	}
	if want := `{"status":"degraded","ledger":"commit_stalled"}`; string(body) != want {
		t.Errorf("healthz while the WAL sync hangs: %s, want %s", body, want)
	}
	if got := scrape(t, h)["medgate_ledger_commit_waiting_seconds{}"]; got < 0.3 {
		t.Errorf("medgate_ledger_commit_waiting_seconds %g while a commit has waited past 0.3 s", got)
	}
	select {
	case status := <-settled:
		t.Fatalf("the settlement was answered %d while its sync hung", status)
	default:
	}
	hang.Store(false)
	close(release)
	released = true
	if status := <-settled; status != 200 {
		t.Errorf("the settlement once the sync returned: %d", status)
	}
	if status, body := h.do("GET", "/healthz", "", nil); status != 200 || string(body) != `{"status":"ok"}` {
		t.Errorf("healthz once the sync returned: %d %s", status, body)
	}
	if got := scrape(t, h)["medgate_ledger_commit_waiting_seconds{}"]; got != 0 {
		t.Errorf("medgate_ledger_commit_waiting_seconds %g with no commit waiting", got)
	}
}

// --access-log-every and --access-log-burst are ints, and zerolog's
// samplers take uint32: 4294967297 ("one in about four billion") became
// 1 and logged every successful request, 4294967296 became 0 and logged
// none after the burst; a burst of 4294967296 became no burst. Values past
// what the sampler holds now mean its largest.
func TestR7AccessLogSamplingPastUint32(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("an int holds no more than a uint32 here")
	}
	count := func(a AccessLogSampling, n int) int {
		var buf syncBuffer
		log := a.logger(zerolog.New(&buf))
		for i := 0; i < n; i++ {
			log.Info().Msg("request")
		}
		return strings.Count(buf.String(), "\n")
	}
	var one int64 = 1 // not constants: they would not compile where an int is 32 bits
	p32, p40 := int(one<<32), int(one<<40)
	if got := count(AccessLogSampling{Burst: -1, Every: p32 + 1}, 1000); got > 1 {
		t.Errorf("one in %d logged %d of 1000 successful requests", p32+1, got)
	}
	if got := count(AccessLogSampling{Burst: -1, Every: p32}, 1000); got != 1 {
		t.Errorf("one in %d logged %d of 1000 successful requests, want the first", p32, got)
	}
	if got := count(AccessLogSampling{Burst: p32, Every: p40}, 1000); got != 1000 {
		t.Errorf("a burst of %d logged %d of 1000 successful requests", p32, got)
	}
}

// An export cut short by a read error is answered 200 in the access log
// and in medgate_http_requests_total (its status was sent before the
// body): its "export cut short" error line is all that says it failed,
// and that line named neither the request nor the clearing house, so the
// failure could not be matched with the export or its client. It now
// carries the request's id (the access line's req, the X-Request-Id the
// client got) and the principal.
func TestR7ExportCutShortNamesItsRequest(t *testing.T) {
	fault := readFault()
	h := &harness{tb: t, fs: errorfs.Wrap(vfs.NewMem(), fault), dir: "ledger", policies: &engine.Policies{},
		world: refWorld(t, nil)}
	h.cacheSize = 1 // every read goes to the files
	h.versions = referenceVersions(t, h.policies)
	h.start()
	t.Cleanup(h.stop)
	const n = 3000
	r5Fill(t, h.db, "a", "H3701020001", "370102", n)
	h.restart() // from here on, entries are read from tables
	logs := logTo(h, zerolog.InfoLevel)

	c := h.rawConn(t)
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/clearing/export HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer tok-clearing\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	body := bufio.NewReader(resp.Body)
	if _, err := body.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	fault.On()
	defer fault.Off()
	if _, err := io.ReadAll(body); err == nil {
		t.Fatal("the export was not cut short")
	}
	var line map[string]any
	for deadline := time.Now().Add(5 * time.Second); line == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var l map[string]any
			d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			d.UseNumber()
			if d.Decode(&l) == nil && l["message"] == "export cut short" {
				line = l
			}
		}
	}
	if line == nil {
		t.Fatalf("no \"export cut short\" line:\n%s", logs.String())
	}
	if got := fmt.Sprint(line["req"]); got != id {
		t.Errorf("the export cut short line has req %s; the request's id was %s: %v", got, id, line)
	}
	if line["principal"] == nil || line["principal"] == "" {
		t.Errorf("the export cut short line does not name the clearing house: %v", line)
	}
}

// A policy's failure is logged (region, version, kind, error) apart from
// the request's access line (422 policy_failed): the failure line had no
// request id, so among concurrent requests an operator could not tell
// which request, hospital or bill it was. It now carries the request's id.
func TestR7PolicyFailureLinesNameTheirRequest(t *testing.T) {
	h, eng := twoRegionHarness(t)
	logs := logTo(h, zerolog.InfoLevel)
	for _, c := range []struct {
		version, message string
		wasm             []byte
	}{
		{"trap", "policy call failed", wasmgen.Policy(1, 8192, []byte{wasmgen.OpUnreachable}).Bytes()},
		{"refuses", "policy refused a settlement", answerModule(abi.Output{Refusal: "no"})},
		{"negative", "policy answer broke a host check", answerModule(abi.Output{Basic: -5})},
	} {
		mod, err := eng.Load(context.Background(), "152500", c.version, c.wasm)
		if err != nil {
			t.Fatal(err)
		}
		h.policies.Put("152500", engine.Version{Name: c.version, EffectiveFrom: 20230101, Module: mod})
		resp, err := h.roundTrip("POST", "/v1/settlements", "tok-H3716020001", "application/json",
			settleBody("PF-"+c.version, "EMP2", "152500", chronicVisit, oneLine), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		id := string(resp.Header.Peek("X-Request-Id"))
		if resp.StatusCode() != 422 {
			t.Fatalf("%s: %d %s", c.version, resp.StatusCode(), resp.Body())
		}
		fasthttp.ReleaseResponse(resp)
		found := false
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var l map[string]any
			d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			d.UseNumber()
			if d.Decode(&l) != nil || l["message"] != c.message || l["version"] != c.version {
				continue
			}
			found = true
			if got := fmt.Sprint(l["req"]); got != id {
				t.Errorf("%s: %q has req %s; the request's id was %s: %v", c.version, c.message, got, id, l)
			}
		}
		if !found {
			t.Errorf("%s: no %q line:\n%s", c.version, c.message, logs.String())
		}
	}
}
