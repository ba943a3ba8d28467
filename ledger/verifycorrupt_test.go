package ledger

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOfflineToolsReportDiskCorruption: a bit flipped by the disk in one
// of the store's table or blob files. Pebble reports such a corruption to
// its logger's Fatalf, which panics (for the writer to recover): the
// offline verification and audit died with a stack trace instead of
// saying what is unreadable.
func TestOfflineToolsReportDiskCorruption(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ledger")
	clk := newTestClock(utc("2026-10-05T02:00:00Z"))
	db, err := Open(src, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, db, 0, 300)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(src, "*.sst"))
	blobs, _ := filepath.Glob(filepath.Join(src, "*.blob"))
	files = append(files, blobs...)
	if len(files) == 0 {
		t.Fatal("no table or blob file")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(b); off += max(1, len(b)/24) {
			dir := filepath.Join(t.TempDir(), "ledger")
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			bad := append([]byte(nil), b...)
			bad[off] ^= 0x10
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), bad, 0o644); err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("%s, byte %d of %d", filepath.Base(f), off, len(b))
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s: VerifyStore panicked: %.200v", where, p)
					}
				}()
				rep, err := VerifyStore(dir, nil, nil)
				if err == nil && !rep.OK() && rep.ChainErr != nil && strings.Contains(rep.ChainErr.Error(), "truncated") {
					t.Errorf("%s: an unreadable entry reported as truncated: %v", where, rep.ChainErr)
				}
			}()
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s: AuditStore panicked: %.200v", where, p)
					}
				}()
				_, _ = AuditStore(dir, nil, nil)
			}()
		}
	}
}
