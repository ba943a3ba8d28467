package engine

import (
	"context"
	"errors"
	"testing"
)

// TestLoadRefusesImpossibleCounts: a few bytes declaring billions of
// imports or tables are refused at load, in both time-bound modes, instead
// of making the decoder allocate tens of GiB (which killed the process:
// POST /v1/regions/{r}/policies/check needs no signature).
func TestLoadRefusesImpossibleCounts(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		e := newTestEngine(t, deadline)
		for name, wasm := range map[string]string{
			"imports": "\x00asm\x01\x00\x00\x00\x02\x17\xfe\x8f\x82|0000000000000000000000000000000000000",
			"tables":  "\x00asm\x01\x00\x00\x00\x04\x05\xff\xff\xff\xff\x0f",
		} {
			_, err := e.Load(context.Background(), "152500", "x", []byte(wasm))
			var le *LoadError
			if !errors.As(err, &le) || le.Check != "compile" {
				t.Fatalf("deadline %v, %s: %v", deadline, name, err)
			}
		}
	}
}
