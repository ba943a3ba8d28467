package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"medgate/ledger"
	"medgate/testdata"
)

// openWorldDB opens an in-memory ledger, closed with the test.
func openWorldDB(t *testing.T, fs vfs.FS) *ledger.DB {
	t.Helper()
	db, err := ledger.Open("ledger", ledger.Options{FS: fs, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestR7WorldCorrectedConditionsApply: a world persons line whose
// conditions an operator corrects (one string "hypertension diabetes"
// split into the two conditions it meant) is applied at the next start:
// the digest that says whether a line changed must not read the two as
// the same line.
func TestR7WorldCorrectedConditionsApply(t *testing.T) {
	mem := vfs.NewMem()
	apply := func(line string) *ledger.DB {
		p, err := ParsePerson("371600", []byte(line))
		if err != nil {
			t.Fatal(err)
		}
		db := openWorldDB(t, mem)
		if err := (&World{Persons: []ledger.Person{p}}).ApplyRegistry(db); err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := apply(`{"id":"R1","scheme":"resident","conditions":["hypertension diabetes"]}`)
	db.Close()
	db = apply(`{"id":"R1","scheme":"resident","conditions":["hypertension","diabetes"]}`)
	defer db.Close()
	p, ok, err := db.Person("371600", "R1")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if !p.Facts.HasCondition("diabetes") || !p.Facts.HasCondition("hypertension") {
		t.Fatalf("the corrected line was not applied: conditions %q", p.Facts.Conditions)
	}
}

// TestR7WorldPersonDigestUnchanged: the line digest of an ordinary person
// is the one ledgers recorded before lists were quoted, so that an upgrade
// does not apply every world person again over what regions changed.
func TestR7WorldPersonDigestUnchanged(t *testing.T) {
	p, err := ParsePerson("371600", []byte(resident))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	personDigest(&b, &p)
	if want := fmt.Sprintf("%d %+v\n", p.OpeningBalance, p.Facts); b.String() != want {
		t.Fatalf("digest text %q, recorded before as %q", b.String(), want)
	}
}

// TestR7WorldBalanceNotAppliedIsLogged: account_balance is the opening
// balance of a new person only (api.md), so a world line that changes it
// for a person who exists is not applied; the operator who edited it must
// be told so, as a region is (balance_not_applied), and not take it as
// applied and then credit the difference again.
func TestR7WorldBalanceNotAppliedIsLogged(t *testing.T) {
	mem := vfs.NewMem()
	var logs syncBuffer
	line := `{"id":"E1","scheme":"employee","employment":"active","account_balance":"1000.00"}`
	for _, bal := range []string{"1000.00", "1500.00"} {
		w, err := ReadWorld(fstest.MapFS{"persons/371600.ndjson": {Data: []byte(strings.Replace(line, "1000.00", bal, 1) + "\n")}})
		if err != nil {
			t.Fatal(err)
		}
		db := openWorldDB(t, mem)
		if err := w.ApplyRegistryLogging(db, zerolog.New(&logs)); err != nil {
			t.Fatal(err)
		}
		b, err := db.Balance("371600", "E1")
		db.Close()
		if err != nil || b != 100000 {
			t.Fatalf("balance %d %v, want the opening 1000.00", b, err)
		}
		if bal == "1000.00" && logs.String() != "" {
			t.Fatalf("a new person's opening balance is reported as not applied:\n%s", logs.String())
		}
	}
	for _, want := range []string{`"level":"warn"`, "persons/371600.ndjson", "line 1", "E1", "1500.00", "1000.00"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the balance not applied is not reported with %q:\n%s", want, logs.String())
		}
	}
}

// TestR7DemoWorldRefusedOnARealLedger: with no --world the gateway runs
// the embedded reference world, whose tokens README publishes. Started so
// on a ledger that was given a --world directory (a config or unit file
// that lost its world line), it applied the demo's hospitals, catalog
// codes, persons (opening balance entries, for ever in the chain) and
// policy versions to that ledger and took demo-clearing and
// demo-region-… as tokens. The start is refused instead, writing nothing;
// the demo's own ledger starts with it again and again, and a demo ledger
// may be given a real world.
func TestR7DemoWorldRefusedOnARealLedger(t *testing.T) {
	world := fstest.MapFS{
		"hospitals.json":  {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}]`)},
		"principals.json": {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "hospital", "id": "H1"}]`)},
	}
	demo := fstest.MapFS{
		"hospitals.json":  {Data: []byte(`[{"id": "H1", "region": "110105", "level": 1}, {"id": "H2", "region": "371602", "level": 3}]`)},
		"principals.json": {Data: []byte(`[{"token_sha256": "` + TokenHash("demo-hospital-H2") + `", "role": "hospital", "id": "H2"}]`)},
	}
	run := func(dir string, w fs.FS, isDemo bool) (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		served := false
		err := Run(ctx, Config{Listen: "127.0.0.1:0", DBDir: dir, World: w, DemoWorld: isDemo, Logger: zerolog.Nop(),
			Ready: func(net.Addr) { served = true; cancel() }})
		return served, err
	}
	demoDir, realDir := t.TempDir(), t.TempDir()
	for i := 0; i < 2; i++ {
		if served, err := run(demoDir, demo, true); !served || err != nil {
			t.Fatalf("the demo on its own ledger, start %d: served %v, %v", i+1, served, err)
		}
	}
	if served, err := run(demoDir, world, false); !served || err != nil {
		t.Fatalf("a demo ledger given a world: served %v, %v", served, err)
	}
	if served, err := run(realDir, world, false); !served || err != nil {
		t.Fatalf("a world: served %v, %v", served, err)
	}
	served, err := run(realDir, demo, true)
	if served || err == nil || !strings.Contains(err.Error(), "--world") {
		t.Fatalf("the demo world on a ledger given --world: served %v, err %v", served, err)
	}
	db, err := ledger.Open(filepath.Join(realDir), ledger.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if h, ok := db.Hospital("H1"); !ok || h.Region != "371602" {
		t.Fatalf("the refused demo start wrote its hospitals: %+v %v", h, ok)
	}
	if _, ok := db.Hospital("H2"); ok {
		t.Fatal("the refused demo start wrote its hospitals")
	}
}

// TestR7HospitalTokenWithoutHospitalsFile: a world without hospitals.json
// whose principals.json names hospitals started a gateway that refused
// each of their calls (403, "the token's hospital is not in the
// registry"); with hospitals.json such a token is refused at load. The
// start stops too when neither the world nor the ledger (a hospital of an
// earlier world) has the hospital, and goes on when the ledger has it.
func TestR7HospitalTokenWithoutHospitalsFile(t *testing.T) {
	principals := fstest.MapFS{"principals.json": {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "hospital", "id": "H1"}]`)}}
	run := func(dir string, w fs.FS) (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		served := false
		err := Run(ctx, Config{Listen: "127.0.0.1:0", DBDir: dir, World: w, Logger: zerolog.Nop(),
			Ready: func(net.Addr) { served = true; cancel() }})
		return served, err
	}
	dir := filepath.Join(t.TempDir(), "ledger")
	served, err := run(dir, principals)
	if served || err == nil || !strings.Contains(err.Error(), "principals[0]") || !strings.Contains(err.Error(), "H1") {
		t.Fatalf("a hospital token no hospital record backs: served %v, err %v", served, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start left %s behind: %v", dir, err)
	}
	withHospital := fstest.MapFS{"principals.json": principals["principals.json"],
		"hospitals.json": {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}]`)}}
	if served, err := run(dir, withHospital); !served || err != nil {
		t.Fatalf("with hospitals.json: served %v, %v", served, err)
	}
	if served, err := run(dir, principals); !served || err != nil {
		t.Fatalf("the hospital in the ledger from an earlier world: served %v, %v", served, err)
	}
}

