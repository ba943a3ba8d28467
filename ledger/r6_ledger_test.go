package ledger

import (
	"context"
	"errors"
	"os"
	"testing"

	"medgate/engine/abi"
)

// TestR6AuditContextRemovesTheScratch: an audit whose Context ends (medgate
// audit interrupted) stops, removes its scratch store and says so; it
// neither passes nor runs on to the end.
func TestR6AuditContextRemovesTheScratch(t *testing.T) {
	db, _ := openMem(t)
	for i := range 10 {
		mustAppend(t, db, settlement(req(i), "P1", abi.MakeDate(2026, 11, 2), nil, 0))
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	rep, err := db.AuditWith(AuditOptions{TempDir: tmp, Context: ctx, Visit: func(*Entry) {
		if seen++; seen == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || rep != nil {
		t.Fatalf("interrupted audit: %v, %v; want context.Canceled and no report", rep, err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the interrupted audit left %d files in its TempDir", len(left))
	}
	if seen == 10 {
		t.Errorf("the interrupted audit replayed every entry")
	}
	// Not interrupted: it passes, and leaves nothing either.
	if rep, err := db.AuditWith(AuditOptions{TempDir: tmp, Context: context.Background()}); err != nil || !rep.OK() {
		t.Fatalf("audit: %v %v", err, rep.Err())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the audit left %d files in its TempDir", len(left))
	}
}
