package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/mod/sumdb/tlog"

	"medgate/engine/abi"
)

// stoppedAuditLedger is auditLedger's store, closed: what `medgate verify
// ledger` and `medgate audit` are run on.
func stoppedAuditLedger(t *testing.T) *vfs.MemFS {
	t.Helper()
	db, fs, _ := auditLedger(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return fs
}

func rawGet(t *testing.T, pdb *pebble.DB, k []byte) []byte {
	t.Helper()
	v, closer, err := pdb.Get(k)
	if err != nil {
		t.Fatalf("get %x: %v", k, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}

func rawSet(t *testing.T, pdb *pebble.DB, k, v []byte) {
	t.Helper()
	if err := pdb.Set(k, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func rawDel(t *testing.T, pdb *pebble.DB, k []byte) {
	t.Helper()
	if err := pdb.Delete(k, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func storedEntry(t *testing.T, pdb *pebble.DB, seq uint64) *Entry {
	t.Helper()
	e := new(Entry)
	if err := DecodeEntry(rawGet(t, pdb, appendEntryKey(nil, seq)), e); err != nil {
		t.Fatal(err)
	}
	return e
}

func rawHead(t *testing.T, pdb *pebble.DB, seq uint64, hash [32]byte) {
	t.Helper()
	rawSet(t, pdb, keyHead, append(be.AppendUint64(nil, seq), hash[:]...))
}

// TestStoppedStoreTampering tampers with a stopped store through Pebble, one
// way at a time, and runs what an operator runs on it: `verify ledger`
// (VerifyStore) and `audit` (AuditStore). Each must name what is wrong and
// where. The store is auditLedger's: 41 entries (1 and 2 opening balances,
// 30 settlements 3..32, reversals 33..36 of 4, 7, 11 and 19, 37 a
// settlement of a freed code, 38 and 39 credits, 40 a reversal of 23 after
// October was closed, 41 a November settlement).
func TestStoppedStoreTampering(t *testing.T) {
	const n = 41
	flip := func(seq uint64, off func(len int) int) func(*testing.T, *pebble.DB) {
		return func(t *testing.T, pdb *pebble.DB) {
			k := appendEntryKey(nil, seq)
			v := rawGet(t, pdb, k)
			v[off(len(v))] ^= 0x01
			rawSet(t, pdb, k, v)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(*testing.T, *pebble.DB)
		chain  uint64 // the seq both tools must name as the chain's break (0: none)
		tree   uint64 // the seq verify must name as the tree's break (0: none)
		audit  string // what the audit must say (when chain and tree hold)
	}{
		{"entry format byte", flip(7, func(int) int { return 0 }), 7, 0, ""},
		{"entry seq varint", flip(7, func(int) int { return 1 }), 7, 0, ""},
		{"entry middle byte", flip(7, func(l int) int { return l / 2 }), 7, 0, ""},
		{"entry prev hash", flip(7, func(l int) int { return l - 33 }), 7, 0, ""},
		{"entry hash", flip(7, func(l int) int { return l - 1 }), 7, 0, ""},
		{"first entry", flip(1, func(l int) int { return l / 3 }), 1, 0, ""},
		{"last entry", flip(n, func(l int) int { return l / 3 }), n, 0, ""},
		{"entry deleted", func(t *testing.T, pdb *pebble.DB) { rawDel(t, pdb, appendEntryKey(nil, 12)) }, 12, 0, ""},
		{"entry duplicated over the next", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendEntryKey(nil, 13), rawGet(t, pdb, appendEntryKey(nil, 12)))
		}, 13, 0, ""},
		{"entries swapped", func(t *testing.T, pdb *pebble.DB) {
			a, b := rawGet(t, pdb, appendEntryKey(nil, 12)), rawGet(t, pdb, appendEntryKey(nil, 13))
			rawSet(t, pdb, appendEntryKey(nil, 12), b)
			rawSet(t, pdb, appendEntryKey(nil, 13), a)
		}, 12, 0, ""},
		{"entry appended after the head", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendEntryKey(nil, n+1), rawGet(t, pdb, appendEntryKey(nil, n)))
		}, n + 1, 0, ""},
		{"entry 0 inserted", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendEntryKey(nil, 0), rawGet(t, pdb, appendEntryKey(nil, 1)))
		}, 1, 0, ""},
		{"head hash", func(t *testing.T, pdb *pebble.DB) {
			rawHead(t, pdb, n, [32]byte{1})
		}, n, 0, ""},
		{"head moved back", func(t *testing.T, pdb *pebble.DB) {
			rawHead(t, pdb, n-1, storedEntry(t, pdb, n-1).Hash)
		}, n, 0, ""},
		{"head moved past the entries", func(t *testing.T, pdb *pebble.DB) {
			rawHead(t, pdb, n+1, storedEntry(t, pdb, n).Hash)
		}, n + 1, 0, ""},
		// The tail cut with its head: the chain of 1..n-1 holds (only a
		// checkpoint can tell, TestStoppedStoreTruncatedTail), but the
		// records the writer kept for entry n remain.
		{"tail truncated", func(t *testing.T, pdb *pebble.DB) {
			rawDel(t, pdb, appendEntryKey(nil, n))
			rawHead(t, pdb, n-1, storedEntry(t, pdb, n-1).Hash)
		}, 0, 0, `idempotency key "\vH3701020001november" names no entry`},
		{"Merkle hash", func(t *testing.T, pdb *pebble.DB) {
			k := appendTreeKey(nil, tlog.StoredHashIndex(2, 4)) // leaves 16..19, written with entry 20
			v := rawGet(t, pdb, k)
			v[5] ^= 0x80
			rawSet(t, pdb, k, v)
		}, 0, 20, ""},
		{"Merkle hash deleted", func(t *testing.T, pdb *pebble.DB) {
			rawDel(t, pdb, appendTreeKey(nil, tlog.StoredHashIndex(1, 0)))
		}, 0, 2, ""},
		{"month totals", func(t *testing.T, pdb *pebble.DB) {
			k := appendPairKey(nil, MakeMonth(2026, 10), region, "370102")
			var p PairTotals
			if err := decodePairValue(rawGet(t, pdb, k), &p); err != nil {
				t.Fatal(err)
			}
			p.Amounts.FundTotal += 100
			rawSet(t, pdb, k, appendPairValue(nil, &p))
		}, 0, 0, "month 2026-10 pair 152500→370102: stored"},
		{"month pair added", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendPairKey(nil, MakeMonth(2026, 10), region, "370000"), appendPairValue(nil, &PairTotals{Settlements: 1}))
		}, 0, 0, "month 2026-10 pair 152500→370000: stored 1 settlements"},
		{"month record", func(t *testing.T, pdb *pebble.DB) {
			k := appendMonthKey(nil, pfxMonth, MakeMonth(2026, 11))
			m, _ := decodeMonthMeta(rawGet(t, pdb, k))
			m.first--
			rawSet(t, pdb, k, appendMonthMeta(nil, &m))
		}, 0, 0, "month 2026-11 record: stored entries 39..41, recomputed 40..41"},
		{"hospital row", func(t *testing.T, pdb *pebble.DB) {
			e := storedEntry(t, pdb, 14)
			e.Amounts.FundTotal = 1
			rawSet(t, pdb, appendHospitalRowKey(nil, e.Hospital, e.CommittedAt, 14), appendHospitalRowValue(nil, e, 0))
		}, 0, 0, "hospital row"},
		{"counter", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendCountersKey(nil, region, "P2", 2026), appendCounters(nil, []abi.Counter{{Name: "ded", Value: 1}}))
		}, 0, 0, "counters of 152500/P2 2026: stored"},
		{"balance", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendBalanceKey(nil, region, "P1"), be.AppendUint64(nil, 1<<40))
		}, 0, 0, "balance of 152500/P1: stored 1099511627776"},
		{"trace code owner", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendTraceKey(nil, 0, "TD011"), appendTraceValue(nil, 12, 0))
		}, 0, 0, `trace code "TD011": stored owner 12`},
		{"trace code added", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendTraceKey(nil, 0, "ZZZ"), appendTraceValue(nil, 12, 0))
		}, 0, 0, `trace code "ZZZ" was settled by no entry`},
		{"idempotency key added", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendIdemKey(nil, 0, hospital, "forged"), appendIdemValue(nil, [32]byte{}, 3))
		}, 0, 0, `idempotency key "\vH3701020001forged" names no entry`},
		{"idempotency key moved", func(t *testing.T, pdb *pebble.DB) {
			k := appendIdemKey(nil, 0, hospital, req(4))
			v := rawGet(t, pdb, k)
			rawDel(t, pdb, k)
			rawSet(t, pdb, appendIdemKey(nil, 1, hospital, req(4)), v)
		}, 0, 0, "of entry 6 is in bucket 1, not 0"},
		{"reversal marker added", func(t *testing.T, pdb *pebble.DB) {
			rawSet(t, pdb, appendReversedKey(nil, 3), be.AppendUint64(nil, 31))
		}, 0, 0, "settlement 3 is marked reversed by 31, recomputed 0"},
		{"closed month seq", func(t *testing.T, pdb *pebble.DB) {
			k := appendMonthKey(nil, pfxClosed, MakeMonth(2026, 10))
			c, _ := decodeClosedValue(MakeMonth(2026, 10), rawGet(t, pdb, k))
			c.Seq = 30
			rawSet(t, pdb, k, appendClosedValue(nil, c))
		}, 0, 0, "entry 31 was committed inside month 2026-10 after it was closed at entry 30"},
		{"closed month hash", func(t *testing.T, pdb *pebble.DB) {
			k := appendMonthKey(nil, pfxClosed, MakeMonth(2026, 10))
			c, _ := decodeClosedValue(MakeMonth(2026, 10), rawGet(t, pdb, k))
			c.Hash[0] ^= 1
			rawSet(t, pdb, k, appendClosedValue(nil, c))
		}, 0, 0, "closed month 2026-10: the hash of entry 39 differs from the frozen one"},
		{"closed month closed before its end", func(t *testing.T, pdb *pebble.DB) {
			k := appendMonthKey(nil, pfxClosed, MakeMonth(2026, 10))
			c, _ := decodeClosedValue(MakeMonth(2026, 10), rawGet(t, pdb, k))
			c.ClosedAt = MakeMonth(2026, 10).endNano() - 1
			rawSet(t, pdb, k, appendClosedValue(nil, c))
		}, 0, 0, "closed month 2026-10 was closed at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := stoppedAuditLedger(t)
			pdb, err := rawOpen("ledger", fs, false)
			if err != nil {
				t.Fatal(err)
			}
			tc.tamper(t, pdb)
			if err := pdb.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyStore("ledger", fs, nil)
			if err != nil {
				t.Fatalf("VerifyStore: %v", err)
			}
			arep, err := AuditStore("ledger", fs, nil)
			if err != nil {
				t.Fatalf("AuditStore: %v", err)
			}
			switch {
			case tc.chain != 0:
				ce, ok := rep.ChainErr.(*ChainError)
				if !ok || ce.Seq != tc.chain {
					t.Errorf("verify: chain error %v, want one at seq %d", rep.ChainErr, tc.chain)
				}
				ce, ok = arep.ChainErr.(*ChainError)
				if !ok || ce.Seq != tc.chain {
					t.Errorf("audit: chain error %v, want one at seq %d", arep.ChainErr, tc.chain)
				}
			case tc.tree != 0:
				te, ok := rep.TreeErr.(*TreeError)
				if rep.ChainErr != nil || !ok || te.Seq != tc.tree {
					t.Errorf("verify: chain %v, tree %v; want a tree error at seq %d", rep.ChainErr, rep.TreeErr, tc.tree)
				}
				te, ok = arep.TreeErr.(*TreeError)
				if arep.ChainErr != nil || !ok || te.Seq != tc.tree {
					t.Errorf("audit: chain %v, tree %v; want a tree error at seq %d", arep.ChainErr, arep.TreeErr, tc.tree)
				}
			default:
				if !rep.OK() {
					t.Errorf("verify: %v %v (derived records are the audit's)", rep.ChainErr, rep.TreeErr)
				}
				if err := arep.Err(); err == nil || arep.ChainErr != nil || arep.TreeErr != nil || !strings.Contains(err.Error(), tc.audit) {
					t.Errorf("audit = %v\nwant a problem naming %q", err, tc.audit)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("verify: %v %v; audit: %v", rep.ChainErr, rep.TreeErr, arep.Err())
			}
		})
	}
}