// TestR7WorldCatalogLineRemovedIsLogged: the world is upserted (api.md),
// so a code whose line an operator deletes from a world catalog file
// stays in the region's catalog, and the fund goes on paying for it as
// its class says. That is not said anywhere; an operator who deleted the
// line to delist the code is now told it stays, and how to remove it.
func TestR7WorldCatalogLineRemovedIsLogged(t *testing.T) {
	mem := vfs.NewMem()
	var logs syncBuffer
	lines := []string{`{"code": "XA01", "class": "A"}`, `{"code": "XB01", "class": "B", "selfpay_prop": "0.10"}`}
	for _, file := range [][]string{lines, lines[:1]} {
		w, err := ReadWorld(fstest.MapFS{"catalogs/371600.ndjson": {Data: []byte(strings.Join(file, "\n") + "\n")}})
		if err != nil {
			t.Fatal(err)
		}
		db := openWorldDB(t, mem)
		if err := w.ApplyRegistryLogging(db, zerolog.New(&logs)); err != nil {
			t.Fatal(err)
		}
		cat, ok := db.Catalog("371600")
		_, listed := cat.Lookup("XB01")
		db.Close()
		if !ok || !listed {
			t.Fatal("XB01 is not in the catalog: the world is upserted")
		}
		if len(file) == 2 && logs.String() != "" {
			t.Fatalf("a first catalog file is reported:\n%s", logs.String())
		}
	}
	for _, want := range []string{`"level":"warn"`, "catalogs/371600.ndjson", "XB01", "PUT /v1/regions/371600/catalog"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the removed line is not reported with %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "XA01") {
		t.Errorf("a code still in the file is reported:\n%s", logs.String())
	}
}

