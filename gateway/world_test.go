package gateway

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/testdata"
)

// TestWorldFilesValidated: a world file an operator got wrong stops the
// start with an error naming the file and the line (or entry), instead of
// being half applied: a key twice (which the regions' API refuses, and of
// which only the last would silently count), a JSON syntax or type error, a
// principal whose id cannot be what its role names, a policy version name
// the upload API would refuse.
func TestWorldFilesValidated(t *testing.T) {
	ref, err := fs.Sub(testdata.World, "world")
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := fs.ReadFile(ref, name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if _, err := ReadWorld(ref); err != nil {
		t.Fatalf("the reference world: %v", err)
	}
	person := `{"id": "P1", "scheme": "employee", "employment": "active", "registration": "long_term", "account_balance": "0.00", "enrolled_on": "2010-01-01"}`
	hospitals := read("hospitals.json")
	principals := read("principals.json")
	for _, tt := range []struct {
		name  string
		files fstest.MapFS
		want  []string // each in the error
	}{
		{"person twice", fstest.MapFS{"persons/371600.ndjson": {Data: []byte(person + "\n" + strings.Replace(person, "0.00", "900.00", 1) + "\n")}},
			[]string{"persons/371600.ndjson", "line 2", "line 1"}},
		{"catalog code twice", fstest.MapFS{"catalogs/371600.ndjson": {Data: []byte(`{"code": "XA01", "class": "A"}` + "\n\n" + `{"code": "XA01", "class": "C"}` + "\n")}},
			[]string{"catalogs/371600.ndjson", "line 3", "line 1"}},
		{"hospital twice", fstest.MapFS{"hospitals.json": {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}, {"id": "H1", "region": "110105", "level": 1}]`)}},
			[]string{"hospitals.json[1]", "H1", "hospitals.json[0]"}},
		{"hospitals syntax", fstest.MapFS{"hospitals.json": {Data: []byte(strings.Replace(hospitals, `"level": 3,`, `"level": 3`, 1))}},
			[]string{"hospitals.json", "line 6"}},
		{"hospitals type", fstest.MapFS{"hospitals.json": {Data: []byte(strings.Replace(hospitals, `"level": 3,`, `"level": "3",`, 1))}},
			[]string{"hospitals.json", "line 5"}},
		{"principals role", fstest.MapFS{"principals.json": {Data: []byte(strings.Replace(principals, `"role": "hospital"`, `"role": "hopsital"`, 1))}},
			[]string{"principals.json", "principals[0]", "hopsital"}},
		{"region principal id", fstest.MapFS{"principals.json": {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "region", "id": "37160"}]`)}},
			[]string{"principals.json", "principals[0]", "37160"}},
		{"hospital token without its hospital", fstest.MapFS{
			"hospitals.json":  {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}]`)},
			"principals.json": {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "hospital", "id": "H9"}]`)}},
			[]string{"principals.json", "principals[0]", "H9", "hospitals.json"}},
		{"module without its json", fstest.MapFS{"policies/371600/v2025.wasm": {Data: []byte("\x00asm")}},
			[]string{"policies/371600/v2025.wasm", "v2025.json"}},
		{"overlong line", fstest.MapFS{"catalogs/371600.ndjson": {Data: []byte(`{"code": "XA01", "class": "A"}` + "\n" + `{"code": "` + strings.Repeat("X", 2<<20) + `", "class": "A"}` + "\n")}},
			[]string{"catalogs/371600.ndjson", "line 2"}},
		{"policy version name", fstest.MapFS{"policies/371600/v 2025.json": {Data: []byte(`{"effective_from": "2025-01-01"}`)}},
			[]string{"policies/371600/v 2025.json", "version"}},
		// "." and ".." cannot be a URL path segment: never withdrawable.
		{"policy version ..", fstest.MapFS{"policies/371600/...json": {Data: []byte(`{"effective_from": "2025-01-01"}`)}},
			[]string{"policies/371600/...json", "version"}},
		{"policy version .", fstest.MapFS{"policies/371600/..json": {Data: []byte(`{"effective_from": "2025-01-01"}`)}},
			[]string{"policies/371600/..json", "version"}},
	} {
		_, err := ReadWorld(tt.files)
		if err == nil {
			t.Errorf("%s: the world was accepted", tt.name)
			continue
		}
		for _, want := range tt.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", tt.name, err, want)
			}
		}
	}
}

