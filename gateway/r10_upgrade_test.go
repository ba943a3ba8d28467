package gateway

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
)

// TestR10UpgradeSaysWhenAVersionOfADateChanges: gateways before commit
// 13b808a scheduled, of the versions of one effective date, the world's
// before the stored ones (the last applies), so a region's upload applied
// over a world version of its date added to the world after it; a start
// now orders them by their records (README "of two versions with the same
// effective date"), so after an upgrade the world version applies to those
// dates instead. That changes which policy settles a region's bills: the
// start must say so in its log, naming both versions, not switch silently.
func TestR10UpgradeSaysWhenAVersionOfADateChanges(t *testing.T) {
	ctx := context.Background()
	eng, store := versionsStore(t)
	// The region's upload u, recorded first (as an older gateway wrote it).
	up := answerModule(abi.Output{Basic: 1})
	sum, err := store.PutModule(up)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Update("371600", func(recs []engine.Record) ([]engine.Record, error) {
		return append(recs, engine.Record{Region: "371600", Version: "u", EffectiveFrom: 20240101, SHA256: sum,
			State: engine.StateActive, Source: "upload"}), nil
	}); err != nil {
		t.Fatal(err)
	}
	// The world then gains w, of the same date.
	w, err := ReadWorld(fstest.MapFS{
		"policies/371600/w.json": {Data: []byte(`{"effective_from": "2024-01-01"}`)},
		"policies/371600/w.wasm": {Data: answerModule(abi.Output{Basic: 2})},
	})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	pol := &engine.Policies{}
	v := NewVersions(eng, store, pol, zerolog.New(&log))
	v.LoadWorld(ctx, w)
	if err := v.LoadStored(ctx); err != nil {
		t.Fatal(err)
	}
	ver, _ := pol.Lookup("371600", 20250601)
	if ver.Name != "w" {
		t.Fatalf("%s in force, want w (recorded after u)", ver.Name)
	}
	var said string
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, `"version":"w"`) && strings.Contains(line, `"over":"u"`) && strings.Contains(line, `"level":"warn"`) {
			said = line
		}
	}
	if said == "" {
		t.Fatalf("no warning that w now applies over u for their date; log:\n%s", log.String())
	}
}
