package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"medgate/engine/abi"
	"medgate/gateway"
	"medgate/ledger"
)

// TestAuditChecksFrozenStatements: a closed month's frozen statement is
// what the clearing house is answered for that month from then on
// (GET /v1/clearing/months/{m}), but the audit compared only its seq and
// hash with the entries: a statement rewritten in a stopped store (a
// pair's fund total, a province's net position) passed `medgate audit`.
func TestAuditChecksFrozenStatements(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	at := time.Date(2026, 10, 20, 2, 0, 0, 0, time.UTC)
	db, err := ledger.Open(dir, ledger.Options{Now: func() time.Time { at = at.Add(time.Second); return at }})
	if err != nil {
		t.Fatal(err)
	}
	for i, pair := range [][2]string{{"152500", "370102"}, {"371600", "370102"}, {"152500", "371602"}, {"152500", "370102"}} {
		req := "R-" + string(rune('a'+i))
		e := &ledger.Entry{Kind: ledger.KindSettlement, RequestID: req, BodyHash: sha256.Sum256([]byte(req)),
			Hospital: "H3701020001", TreatingRegion: pair[1], InsuredRegion: pair[0], PersonID: "P" + req,
			Date: abi.MakeDate(2026, 10, 1), VisitType: abi.VisitOutpatient,
			Amounts: ledger.Amounts{Total: int64(1000 + i), FundTotal: 600, Cash: int64(400 + i)}}
		if err := db.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	at = time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	if _, _, err := db.CloseMonth(ledger.MakeMonth(2026, 10), gateway.ClosedStatement); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	audit := func() (int, string) {
		var out, errb bytes.Buffer
		code := run([]string{"audit", "--db", dir}, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := audit(); code != 0 {
		t.Fatalf("untouched store: exit %d\n%s", code, out)
	}
	for _, tc := range []struct{ old, new string }{
		{`"fund_total":"12.00"`, `"fund_total":"99.00"`},
		{`"net":"-18.00"`, `"net":"-1.00"`},
	} {
		pdb, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
		if err != nil {
			t.Fatal(err)
		}
		key := binary.BigEndian.AppendUint32([]byte{'z'}, uint32(ledger.MakeMonth(2026, 10)))
		got, closer, err := pdb.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		v := bytes.Clone(got)
		if !bytes.Contains(v, []byte(tc.old)) {
			t.Fatalf("the statement holds no %s: %s", tc.old, v[48:])
		}
		bad := bytes.Replace(v, []byte(tc.old), []byte(tc.new), 1)
		closer.Close()
		if err := pdb.Set(key, bad, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		pdb.Close()
		code, out := audit()
		if code != 1 || !strings.Contains(out, "closed month 2026-10: the frozen statement differs") || !strings.Contains(out, tc.new) {
			t.Errorf("%s rewritten as %s: exit %d\n%s", tc.old, tc.new, code, out)
		}
		// Put it back for the next case.
		pdb, err = pebble.Open(dir, &pebble.Options{Logger: quiet{}})
		if err != nil {
			t.Fatal(err)
		}
		pdb.Set(key, v, pebble.Sync)
		pdb.Close()
	}
}
