package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"medgate/engine/abi"
	"medgate/engine/wasmgen"
)

// answeringOutput is a module whose settle answers the encoding of out.
func answeringOutput(out *abi.Output) []byte {
	enc := out.AppendBinary(nil)
	mod := wasmgen.Policy(1, 8192, wasmgen.Answer(0, uint32(len(enc))))
	mod.Data = []wasmgen.Data{{Offset: 0, Bytes: enc}}
	return mod.Bytes()
}

// TestR9AnswerPastALimitNamesTheRule: an answer with more notes or
// counter changes than ABI.md allows breaks the host rule it names
// (`notes`, `counter_range`: policy_answer_invalid naming it), and one
// with a string too long says which limit: each was a malformed answer
// reading only "abi: message exceeds a limit", which left a region's
// author to guess what was too large.
func TestR9AnswerPastALimitNamesTheRule(t *testing.T) {
	e := newTestEngine(t)
	in := &abi.Input{Date: 20261109, Visit: abi.Visit{Type: abi.VisitInpatient}, Sums: abi.Sums{Total: 100000, Eligible: 100000}}
	notes := &abi.Output{}
	for range abi.MaxNotes + 1 {
		notes.Note("n")
	}
	changes := &abi.Output{}
	for i := range abi.MaxCounters + 1 {
		changes.Add("c"+strings.Repeat("x", i%20)+string(rune('a'+i%26))+string(rune('a'+i/26)), 1)
	}
	long := (&abi.Output{}).AppendBinary(nil)
	// A refusal of 5,000 bytes, as a guest not using the SDK may send.
	long = append(long[:4], append([]byte{0x88, 0x13}, make([]byte, 5000)...)...)
	long = append(long, (&abi.Output{}).AppendBinary(nil)[6:]...)
	longMod := wasmgen.Policy(1, 8192, wasmgen.Answer(0, uint32(len(long))))
	longMod.Data = []wasmgen.Data{{Offset: 0, Bytes: long}}

	for _, tc := range []struct {
		name   string
		wasm   []byte
		kind   FailKind
		rule   string
		detail string
	}{
		{"257 notes", answeringOutput(notes), FailCheck, "notes", "257 notes, limit 256"},
		{"257 counter changes", answeringOutput(changes), FailCheck, "counter_range", "257 counter changes, limit 256"},
		{"a refusal of 5000 bytes", longMod.Bytes(), FailMalformed, "", "string of 5000 bytes, limit 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := e.Load(context.Background(), "410100", "v1", tc.wasm)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			var out abi.Output
			err = m.Call(context.Background(), in, in.AppendBinary(nil), &out)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != tc.kind || ce.Rule != tc.rule || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("Call = %v, want kind %v rule %q saying %q", err, tc.kind, tc.rule, tc.detail)
			}
		})
	}
}
