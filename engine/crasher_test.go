package engine

import (
	"context"
	"errors"
	"testing"
)

// validatorCrasher is a malformed module on which wazero's validator
// (v1.12.0) panics (FuzzInstrumentValid found it; it is in that fuzzer's
// corpus too). Metering refuses it first; in Deadline mode it reaches
// wazero as sent.
const validatorCrasher = "\x00asm\x01\x00\x00\x00\x01\x0f\x03`\x00\x01\x7f`\x01\x7f\x01\x7f`\x01\x7f\x01~\x03\x04\x03\x0000\x05\x03\x01\x000\a0\x04\v00000000000\x00\x00\f000000000000\x00\x01\x06000000\x00\x02\x06000001\x02\x00\n\x11\x03\x04\x00\x10\x01\v\x06\x000000\v\x03\x000\v"

// Loading a module that makes wazero panic is that upload's refusal, in
// both time-bound modes, not the end of the process.
func TestLoadSurvivesAValidatorPanic(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		e := newTestEngine(t, deadline)
		m, err := e.Load(context.Background(), "371600", "vx", []byte(validatorCrasher))
		var le *LoadError
		if m != nil || !errors.As(err, &le) || le.Check != "compile" {
			t.Fatalf("deadline %v: Load = %v, %v; want a compile LoadError", deadline, m, err)
		}
		t.Logf("deadline %v: %v", deadline, err)
	}
}
