package gateway

import (
	"bufio"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
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