// versionsStore returns an engine and an empty policy store, closed with
// the test.
func versionsStore(t *testing.T) (*engine.Engine, *engine.Store) {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Config{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	store, err := engine.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return eng, store
}

// TestWorldVersionChangedIsLogged: a world policy version whose module or
// effective date changed since it was recorded (a rebuilt module, an edited
// .json) is applied, as the operator's world says, but not silently: an
// uploaded version is never changed under its name, and an operator reading
// the log after a restart must see that one was.
func TestWorldVersionChangedIsLogged(t *testing.T) {
	ctx := context.Background()
	eng, store := versionsStore(t)
	var logs syncBuffer
	load := func(basic int64, eff string) {
		w, err := ReadWorld(fstest.MapFS{
			"policies/371600/v1.json": {Data: []byte(`{"effective_from": "` + eff + `"}`)},
			"policies/371600/v1.wasm": {Data: answerModule(abi.Output{Basic: basic})},
		})
		if err != nil {
			t.Fatal(err)
		}
		NewVersions(eng, store, &engine.Policies{}, zerolog.New(&logs)).LoadWorld(ctx, w)
	}
	load(1, "2024-01-01")
	load(1, "2024-01-01")
	if strings.Contains(logs.String(), `"level":"warn"`) {
		t.Fatalf("an unchanged world version is reported as changed:\n%s", logs.String())
	}
	load(2, "2025-01-01")
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "2024-01-01") {
		t.Fatalf("a changed world version is not reported:\n%s", logs.String())
	}
}

// TestWorldVersionGoneStaysInForce: the world is upserted, so a version
// recorded from it stays in force, from its stored module, when a later
// start's world no longer has its files; a withdrawn one stays withdrawn.
func TestWorldVersionGoneStaysInForce(t *testing.T) {
	ctx := context.Background()
	eng, store := versionsStore(t)
	files := fstest.MapFS{
		"policies/371600/v1.json": {Data: []byte(`{"effective_from": "2023-01-01"}`)},
		"policies/371600/v1.wasm": {Data: answerModule(abi.Output{Basic: 1})},
		"policies/371600/v2.json": {Data: []byte(`{"effective_from": "2024-01-01"}`)},
		"policies/371600/v2.wasm": {Data: answerModule(abi.Output{Basic: 2})},
	}
	var logs syncBuffer
	start := func(fs fstest.MapFS) (*Versions, *engine.Policies) {
		w, err := ReadWorld(fs)
		if err != nil {
			t.Fatal(err)
		}
		pol := &engine.Policies{}
		v := NewVersions(eng, store, pol, zerolog.New(&logs))
		v.LoadWorld(ctx, w)
		if err := v.LoadStored(ctx); err != nil {
			t.Fatal(err)
		}
		return v, pol
	}
	inForce := func(pol *engine.Policies) string {
		ver, _ := pol.Lookup("371600", 20250601)
		return ver.Name
	}
	if _, pol := start(files); inForce(pol) != "v2" {
		t.Fatalf("first start: %q in force, want v2", inForce(pol))
	}
	if strings.Contains(logs.String(), "no longer in the world") {
		t.Fatalf("a version still in the world is reported gone:\n%s", logs.String())
	}
	without := fstest.MapFS{}
	for name, f := range files {
		if !strings.Contains(name, "/v2.") {
			without[name] = f
		}
	}
	v, pol := start(without)
	if inForce(pol) != "v2" {
		t.Fatalf("v2's files gone: %q in force, want v2 from its stored module", inForce(pol))
	}
	if !strings.Contains(logs.String(), "no longer in the world") {
		t.Fatalf("the version brought back from the store is not logged:\n%s", logs.String())
	}
	list, err := v.List("371600", 20250601)
	if err != nil {
		t.Fatal(err)
	}
	for _, vi := range list {
		if vi.Version == "v2" && vi.Status != "in_force" {
			t.Errorf("v2 listed %s, want in_force", vi.Status)
		}
	}
	if _, err := v.Withdraw("371600", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, pol := start(without); inForce(pol) != "v1" {
		t.Fatalf("v2 withdrawn, files gone: %q in force, want v1", inForce(pol))
	}
	if _, pol := start(files); inForce(pol) != "v1" {
		t.Fatalf("v2 withdrawn, files back: %q in force, want v1", inForce(pol))
	}
}
