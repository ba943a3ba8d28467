package ledger

import (
	"errors"
	"testing"

	"medgate/engine/abi"
)

// TestRegionKeyedWritesSurviveACrash: a region's keyed write and its key
// are on disk together once answered: a crash right after the answer,
// losing everything unsynced, reopens to a store where a retry under the
// key is the first answer and writes nothing, even after a later change.
// A write refused (or a conflict) records no key.
func TestRegionKeyedWritesSurviveACrash(t *testing.T) {
	db, crashed := crashHarness(t)
	catKey := &RegionKey{Region: "371600", Key: "k1", Route: "PUT /v1/regions/371602/catalog", Body: [32]byte{1}}
	first := []CatalogEntry{{Code: "XA02", Class: abi.ClassA, PriceCap: 100_000_000, HasPriceCap: true}}
	if replay, err := db.PutCatalogKeyed(catKey, "371602", first, true, func() []byte { return []byte(`{"written":1}`) }); err != nil || replay != nil {
		t.Fatalf("keyed catalog: %s %v", replay, err)
	}
	later := []CatalogEntry{{Code: "XA02", Class: abi.ClassA, PriceCap: 80_000_000, HasPriceCap: true}}
	if err := db.PutCatalog("371602", later, false); err != nil {
		t.Fatal(err)
	}
	crashed("a keyed catalog write", func(d *DB) {
		replay, err := d.PutCatalogKeyed(catKey, "371602", first, true, func() []byte { return []byte(`other`) })
		if err != nil || string(replay) != `{"written":1}` {
			t.Errorf("retry after a crash: %q %v", replay, err)
		}
		c, _ := d.Catalog("371602")
		if e, _ := c.Lookup("XA02"); e.PriceCap != 80_000_000 {
			t.Errorf("retry after a crash undid the later price cap: %d", e.PriceCap)
		}
		// The replay changed nothing in memory either.
		if e, _ := c.Lookup("XA02"); e.PriceCap != 80_000_000 {
			t.Errorf("in memory: %d", e.PriceCap)
		}
	})
	// The in-memory catalog of the live store is not the replayed one.
	if replay, err := db.PutCatalogKeyed(catKey, "371602", first, true, func() []byte { return nil }); err != nil || replay == nil {
		t.Fatalf("live retry: %q %v", replay, err)
	}
	if c, _ := db.Catalog("371602"); c == nil {
		t.Fatal("catalog gone")
	} else if e, _ := c.Lookup("XA02"); e.PriceCap != 80_000_000 {
		t.Errorf("a replay replaced the in-memory catalog: %d", e.PriceCap)
	}

	pKey := &RegionKey{Region: "371600", Key: "k1", Route: "POST /v1/regions/371600/persons", Body: [32]byte{2}}
	p := Person{ID: "P1", Region: "371600", OpeningBalance: 100, Facts: abi.Person{Employment: abi.EmploymentActive}}
	// The same key on another route: a conflict, nothing written.
	var ce *RegionKeyConflictError
	if _, _, err := db.UpsertPersonsKeyed(&RegionKey{Region: "371600", Key: "k1", Route: pKey.Route, Body: pKey.Body}, []Person{p}, func([]PersonWrite) []byte { return []byte("x") }); !errors.As(err, &ce) || !ce.OtherRoute {
		t.Fatalf("another route: %v", err)
	}
	if _, ok, _ := db.Person("371600", "P1"); ok {
		t.Fatal("a conflict wrote a person")
	}
	pKey.Key = "k2"
	ws, replay, err := db.UpsertPersonsKeyed(pKey, []Person{p}, func(ws []PersonWrite) []byte {
		if len(ws) != 1 || !ws[0].Created {
			t.Errorf("answer built from %+v", ws)
		}
		return []byte(`{"created":1}`)
	})
	if err != nil || replay != nil || len(ws) != 1 || !ws[0].Created {
		t.Fatalf("keyed persons: %+v %q %v", ws, replay, err)
	}
	p2 := p
	p2.Facts.Employment = abi.EmploymentRetired
	if _, err := db.PutPersons([]Person{p2}); err != nil {
		t.Fatal(err)
	}
	crashed("a keyed persons write", func(d *DB) {
		ws, replay, err := d.UpsertPersonsKeyed(pKey, []Person{p}, func([]PersonWrite) []byte { return []byte("other") })
		if err != nil || string(replay) != `{"created":1}` || ws != nil {
			t.Errorf("retry after a crash: %+v %q %v", ws, replay, err)
		}
		if got, _, _ := d.Person("371600", "P1"); got.Facts.Employment != abi.EmploymentRetired {
			t.Errorf("retry after a crash undid the later change")
		}
		other := *pKey
		other.Body[0] = 9
		if _, _, err := d.UpsertPersonsKeyed(&other, []Person{p}, func([]PersonWrite) []byte { return nil }); !errors.As(err, &ce) || ce.OtherRoute {
			t.Errorf("another body after a crash: %v", err)
		}
	})
	// Keys are per region: 152500's k2 is its own.
	q := Person{ID: "P1", Region: "152500"}
	if _, replay, err := db.UpsertPersonsKeyed(&RegionKey{Region: "152500", Key: "k2", Route: pKey.Route, Body: pKey.Body}, []Person{q}, func([]PersonWrite) []byte { return []byte("{}") }); err != nil || replay != nil {
		t.Errorf("another region's key: %q %v", replay, err)
	}
	// A write refused records no key: the same key then writes.
	bad := &RegionKey{Region: "371600", Key: "k3", Route: "POST /v1/regions/371600/persons", Body: [32]byte{3}}
	if _, _, err := db.UpsertPersonsKeyed(bad, []Person{{ID: "P9", Region: "371600", OpeningBalance: -1}}, func([]PersonWrite) []byte { return []byte("{}") }); err == nil {
		t.Fatal("a negative balance was taken")
	}
	if _, found, err := db.RegionKeyAnswer(bad); err != nil || found {
		t.Errorf("a refused write recorded its key: %v %v", found, err)
	}
	// An answer recorded for a write of nothing else.
	rec := &RegionKey{Region: "371600", Key: "k4", Route: "PUT /v1/regions/371600/catalog", Body: [32]byte{4}}
	if replay, err := db.RecordRegionKey(rec, []byte(`{"replaced":false}`)); err != nil || replay != nil {
		t.Fatalf("record: %q %v", replay, err)
	}
	crashed("a recorded answer", func(d *DB) {
		if ans, found, err := d.RegionKeyAnswer(rec); err != nil || !found || string(ans) != `{"replaced":false}` {
			t.Errorf("recorded answer after a crash: %q %v %v", ans, found, err)
		}
	})
}