// TestAuditCountersAreCanonical: the audit compared a counters record with
// its recomputation name by name, through a map, so a record holding a
// name twice (the last one right) or out of order passed, although the
// writer and the settlement's policy input read the list as it is stored
// (the writer finds a name by binary search; the input carries both
// values, the first one wrong).
func TestAuditCountersAreCanonical(t *testing.T) {
	for _, tc := range []struct {
		name string
		cs   func(ded, n int64) []abi.Counter
	}{
		{"name twice", func(ded, n int64) []abi.Counter {
			return []abi.Counter{{Name: "ded", Value: 1}, {Name: "ded", Value: ded}, {Name: "n", Value: n}}
		}},
		{"out of order", func(ded, n int64) []abi.Counter {
			return []abi.Counter{{Name: "n", Value: n}, {Name: "ded", Value: ded}}
		}},
		{"a zero counter", func(ded, n int64) []abi.Counter {
			return []abi.Counter{{Name: "a", Value: 0}, {Name: "ded", Value: ded}, {Name: "n", Value: n}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := stoppedAuditLedger(t)
			pdb, err := rawOpen("ledger", fs, false)
			if err != nil {
				t.Fatal(err)
			}
			k := appendCountersKey(nil, region, "P2", 2026)
			got := map[string]int64{}
			if err := walkCounters(rawGet(t, pdb, k), func(name []byte, v int64) { got[string(name)] = v }); err != nil {
				t.Fatal(err)
			}
			rawSet(t, pdb, k, appendCounters(nil, tc.cs(got["ded"], got["n"])))
			if err := pdb.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := AuditStore("ledger", fs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "counters of 152500/P2 2026") {
				t.Fatalf("audit = %v, want the counters of 152500/P2 2026 named", err)
			}
		})
	}
}

// TestAuditReversalMirrorsItsSettlement: the writer refuses a reversal
// whose hospital, treating region or amounts are not its settlement's
// (clearing books it against its pair, reconciliation against its
// hospital), but the audit checked only region, person, year, balance and
// counters: a history rewritten before any checkpoint was published, with
// its chain, tree and derived records recomputed, passed the audit with a
// reversal that takes back more than its settlement paid, or books it
// against another hospital or pair.
func TestAuditReversalMirrorsItsSettlement(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forge func(e *Entry)
	}{
		{"amounts", func(e *Entry) { e.Amounts.FundTotal -= 100000; e.Amounts.BasicFund -= 100000 }},
		{"hospital", func(e *Entry) { e.Hospital = "H3716020001" }},
		{"treating region", func(e *Entry) { e.TreatingRegion = "371602" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := memFS()
			db, err := Open("ledger", testOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.PutPersons([]Person{person("P1", 100000)}); err != nil {
				t.Fatal(err)
			}
			s := settlement("s1", "P1", 20261010, []abi.Counter{{Name: "n", Value: 1}}, -100, "TC1")
			mustAppend(t, db, s)
			mustAppend(t, db, settlement("s2", "P1", 20261010, nil, 0))
			mustAppend(t, db, reversal("r1", s))
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// Rewrite the reversal (entry 4: P1's opening balance is entry 1)
			// and its chain, as its writer would have.
			pdb, err := rawOpen("ledger", fs, false)
			if err != nil {
				t.Fatal(err)
			}
			e := storedEntry(t, pdb, 4)
			idem := appendIdemKey(nil, 0, e.Hospital, e.RequestID)
			iv := rawGet(t, pdb, idem)
			rawDel(t, pdb, idem)
			tc.forge(e)
			rawSet(t, pdb, appendIdemKey(nil, 0, e.Hospital, e.RequestID), iv)
			body := appendEntryBody(nil, e)
			e.Hash = EntryHash(e.PrevHash, body)
			rawSet(t, pdb, appendEntryKey(nil, 4), append(body, e.Hash[:]...))
			rawHead(t, pdb, 4, e.Hash)
			if err := pdb.Close(); err != nil {
				t.Fatal(err)
			}
			// And the derived records (Merkle tree, month totals, hospital
			// rows) from the entries.
			db, err = Open("ledger", testOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.rebuildDerived(4); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if rep, err := VerifyStore("ledger", fs, nil); err != nil || !rep.OK() {
				t.Fatalf("the forgery is not consistent: %v %+v", err, rep)
			}
			rep, err := AuditStore("ledger", fs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "entry 4 does not mirror the settlement S000000000002") {
				t.Fatalf("audit = %v, want entry 4 named", err)
			}
			t.Log(rep.Err())
		})
	}
}

// --- VERIFY.md's rules, recomputed without tlog or note -------------------

func docLeaf(entryHash [32]byte) [32]byte {
	return sha256.Sum256(append([]byte{0}, entryHash[:]...))
}

func docNode(l, r [32]byte) [32]byte {
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

// docMTH is RFC 6962's MTH of leaves (the left subtree holds the largest
// power of two below n).
func docMTH(leaves [][32]byte) [32]byte {
	switch n := len(leaves); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		return docNode(docMTH(leaves[:k]), docMTH(leaves[k:]))
	}
}

// docCheckInclusion is RFC 9162 §2.1.3.2.
func docCheckInclusion(index, size uint64, leaf [32]byte, path []tlog.Hash, root [32]byte) bool {
	if index >= size {
		return false
	}
	fn, sn, r := index, size-1, leaf
	for _, p := range path {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			r = docNode(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = docNode(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	return sn == 0 && r == root
}

// docCheckConsistency is RFC 9162 §2.1.4.2.
func docCheckConsistency(first, second uint64, firstRoot, secondRoot [32]byte, path []tlog.Hash) bool {
	if first == 0 || first > second {
		return false
	}
	if first == second {
		return len(path) == 0 && firstRoot == secondRoot
	}
	p := make([][32]byte, 0, len(path)+1)
	if first&(first-1) == 0 {
		p = append(p, firstRoot)
	}
	for _, h := range path {
		p = append(p, h)
	}
	if len(p) == 0 {
		return false
	}
	fn, sn := first-1, second-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := p[0], p[0]
	for _, c := range p[1:] {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			fr, sr = docNode(c, fr), docNode(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = docNode(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	return fr == firstRoot && sr == secondRoot && sn == 0
}

// docOpenCheckpoint checks a signed checkpoint as VERIFY.md §3 says, with
// crypto/ed25519 only, and returns its text.
func docOpenCheckpoint(t *testing.T, signed string, pub ed25519.PublicKey) string {
	t.Helper()
	text, sigs, ok := strings.Cut(signed, "\n\n")
	if !ok {
		t.Fatalf("no blank line in %q", signed)
	}
	text += "\n"
	line, ok := strings.CutPrefix(sigs, "— medgate-ledger ")
	if !ok || !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("signature line %q", sigs)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(line, "\n"))
	if err != nil || len(sig) != 68 {
		t.Fatalf("signature %q: %v", line, err)
	}
	kh := sha256.Sum256(append([]byte("medgate-ledger\n\x01"), pub...))
	if !bytes.Equal(sig[:4], kh[:4]) {
		t.Fatalf("key hash %x, VERIFY.md's rule gives %x", sig[:4], kh[:4])
	}
	if !ed25519.Verify(pub, []byte(text), sig[4:]) {
		t.Fatal("the signature does not verify over the text above the blank line")
	}
	vkey := "medgate-ledger+" + hex.EncodeToString(kh[:4]) + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub...))
	return text + vkey // the verifier key, to compare too
}

// TestProofsFollowVERIFYmd recomputes, from VERIFY.md's rules alone (RFC
// 6962/9162 with crypto/sha256 and crypto/ed25519, neither tlog nor note),
// every tree hash, inclusion proof and consistency proof the ledger serves
// for sizes 1..19, and checks the documents' signatures and fields; and
// that each altered proof (another leaf, another size, index == size, a
// hash more or less, a hash changed) is refused by the document's Verify.
func TestProofsFollowVERIFYmd(t *testing.T) {
	const n = 19
	db, _ := openMem(t)
	var hashes [][32]byte
	var entries []*Entry
	for i := 1; i <= n; i++ {
		e := settlement(req(i), "P1", 20261010, nil, 0)
		mustAppend(t, db, e)
		entries = append(entries, e)
		hashes = append(hashes, e.Hash)
	}
	s, err := NewCheckpointSigner(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifier(s.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC)
	leaves := make([][32]byte, n)
	for i, h := range hashes {
		leaves[i] = docLeaf(h)
		// The chain: Hash = SHA-256(PrevHash || body), body ending in PrevHash.
		enc := AppendEntry(nil, entries[i])
		var prev [32]byte
		if i > 0 {
			prev = hashes[i-1]
		}
		if [32]byte(enc[len(enc)-64:len(enc)-32]) != prev || sha256.Sum256(append(prev[:], enc[:len(enc)-32]...)) != h {
			t.Fatalf("entry %d: its encoding does not end in PrevHash || Hash with Hash = SHA-256(PrevHash || body)", i+1)
		}
	}
	for size := uint64(1); size <= n; size++ {
		root := docMTH(leaves[:size])
		d, err := db.NewConsistencyDoc(1, size, s, at) // for the checkpoint of size
		if err != nil {
			t.Fatal(err)
		}
		text := docOpenCheckpoint(t, d.ToCheckpoint, s.Public)
		want := fmt.Sprintf("medgate-ledger\n%d\n%s\nhead %x\ntime 2026-11-02T02:00:00Z\n", size,
			base64.StdEncoding.EncodeToString(root[:]), hashes[size-1])
		if text != want+s.VerifierKey {
			t.Fatalf("size %d: checkpoint and verifier key\n%q\nwant\n%q", size, text, want+s.VerifierKey)
		}
		for seq := uint64(1); seq <= size; seq++ {
			doc, err := db.NewInclusionDoc(entries[seq-1], size, s, at)
			if err != nil {
				t.Fatal(err)
			}
			if doc.LeafHash != leaves[seq-1] || doc.RootHash != root || doc.EntryHash != hex.EncodeToString(hashes[seq-1][:]) {
				t.Fatalf("inclusion of %d in %d: leaf, root or entry hash not VERIFY.md's", seq, size)
			}
			if !docCheckInclusion(seq-1, size, leaves[seq-1], doc.Proof, root) {
				t.Fatalf("inclusion of %d in %d: the audit path does not verify by RFC 9162", seq, size)
			}
			if _, _, err := doc.Verify(v); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", seq, size, err)
			}
			// Altered documents.
			bad := func(what string, change func(d *InclusionDoc)) {
				c := *doc
				c.Proof = append([]tlog.Hash(nil), doc.Proof...)
				change(&c)
				if _, _, err := c.Verify(v); err == nil {
					t.Fatalf("inclusion of %d in %d, %s: accepted", seq, size, what)
				}
			}
			bad("a hash more", func(d *InclusionDoc) { d.Proof = append(d.Proof, tlog.Hash{}) })
			if len(doc.Proof) > 0 {
				bad("a hash less", func(d *InclusionDoc) { d.Proof = d.Proof[:len(d.Proof)-1] })
				bad("a hash changed", func(d *InclusionDoc) { d.Proof[0][3] ^= 1 })
			}
			bad("index == size", func(d *InclusionDoc) { d.LeafIndex, d.Seq = size, size+1 })
			if size > 1 {
				bad("another leaf index", func(d *InclusionDoc) { d.LeafIndex = seq % size })
			}
			if seq < size {
				other, err := db.NewInclusionDoc(entries[seq], size, s, at)
				if err != nil {
					t.Fatal(err)
				}
				bad("another entry's path", func(d *InclusionDoc) { d.Proof = other.Proof })
				bad("another entry", func(d *InclusionDoc) { d.Entry, d.EntryHash, d.LeafHash = other.Entry, other.EntryHash, other.LeafHash })
			}
			if size < n {
				bigger, err := db.NewInclusionDoc(entries[seq-1], size+1, s, at)
				if err != nil {
					t.Fatal(err)
				}
				bad("another size's checkpoint", func(d *InclusionDoc) { d.Checkpoint = bigger.Checkpoint })
				bad("another size's path", func(d *InclusionDoc) { d.Proof = bigger.Proof })
			}
		}
		for from := uint64(1); from <= size; from++ {
			d, err := db.NewConsistencyDoc(from, size, s, at)
			if err != nil {
				t.Fatal(err)
			}
			if d.FromRoot != docMTH(leaves[:from]) || d.ToRoot != root {
				t.Fatalf("consistency %d→%d: roots not VERIFY.md's", from, size)
			}
			if !docCheckConsistency(from, size, d.FromRoot, d.ToRoot, d.Proof) {
				t.Fatalf("consistency %d→%d: the proof does not verify by RFC 9162", from, size)
			}
			if _, _, err := d.Verify(v); err != nil {
				t.Fatalf("consistency %d→%d: %v", from, size, err)
			}
			c := *d
			c.Proof = append(append([]tlog.Hash(nil), d.Proof...), tlog.Hash{})
			if _, _, err := c.Verify(v); err == nil {
				t.Fatalf("consistency %d→%d with a hash more: accepted", from, size)
			}
			if len(d.Proof) > 0 {
				c.Proof = d.Proof[:len(d.Proof)-1]
				if _, _, err := c.Verify(v); err == nil {
					t.Fatalf("consistency %d→%d with a hash less: accepted", from, size)
				}
			}
			if from < size {
				c := *d
				c.FromCheckpoint, c.FromSize, c.FromRoot = d.ToCheckpoint, d.ToSize, d.ToRoot
				if _, _, err := c.Verify(v); err == nil && len(d.Proof) > 0 {
					t.Fatalf("consistency %d→%d passed off as %d→%d: accepted", from, size, size, size)
				}
			}
		}
	}
	// Size 0: the empty tree's checkpoint; no proof of or from it.
	edb, _ := openMem(t)
	empty, err := edb.MakeCheckpoint(0, at)
	if err != nil || empty.Size != 0 || empty.Root != sha256.Sum256(nil) || empty.Head != ([32]byte{}) {
		t.Fatalf("empty tree checkpoint %+v, %v", empty, err)
	}
	if _, err := db.NewConsistencyDoc(0, 3, s, at); err == nil {
		t.Fatal("a consistency proof from size 0")
	}
	if _, err := db.NewInclusionDoc(entries[4], 4, s, at); err == nil {
		t.Fatal("an inclusion proof of entry 5 in the tree of size 4")
	}
	if _, err := db.InclusionProof(1, n+1); err == nil {
		t.Fatal("an inclusion proof in a tree beyond the head")
	}
}
