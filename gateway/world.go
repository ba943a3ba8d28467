package gateway

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/money"
	"medgate/ledger"
)

// World is a world directory (api.md, "Starting it"): what regions and
// operators would otherwise send through the API, loaded at start.
type World struct {
	Principals []PrincipalRecord
	Hospitals  []ledger.Hospital
	Catalogs   map[string][]ledger.CatalogEntry
	Persons    []ledger.Person
	Policies   []PolicyFile

	// balanceLines is, for each person whose line gives an
	// account_balance (by region and id), the line it is on.
	balanceLines map[[2]string]int
}

// PolicyFile is policies/<region>/<version>.{wasm,json}.
type PolicyFile struct {
	Region, Version string
	EffectiveFrom   abi.Date
	Wasm            []byte // nil when the module file was not found
	Source          string // where the bytes came from
}

// ReadWorld reads a world from fsys. A policy's .wasm is looked up next to
// its .json first, then in each of moduleDirs as <region>/<version>.wasm
// (the reference world's modules are built by make into build/policies).
// Any malformed file is an error naming the file and line.
func ReadWorld(fsys fs.FS, moduleDirs ...fs.FS) (*World, error) {
	w := &World{Catalogs: map[string][]ledger.CatalogEntry{}}
	if b, err := fs.ReadFile(fsys, "principals.json"); err == nil {
		if err := strictJSON(b, &w.Principals); err != nil {
			return nil, fmt.Errorf("world: principals.json: %w", withLine(b, err, "principals list"))
		}
		if _, err := NewPrincipals(w.Principals); err != nil {
			return nil, fmt.Errorf("world: principals.json: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if b, err := fs.ReadFile(fsys, "hospitals.json"); err == nil {
		var recs []HospitalRecord
		if err := strictJSON(b, &recs); err != nil {
			return nil, fmt.Errorf("world: hospitals.json: %w", withLine(b, err, "hospitals list"))
		}
		seen := map[string]int{}
		for i, r := range recs {
			h, err := r.Hospital()
			if err != nil {
				return nil, fmt.Errorf("world: hospitals.json[%d]: %w", i, err)
			}
			if prev, dup := seen[h.ID]; dup {
				return nil, fmt.Errorf("world: hospitals.json[%d]: hospital %s is also hospitals.json[%d]", i, h.ID, prev)
			}
			seen[h.ID] = i
			w.Hospitals = append(w.Hospitals, h)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// A key twice in one file is refused, as the regions' API refuses it:
	// only the last line would count, silently.
	codes := map[string]map[string]int{}
	if _, err := fs.Stat(fsys, "hospitals.json"); err == nil {
		// A hospital's token without its hospital would be refused on
		// every call (403): the operator forgot a hospitals.json row.
		ids := make(map[string]bool, len(w.Hospitals))
		for _, h := range w.Hospitals {
			ids[h.ID] = true
		}
		for i, p := range w.Principals {
			if p.Role == RoleHospital && !ids[p.ID] {
				return nil, fmt.Errorf("world: principals.json: principals[%d] is hospital %s, which hospitals.json does not list", i, p.ID)
			}
		}
	}
	err := eachNDJSON(fsys, "catalogs", func(region string, n int, line []byte) error {
		e, err := ParseCatalogEntry(line)
		if err != nil {
			return err
		}
		if err := once(codes, region, e.Code, n, "code"); err != nil {
			return err
		}
		w.Catalogs[region] = append(w.Catalogs[region], e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := map[string]map[string]int{}
	err = eachNDJSON(fsys, "persons", func(region string, n int, line []byte) error {
		p, gives, err := parsePerson(region, line)
		if err != nil {
			return err
		}
		if err := once(ids, region, p.ID, n, "person"); err != nil {
			return err
		}
		if gives {
			if w.balanceLines == nil {
				w.balanceLines = map[[2]string]int{}
			}
			w.balanceLines[[2]string{region, p.ID}] = n
		}
		w.Persons = append(w.Persons, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A module without its .json (its effective date) would never load,
	// and nothing would say so.
	modules, _ := fs.Glob(fsys, "policies/*/*.wasm")
	for _, m := range modules {
		meta := strings.TrimSuffix(m, ".wasm") + ".json"
		if _, err := fs.Stat(fsys, meta); err != nil {
			return nil, fmt.Errorf("world: %s: no %s next to it (its effective_from): %w", m, path.Base(meta), err)
		}
	}
	metas, _ := fs.Glob(fsys, "policies/*/*.json")
	for _, meta := range metas {
		region := path.Base(path.Dir(meta))
		version := strings.TrimSuffix(path.Base(meta), ".json")
		b, err := fs.ReadFile(fsys, meta)
		if err != nil {
			return nil, err
		}
		var m struct {
			EffectiveFrom string `json:"effective_from"`
		}
		if err := strictJSON(b, &m); err != nil {
			return nil, fmt.Errorf("world: %s: %w", meta, withLine(b, err, "policy version file"))
		}
		if !validVersion(version) {
			return nil, fmt.Errorf("world: %s: the version name %q is not 1 to 32 of A-Z a-z 0-9 . _ -", meta, version)
		}
		d, ok := ParseDate([]byte(m.EffectiveFrom))
		if !ok || !isRegion(region) {
			return nil, fmt.Errorf("world: %s: effective_from %q is not a date, or %q is not a region code", meta, m.EffectiveFrom, region)
		}
		pf := PolicyFile{Region: region, Version: version, EffectiveFrom: d}
		wasmName := strings.TrimSuffix(meta, ".json") + ".wasm"
		if b, err := fs.ReadFile(fsys, wasmName); err == nil {
			pf.Wasm, pf.Source = b, wasmName
		} else {
			for _, dir := range moduleDirs {
				if b, err := fs.ReadFile(dir, region+"/"+version+".wasm"); err == nil {
					pf.Wasm, pf.Source = b, "module dir: "+region+"/"+version+".wasm"
					break
				}
			}
		}
		w.Policies = append(w.Policies, pf)
	}
	return w, nil
}

// warnUnserved logs the world's hospitals whose treating region has no
// catalog to settle with and its persons files of regions with no policy
// version: every bill of theirs is refused (422 no_catalog, no_policy),
// and a start that only said "world loaded" left the operator to learn it
// from the hospitals. A region may upload either through the API later,
// so the start goes on.
func (w *World) warnUnserved(db *ledger.DB, policies *engine.Policies, log zerolog.Logger) {
	for _, h := range w.Hospitals {
		if _, ok := catalogFor(db, h.Region); !ok {
			chain, n := catalogChain(h.Region)
			log.Warn().Str("hospital", h.ID).Str("region", h.Region).
				Msgf("world: hospitals.json: hospital %s's treating region %s has no catalog, nor has its prefecture or province (looked up: %s): its every bill is refused (422 no_catalog) until one is uploaded",
					h.ID, h.Region, strings.Join(chain[:n], ", "))
		}
	}
	counted := map[string]int{}
	var regions []string
	for _, p := range w.Persons {
		if counted[p.Region] == 0 {
			regions = append(regions, p.Region)
		}
		counted[p.Region]++
	}
	sort.Strings(regions)
	for _, r := range regions {
		if len(policies.Versions(r)) == 0 {
			log.Warn().Str("region", r).Int("persons", counted[r]).
				Msgf("world: persons/%s.ndjson: region %s has no policy version, neither in the world nor uploaded: the bills of its %d person(s) are refused (422 no_policy) until its region uploads one",
					r, r, counted[r])
		}
	}
}

// unlistedHospitalPrincipals is the indexes of the hospital principals
// whose hospital the world does not list: only possible without a
// hospitals.json (ReadWorld refuses them with one), their hospitals must
// then be in the ledger from an earlier world.
func (w *World) unlistedHospitalPrincipals() []int {
	ids := make(map[string]bool, len(w.Hospitals))
	for _, h := range w.Hospitals {
		ids[h.ID] = true
	}
	var unlisted []int
	for i, p := range w.Principals {
		if p.Role == RoleHospital && !ids[p.ID] {
			unlisted = append(unlisted, i)
		}
	}
	return unlisted
}

// unlistedHospitalError refuses principals[i], a hospital neither the
// world nor the ledger has.
func (w *World) unlistedHospitalError(i int) error {
	return fmt.Errorf("world: principals.json: principals[%d] is hospital %s, which neither hospitals.json (there is none) nor the ledger lists: its every call would be refused (403)", i, w.Principals[i].ID)
}

// once records key as seen on line n of region's file in seen, or returns
// an error naming the line it was seen on first.
func once(seen map[string]map[string]int, region, key string, n int, what string) error {
	keys := seen[region]
	if keys == nil {
		keys = map[string]int{}
		seen[region] = keys
	}
	if prev, dup := keys[key]; dup {
		return fmt.Errorf("%s %s is also on line %d", what, key, prev)
	}
	keys[key] = n
	return nil
}

// withLine is strictJSON's error err for b, the what of a world file, in
// the words a region's line gets (the value as written and the JSON it
// must be, not encoding/json's Go types), prefixed with its line when it
// is a JSON syntax or type error.
func withLine(b []byte, err error, what string) error {
	var off int64
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		off = syntax.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	default:
		return lineJSONError(err, b, what)
	}
	// The offset is just past the byte at fault.
	off = min(max(off-1, 0), int64(len(b)))
	return fmt.Errorf("line %d: %w", 1+bytes.Count(b[:off], []byte("\n")), lineJSONError(err, b, what))
}

// strictJSON decodes one JSON value from b into v, refusing unknown fields,
// anything after the value, and a key given twice in one object (a
// *duplicateKeyError): encoding/json lets the last one win, and parsers
// differ on that, so the sender and the gateway could read different
// requests (as request_dup.go refuses for settlements). Text that is not
// UTF-8 is refused too: encoding/json turns each bad byte into U+FFFD, so
// two ids, credit references or codes in another encoding (GBK: 张三 and
// 李四 are four bytes each, none of them UTF-8) read as the same string,
// and one person's line updated another (the hospital lexer refuses them).
func strictJSON(b []byte, v any) error {
	if !utf8.Valid(b) {
		at := invalidUTF8At(b)
		return &notUTF8Error{field: valuePath(b, int64(at)+1, ""), at: at}
	}
	if at := loneSurrogateAt(b); at >= 0 {
		return &notUTF8Error{field: valuePath(b, int64(at)+1, ""), at: at, surrogate: true}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the JSON value at byte %d", dec.InputOffset())
	}
	return checkDuplicateKeys(b)
}

// invalidUTF8At is the offset of b's first byte that is not UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// notUTF8Error is text strictJSON refused at byte at: not UTF-8, or an
// escaped UTF-16 surrogate not in a pair; field is the value it is in, if
// any.
type notUTF8Error struct {
	field     string
	at        int
	surrogate bool
}

func (e *notUTF8Error) Error() string {
	what := "the text"
	if e.field != "" {
		what = e.field
	}
	if e.surrogate {
		return fmt.Sprintf("%s has a \\u escape that is half of a UTF-16 surrogate pair (byte %d)", what, e.at)
	}
	return fmt.Sprintf("%s is not UTF-8 (byte %d; JSON text is UTF-8: convert it from its encoding, e.g. GBK, first)", what, e.at)
}

// loneSurrogateAt is the offset of the first \u escape of b that is a
// surrogate not paired as UTF-16 pairs them, or -1: encoding/json reads it
// as U+FFFD, as it does a byte that is not UTF-8. A backslash is only ever
// inside a string in valid JSON, so no string tracking is needed (invalid
// JSON is refused either way).
func loneSurrogateAt(b []byte) int {
	hex4 := func(i int) rune {
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return -1
		}
		v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		if err != nil {
			return -1
		}
		return rune(v)
	}
	for i := bytes.IndexByte(b, '\\'); i >= 0 && i < len(b); {
		r := hex4(i)
		switch {
		case r < 0:
			i += 2 // another escape: skip its character
		case utf16.IsSurrogate(r):
			if r >= 0xdc00 || !utf16.IsSurrogate(hex4(i+6)) || hex4(i+6) < 0xdc00 {
				return i
			}
			i += 12
		default:
			i += 6
		}
		if i < len(b) {
			if j := bytes.IndexByte(b[i:], '\\'); j >= 0 {
				i += j
				continue
			}
		}
		break
	}
	return -1
}

// duplicateKeyError names a key given twice in one object, by its path
// (e.g. settlements[2].amount).
type duplicateKeyError struct{ path string }

func (e *duplicateKeyError) Error() string { return e.path + " appears twice" }

// checkDuplicateKeys walks the tokens of the valid JSON value b and
// returns a *duplicateKeyError for the first key repeated in an object.
func checkDuplicateKeys(b []byte) error {
	return walkJSON(b, func(f *jsonFrame, key string) error {
		// encoding/json matches a key to a field ignoring case, so
		// "amount" and "AMOUNT" are the same field given twice.
		folded := foldKey(key)
		if f.keys == nil {
			f.keys = map[string]bool{}
		}
		if f.keys[folded] {
			return &duplicateKeyError{path: f.path(key)}
		}
		f.keys[folded] = true
		return nil
	}, nil)
}

// jsonFrame is an object or array walkJSON is in. Frames point to their
// parent and a path is built only when asked for, so memory stays linear
// in the nesting (encoding/json allows 10,000 levels, e.g. inside a
// json.RawMessage).
type jsonFrame struct {
	parent *jsonFrame
	name   string // the key this value has in its parent object
	at     int    // or its index in its parent array
	object bool
	keys   map[string]bool // checkDuplicateKeys' folded keys
	index  int             // arrays: the next element's index
	key    bool            // objects: the next string token is a key
}

// path is the path of f's member last ("" for f itself), e.g.
// settlements[2].amount.
func (f *jsonFrame) path(last string) string {
	var parts []string
	if last != "" {
		parts = append(parts, "."+last)
	}
	for ; f != nil && f.parent != nil; f = f.parent {
		if f.parent.object {
			parts = append(parts, "."+f.name)
		} else {
			parts = append(parts, "["+strconv.Itoa(f.at)+"]")
		}
	}
	var sb strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		sb.WriteString(parts[i])
	}
	return strings.TrimPrefix(sb.String(), ".")
}

// member is the path of the value f is about to read: under key in an
// object, at the next index in an array.
func (f *jsonFrame) member(key string) string {
	if f == nil {
		return ""
	}
	if f.object {
		return f.path(key)
	}
	return f.path("") + "[" + strconv.Itoa(f.index) + "]"
}

// walkJSON walks the tokens of the valid JSON value b: onKey sees every
// object key with its object, onValue (if not nil) every value's first
// token, with the frame it is in, its key there and the input offset just
// past that token. The first error either returns ends the walk.
func walkJSON(b []byte, onKey func(f *jsonFrame, key string) error, onValue func(f *jsonFrame, key string, end int64) error) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var top *jsonFrame
	var key string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			top = top.parent
			if top != nil {
				if top.object {
					top.key = true
				} else {
					top.index++
				}
			}
			continue
		}
		if top != nil && top.object && top.key {
			key = tok.(string)
			if err := onKey(top, key); err != nil {
				return err
			}
			top.key = false
			continue
		}
		// A value: in an object under key, in an array at its index.
		if onValue != nil {
			if err := onValue(top, key, dec.InputOffset()); err != nil {
				return err
			}
		}
		if d, ok := tok.(json.Delim); ok {
			f := &jsonFrame{parent: top, object: d == '{', key: d == '{'}
			if top != nil {
				f.name, f.at = key, top.index
			}
			top = f
			continue
		}
		if top != nil {
			if top.object {
				top.key = true
			} else {
				top.index++
			}
		}
	}
}

// errFound ends a walkJSON that found what it looked for.
var errFound = errors.New("found")

// keyPath is the path of the first key named key in b, or key itself.
func keyPath(b []byte, key string) string {
	p := key
	walkJSON(b, func(f *jsonFrame, k string) error {
		if k == key {
			p = f.path(k)
			return errFound
		}
		return nil
	}, nil)
	return p
}

// valuePath is the path of the value b holds at input offset off (that
// of an encoding/json UnmarshalTypeError), or def.
func valuePath(b []byte, off int64, def string) string {
	p := def
	walkJSON(b, func(*jsonFrame, string) error { return nil }, func(f *jsonFrame, key string, end int64) error {
		if end >= off {
			p = f.member(key)
			return errFound
		}
		return nil
	})
	return p
}

// foldKey folds key the way encoding/json's field matching does (Unicode
// simple case folding: "ſ" and "s", "K" (Kelvin) and "k" are the same).
func foldKey(key string) string {
	return strings.Map(func(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }, key)
}

// bodyJSONError is the answer to a body strictJSON refused. A field to
// blame is named (api.md), as a settlement's decoder does: one of the wrong
// type, or one the body may not have.
func bodyJSONError(err error, body []byte, what string) error {
	var dup *duplicateKeyError
	if errors.As(err, &dup) {
		return badRequest("duplicate_field", dup.path, "%s appears twice in the %s", dup.path, what)
	}
	var nu *notUTF8Error
	if errors.As(err, &nu) && nu.field != "" {
		return invalid(nu.field, "%v", err)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field == "" {
		// The whole value is of the wrong type (an array for an
		// object): encoding/json's words name the gateway's Go type.
		return badRequest("malformed_json", "", "the %s must be %s, not %s", what, jsonKind(typ.Type), typ.Value)
	}
	if errors.As(err, &typ) && typ.Field != "" {
		// encoding/json names the field without array indexes
		// (settlements.total): the path is read from the body.
		field := valuePath(body, typ.Offset, typ.Field)
		return invalid(field, "%s must be %s, not %s", field, jsonKind(typ.Type), typ.Value)
	}
	// encoding/json has no error type for it, only this message.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if key, err := strconv.Unquote(name); err == nil {
			field := keyPath(body, key)
			return badRequest("unknown_field", field, "unknown field %q in the %s", field, what)
		}
	}
	return badRequest("malformed_json", "", "the %s is not valid JSON: %v", what, err)
}

// jsonKind names the JSON value that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a JSON string"
	case reflect.Bool:
		return "a JSON boolean"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	default:
		return "a JSON number"
	}
}

// utf8BOM is the byte order mark some tools put at the start of a UTF-8 file.
var utf8BOM = []byte("\ufeff")

// eachNDJSON calls fn for every non-empty line of dir/<region>.ndjson.
func eachNDJSON(fsys fs.FS, dir string, fn func(region string, n int, line []byte) error) error {
	names, _ := fs.Glob(fsys, dir+"/*.ndjson")
	sort.Strings(names)
	for _, name := range names {
		region := strings.TrimSuffix(path.Base(name), ".ndjson")
		if !isRegion(region) {
			return fmt.Errorf("world: %s: the file name is not a 6-digit region code", name)
		}
		f, err := fsys.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		n := 0
		for sc.Scan() {
			n++
			line := sc.Bytes()
			if n == 1 {
				line = bytes.TrimPrefix(line, utf8BOM) // as eachLine
			}
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if err := fn(region, n, line); err != nil {
				f.Close()
				return fmt.Errorf("world: %s line %d: %w", name, n, err)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			// The line the scanner stopped at (e.g. one past its limit).
			return fmt.Errorf("world: %s line %d: %w", name, n+1, err)
		}
	}
	return nil
}

// ApplyRegistry writes the world's hospitals, catalogs and persons into db.
// A region's catalog file upserts the codes whose lines changed and its
// persons file the persons whose lines changed, but only when the file
// differs from the one last applied (ledger.Applied keeps a digest of
// each file and line): a restart with the same world writes nothing
// (api.md), and what regions changed since through the API (catalog
// codes, persons' registration or groups) stays unless its line changed.
// Hospitals have no API: they are written every time.
func (w *World) ApplyRegistry(db *ledger.DB) error {
	return w.ApplyRegistryLogging(db, zerolog.Nop())
}

// ApplyRegistryLogging is ApplyRegistry, logging to log what the world
// says that was not applied.
func (w *World) ApplyRegistryLogging(db *ledger.DB, log zerolog.Logger) error {
	if err := db.PutHospitals(w.Hospitals); err != nil {
		return fmt.Errorf("world: hospitals: %w", err)
	}
	regions := make([]string, 0, len(w.Catalogs))
	for r := range w.Catalogs {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	for _, r := range regions {
		entries := w.Catalogs[r]
		h := sha256.New()
		lines := map[string]hash.Hash{} // each code's lines
		for i := range entries {
			e := &entries[i]
			fmt.Fprintf(h, "%q %d %d %d %t\n", e.Code, e.Class, e.SelfpayProp, e.PriceCap, e.HasPriceCap)
			ch := lines[e.Code]
			if ch == nil {
				ch = sha256.New()
				lines[e.Code] = ch
			}
			fmt.Fprintf(ch, "%d %d %d %t\n", e.Class, e.SelfpayProp, e.PriceCap, e.HasPriceCap)
		}
		if err := applyOnce(db, "catalog/"+r, h, func() error {
			// Upserted like the persons: only the codes whose lines
			// changed, so that what the region changed through the API
			// since stays; the whole file where the region has no catalog
			// of its own (any more), which a few codes would not replace.
			cat, own := db.Catalog(r)
			prefix := "code/" + r + "/"
			changed, err := changedLines(db, prefix, lines, !own)
			if err != nil {
				return err
			}
			// Codes a world file put in the catalog and no longer has
			// stay (upserted), and the fund goes on paying for them: an
			// operator who deleted a line to delist its code must be
			// told.
			var gone []string
			if own {
				for _, e := range cat.Entries() {
					if _, ok := lines[e.Code]; ok {
						continue
					}
					if _, fromWorld, err := db.Applied(prefix + e.Code); err != nil {
						return err
					} else if fromWorld {
						gone = append(gone, e.Code)
					}
				}
			}
			if len(gone) > 0 {
				shown := gone[:min(len(gone), 20)]
				log.Warn().Str("file", "catalogs/"+r+".ndjson").Int("codes", len(gone)).Strs("first_codes", shown).
					Msgf("world: catalogs/%s.ndjson no longer has %d code(s) it put in region %s's catalog (%s): they stay in the catalog, as the world is upserted, and are settled as their class says; remove them through the API (PUT /v1/regions/%s/catalog without them, or a POST making each class C)",
						r, len(gone), r, strings.Join(shown, ", "), r)
			}
			var todo []ledger.CatalogEntry
			for i := range entries {
				if _, ok := changed[prefix+entries[i].Code]; ok {
					todo = append(todo, entries[i])
				}
			}
			if err := db.PutCatalog(r, todo, false); err != nil {
				return err
			}
			return db.SetAppliedAll(changed)
		}); err != nil {
			return fmt.Errorf("world: catalog %s: %w", r, err)
		}
	}
	byRegion := map[string][]ledger.Person{}
	for _, p := range w.Persons {
		byRegion[p.Region] = append(byRegion[p.Region], p)
	}
	regions = regions[:0]
	for r := range byRegion {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	for _, r := range regions {
		ps := byRegion[r]
		h := sha256.New()
		lines := map[string]hash.Hash{} // each person's lines
		for i := range ps {
			fmt.Fprintf(h, "%q ", ps[i].ID)
			personDigest(h, &ps[i])
			ph := lines[ps[i].ID]
			if ph == nil {
				ph = sha256.New()
				lines[ps[i].ID] = ph
			}
			personDigest(ph, &ps[i])
		}
		if err := applyOnce(db, "persons/"+r, h, func() error {
			// A file that changed is applied for the persons whose lines
			// changed only: the others may have been changed through the
			// API since, and their unchanged lines must not undo that.
			prefix := "person/" + r + "/"
			changed, err := changedLines(db, prefix, lines, false)
			if err != nil {
				return err
			}
			var todo []ledger.Person
			for i := range ps {
				if _, ok := changed[prefix+ps[i].ID]; ok {
					todo = append(todo, ps[i])
				}
			}
			ws, err := db.UpsertPersons(todo)
			if err != nil {
				return err
			}
			// As a region's upsert answers balance_not_applied: an
			// operator who edited a known person's balance must not take
			// it as applied (and then credit the difference again).
			for i, pw := range ws {
				n, gives := w.balanceLines[[2]string{r, todo[i].ID}]
				if gives && !pw.Created && pw.Opening != todo[i].OpeningBalance {
					log.Warn().Str("file", "persons/"+r+".ndjson").Int("line", n).Str("person", todo[i].ID).
						Str("account_balance", money.FormatFen(todo[i].OpeningBalance)).Str("opening_balance", money.FormatFen(pw.Opening)).
						Msgf("world: persons/%s.ndjson line %d: account_balance %s of person %s not applied: it is the opening balance of a new person only, and %s was recorded when the person was created; a later credit is its own operation", r, n, money.FormatFen(todo[i].OpeningBalance), todo[i].ID, money.FormatFen(pw.Opening))
				}
			}
			return db.SetAppliedAll(changed)
		}); err != nil {
			return fmt.Errorf("world: persons %s: %w", r, err)
		}
	}
	return nil
}

// personDigest writes what p's world line says to a line digest. %+v
// prints a list's strings joined by spaces, so that conditions
// ["hypertension diabetes"] and ["hypertension", "diabetes"] printed the
// same and an operator's correction of the one to the other was never
// applied. The lists are written again quoted where a string could be
// read so, and only there: every digest a ledger recorded before stays
// the same, so that an upgrade does not apply every person line again
// over what regions changed through the API.
func personDigest(w io.Writer, p *ledger.Person) {
	fmt.Fprintf(w, "%d %+v\n", p.OpeningBalance, p.Facts)
	for _, list := range [2][]string{p.Facts.Groups, p.Facts.Conditions} {
		for _, s := range list {
			if strings.ContainsAny(s, " []{}") || hasControl(s) {
				fmt.Fprintf(w, "%q %q\n", p.Facts.Groups, p.Facts.Conditions)
				return
			}
		}
	}
}

// changedLines returns, under prefix+key, the digest of each key's lines
// whose digest differs from the one recorded under that name (all of them
// when all is set): the records a changed world file must apply again.
func changedLines(db *ledger.DB, prefix string, lines map[string]hash.Hash, all bool) (map[string][32]byte, error) {
	changed := map[string][32]byte{}
	for key, h := range lines {
		var digest [32]byte
		h.Sum(digest[:0])
		name := prefix + key
		if last, ok, err := db.Applied(name); err != nil {
			return nil, err
		} else if all || !ok || last != digest {
			changed[name] = digest
		}
	}
	return changed, nil
}

// applyOnce runs apply unless the digest in h is the one recorded under
// name, and records it after apply succeeded. A crash in between only
// applies the same records again at the next start.
func applyOnce(db *ledger.DB, name string, h hash.Hash, apply func() error) error {
	var digest [32]byte
	h.Sum(digest[:0])
	if last, ok, err := db.Applied(name); err != nil {
		return err
	} else if ok && last == digest {
		return nil
	}
	if err := apply(); err != nil {
		return err
	}
	return db.SetApplied(name, digest)
}
