package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/wasmgen"
	"medgate/gateway/internal/testenv"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func answerModule(out abi.Output) []byte {
	b := out.AppendBinary(nil)
	m := wasmgen.Policy(1, 8192, wasmgen.Answer(1024, uint32(len(b))))
	m.Data = []wasmgen.Data{{Offset: 1024, Bytes: b}}
	return m.Bytes()
}

// TestWorldWithBrokenModules starts a gateway whose world has, next to a
// good module, modules that loop in their start function or _initialize,
// declare 4 GiB of memory, or import outside the allowed set. The gateway
// starts, logs each refusal, answers those regions' settlements with 422
// no_policy at once, and settles the good region normally.
func TestWorldWithBrokenModules(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(testenv.ModuleDir(t), "371600", "v2024.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	start := uint32(3)
	loopStart := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	loopStart.Funcs = append(loopStart.Funcs, wasmgen.Func{Body: wasmgen.Forever()})
	loopStart.Start = &start
	loopInit := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	loopInit.Funcs = append(loopInit.Funcs, wasmgen.Func{Body: wasmgen.Forever(), Export: "_initialize"})
	huge := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	max := uint32(65536)
	huge.MemoryMin, huge.MemoryMax = 65536, &max
	forbidden := wasmgen.Policy(1, 8192, wasmgen.Answer(0, 0))
	forbidden.Imports = []wasmgen.Import{{Module: "env", Name: "open_socket", Results: []byte{wasmgen.I32}}}

	w := refWorld(t, map[string][]string{
		"371600": {empActive},
		"152500": {strings.Replace(empActive, "EMP1", "EMP2", 1)},
		"370000": {strings.Replace(empActive, "EMP1", "EMP3", 1)},
		"150000": {strings.Replace(empActive, "EMP1", "EMP4", 1)},
	})
	fsys := fstest.MapFS{
		"policies/371600/v2024.json": {Data: []byte(`{"effective_from":"2024-01-01"}`)},
		"policies/371600/v2024.wasm": {Data: good},
		"policies/152500/v1.json":    {Data: []byte(`{"effective_from":"2023-01-01"}`)},
		"policies/152500/v1.wasm":    {Data: loopStart.Bytes()},
		"policies/370000/v1.json":    {Data: []byte(`{"effective_from":"2023-01-01"}`)},
		"policies/370000/v1.wasm":    {Data: huge.Bytes()},
		"policies/150000/v1.json":    {Data: []byte(`{"effective_from":"2023-01-01"}`)},
		"policies/150000/v1.wasm":    {Data: forbidden.Bytes()},
		"policies/150000/v2.json":    {Data: []byte(`{"effective_from":"2024-01-01"}`)},
		"policies/150000/v2.wasm":    {Data: loopInit.Bytes()},
	}
	files, err := ReadWorld(fsys)
	if err != nil {
		t.Fatal(err)
	}
	w.Policies = files.Policies

	eng, err := engine.New(context.Background(), engine.Config{InitTimeout: 500 * time.Millisecond, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	var logs syncBuffer
	h := &harness{tb: t, fs: newMemFS(), dir: "ledger", world: w, policies: &engine.Policies{}}
	began := time.Now()
	store, err := engine.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h.versions = NewVersions(eng, store, h.policies, zerolog.New(&logs))
	h.versions.LoadWorld(context.Background(), w)
	if d := time.Since(began); d > 20*time.Second {
		t.Fatalf("loading took %v", d)
	}
	h.start()
	t.Cleanup(h.stop)

	for _, want := range []string{`"region":"152500"`, `"region":"370000"`, `"check":"memory"`, `"check":"imports"`, `"check":"instantiate"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	for _, tc := range []struct {
		person, region string
		status         int
		code           string
	}{
		{"EMP1", "371600", 200, ""},
		// A world version that cannot be loaded stays in force as
		// unavailable (TestR6WorldVersionNotLoadedDoesNotHandItsDatesBack).
		{"EMP2", "152500", 503, "policy_unavailable"},
		{"EMP3", "370000", 503, "policy_unavailable"},
		{"EMP4", "150000", 503, "policy_unavailable"},
	} {
		began := time.Now()
		status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("W-"+tc.person, tc.person, tc.region, chronicVisit, oneLine))
		if status != tc.status || (tc.code != "" && !strings.Contains(string(body), tc.code)) {
			t.Errorf("%s: %d %s, want %d %s", tc.region, status, body, tc.status, tc.code)
		}
		if d := time.Since(began); d > time.Second {
			t.Errorf("%s answered after %v", tc.region, d)
		}
	}
}

// TestHostilePolicyAtRuntime gives region 152500 modules that loop, trap or
// lie, and checks each settlement is refused with a clear error within the
// time limit while region 371600 keeps settling.
func TestHostilePolicyAtRuntime(t *testing.T) {
	h, eng := twoRegionHarness(t)
	cases := []struct {
		name string
		wasm []byte
		code string
	}{
		{"loop", wasmgen.Policy(1, 8192, wasmgen.Concat(wasmgen.Forever(), wasmgen.I64Const(0))).Bytes(), "policy_timeout"},
		{"trap", wasmgen.Policy(1, 8192, []byte{wasmgen.OpUnreachable}).Bytes(), "policy_failed"},
		{"negative", answerModule(abi.Output{Basic: -5}), "policy_answer_invalid"},
		{"funds above eligible", answerModule(abi.Output{Basic: 999_999_00}), "policy_answer_invalid"},
		{"account above balance", answerModule(abi.Output{Account: 5_000_00}), "policy_answer_invalid"},
		{"bad counter", answerModule(abi.Output{Changes: []abi.Counter{{Name: "X Y", Value: 1}}}), "policy_answer_invalid"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := eng.Load(context.Background(), "152500", tc.name, tc.wasm)
			if err != nil {
				t.Fatal(err)
			}
			h.policies.Put("152500", engine.Version{Name: tc.name, EffectiveFrom: 20230101, Module: m})
			head := h.head()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 5; j++ {
					status, body := h.do("POST", "/v1/settlements", "tok-H3716020001",
						settleBody(fmt.Sprintf("OK-%d-%d", i, j), "EMP1", "371600", chronicVisit, `[{"code":"XA01","unit_price":"1.00","quantity":"1","amount":"1.00"}]`))
					if status != 200 {
						t.Errorf("the good region failed meanwhile: %d %s", status, body)
					}
				}
			}()
			began := time.Now()
			status, body := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody(fmt.Sprintf("BAD-%d", i), "EMP2", "152500", chronicVisit, oneLine))
			took := time.Since(began)
			wg.Wait()
			var a answer
			json.Unmarshal(body, &a)
			if status != 422 || a.Error == nil || a.Error.Code != tc.code || !strings.Contains(a.Error.Message, "152500") {
				t.Fatalf("%d %s, want 422 %s naming the region", status, body, tc.code)
			}
			if took > time.Second {
				t.Fatalf("refusal took %v", took)
			}
			if got := h.head(); got != head+5 {
				t.Fatalf("ledger head %d, want %d (only the good region's settlements)", got, head+5)
			}
		})
	}
}

// twoRegionHarness is a gateway with EMP1 insured in 371600 and EMP2 in
// 152500, and an engine with a 100 ms call limit whose modules a test
// puts in place of 152500's policy (h.policies.Put).
func twoRegionHarness(t *testing.T) (*harness, *engine.Engine) {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Config{CallTimeout: 100 * time.Millisecond, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	w := refWorld(t, map[string][]string{
		"371600": {empActive},
		"152500": {strings.Replace(empActive, "EMP1", "EMP2", 1)},
	})
	return newHarness(t, w), eng
}