// TestR7WorldUnservedIsLogged: a world hospital whose treating region has
// no catalog (nor its prefecture or province), and a persons file of a
// region with no policy version, started a gateway that said "world
// loaded" and refused each of their bills (422 no_catalog, no_policy)
// without a word at start. A region may upload either later, so the start
// goes on, but says so.
func TestR7WorldUnservedIsLogged(t *testing.T) {
	world := fstest.MapFS{
		"hospitals.json":          {Data: []byte(`[{"id": "H1", "region": "999901", "level": 3}, {"id": "H2", "region": "371602", "level": 3}]`)},
		"principals.json":         {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "hospital", "id": "H1"}]`)},
		"catalogs/371600.ndjson":  {Data: []byte(`{"code": "XA01", "class": "A"}` + "\n")},
		"persons/999900.ndjson":   {Data: []byte(`{"id": "P1", "scheme": "resident"}` + "\n")},
		"persons/371600.ndjson":   {Data: []byte(`{"id": "P1", "scheme": "resident"}` + "\n")},
		"policies/371600/v1.json": {Data: []byte(`{"effective_from": "2024-01-01"}`)},
	}
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := Run(ctx, Config{Listen: "127.0.0.1:0", DBDir: t.TempDir(), World: world, Logger: zerolog.New(&logs),
		ModuleDirs: []fs.FS{fstest.MapFS{}}, Ready: func(net.Addr) { cancel() }})
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"warn"`) {
			warned = append(warned, line)
		}
	}
	all := strings.Join(warned, "\n")
	for _, want := range []string{"H1", "999901", "no_catalog", "persons/999900.ndjson", "no_policy"} {
		if !strings.Contains(all, want) {
			t.Errorf("the warnings do not say %q:\n%s", want, all)
		}
	}
	for _, not := range []string{"H2", "persons/371600.ndjson"} {
		if strings.Contains(all, not) {
			t.Errorf("the warnings name %s, which is served:\n%s", not, all)
		}
	}
	// The reference world serves every hospital and person.
	ref, err := fs.Sub(testdata.World, "world")
	if err != nil {
		t.Fatal(err)
	}
	var refLogs syncBuffer
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Run(ctx, Config{Listen: "127.0.0.1:0", DBDir: t.TempDir(), World: ref, DemoWorld: true, Logger: zerolog.New(&refLogs),
		ModuleDirs: []fs.FS{fstest.MapFS{}}, Ready: func(net.Addr) { cancel() }}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(refLogs.String(), "no_catalog") || strings.Contains(refLogs.String(), "no_policy") {
		t.Errorf("the reference world is reported unserved:\n%s", refLogs.String())
	}
}

// TestR7WorldJSONErrorsSpeakJSON: a world JSON file or NDJSON line with a
// value of the wrong JSON type, or that is not the object or array it
// must be, was refused in encoding/json's words, naming the gateway's Go
// types ("Go struct field HospitalRecord.level of type uint8", "Go value
// of type []gateway.HospitalRecord"); the regions' API got the same for a
// line that is not an object. They now say what the value must be, in
// JSON, still naming the file and line.
func TestR7WorldJSONErrorsSpeakJSON(t *testing.T) {
	for _, c := range []struct {
		name  string
		files fstest.MapFS
		want  []string
	}{
		{"hospital level a string", fstest.MapFS{"hospitals.json": {Data: []byte("[\n {\"id\": \"H1\", \"region\": \"371602\",\n  \"level\": \"3\"}]")}},
			[]string{"hospitals.json", "line 3", "level", "integer"}},
		{"hospitals an object", fstest.MapFS{"hospitals.json": {Data: []byte(`{"id": "H1", "region": "371602", "level": 3}`)}},
			[]string{"hospitals.json", "line 1", "array"}},
		{"principals an object", fstest.MapFS{"principals.json": {Data: []byte(`{"token_sha256": "x", "role": "clearing"}`)}},
			[]string{"principals.json", "line 1", "array"}},
		{"effective_from a number", fstest.MapFS{"policies/371600/v1.json": {Data: []byte(`{"effective_from": 20240101}`)}},
			[]string{"policies/371600/v1.json", "line 1", "effective_from", "string"}},
		{"person line an array", fstest.MapFS{"persons/371600.ndjson": {Data: []byte("[]\n")}},
			[]string{"persons/371600.ndjson", "line 1", "object"}},
		{"catalog line a string", fstest.MapFS{"catalogs/371600.ndjson": {Data: []byte("\"XA01\"\n")}},
			[]string{"catalogs/371600.ndjson", "line 1", "object"}},
	} {
		_, err := ReadWorld(c.files)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if strings.Contains(err.Error(), "Go ") || strings.Contains(err.Error(), "gateway.") || strings.Contains(err.Error(), "Record") {
			t.Errorf("%s: %q names Go types", c.name, err)
		}
		for _, want := range c.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", c.name, err, want)
			}
		}
	}
}
