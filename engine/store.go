package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"medgate/engine/abi"
)

// State is a policy version's lifecycle state as recorded in the Store.
type State string

const (
	StateActive    State = "active"    // in the schedule: in force from its effective date
	StateWithdrawn State = "withdrawn" // rolled back: never applies again
)

// Record is a stored policy version.
type Record struct {
	Region        string    `json:"region"`
	Version       string    `json:"version"`
	EffectiveFrom abi.Date  `json:"effective_from"`
	SHA256        string    `json:"sha256"`
	State         State     `json:"state"`
	Source        string    `json:"source"` // "world" or "upload"
	RecordedAt    time.Time `json:"recorded_at"`
	WithdrawnAt   time.Time `json:"withdrawn_at,omitzero"`
	// CasesSHA256 is the sha256 of an upload's example cases as parsed and
	// encoded again (their content, whatever the spacing and key order), so
	// that only the same upload is answered as a retry; "" for a world
	// version and for uploads recorded before it was kept.
	CasesSHA256 string `json:"cases_sha256,omitempty"`
}

// Store keeps every module ever loaded, by the sha256 of its bytes (so any
// ledger entry can be replayed with the module that produced it, even after
// its version was withdrawn), and each region's version records. It is a
// directory of files written atomically and synced before a method returns:
//
//	modules/<sha256>.wasm
//	versions/<region>.json   (the region's records, by effective date)
//
// It is safe for concurrent use.
type Store struct {
	dir string
	mu  sync.Mutex // serializes writers of versions/
}

// OpenStore opens (creating) a store in dir.
func OpenStore(dir string) (*Store, error) {
	for _, sub := range []string{"modules", "versions"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("engine: store: %w", err)
		}
	}
	// The directories' names are durable only once their parents are
	// synced: without it, a power cut after a new ledger's first upload
	// could take modules/ and versions/ away with the upload answered
	// (gateway/killtest TestPowerLossKeepsAnUpload).
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := syncDir(d); err != nil {
			return nil, fmt.Errorf("engine: store: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// PutModule stores wasm and returns its sha256 in hex. A stored file of
// that name whose bytes are not wasm's (damaged or replaced on disk) is
// written over.
func (s *Store) PutModule(wasm []byte) (string, error) {
	sum := sha256.Sum256(wasm)
	name := hex.EncodeToString(sum[:])
	path := filepath.Join(s.dir, "modules", name+".wasm")
	if b, err := os.ReadFile(path); err == nil && sha256.Sum256(b) == sum {
		// Found, but perhaps left by a write that stopped before its
		// syncs (a crash of the process keeps the page cache): sync it
		// and its name before it is relied on.
		return name, syncFileAndDir(path)
	}
	return name, writeFileSync(path, wasm)
}

// ErrModuleDamaged is a stored module file whose bytes do not have the
// sha256 it is stored under.
var ErrModuleDamaged = errors.New("engine: store: module file damaged")

// Module returns the stored module with sha256 sum (hex). Its bytes are
// checked against sum: the ledger names a module by that hash, so bytes
// that are not the module's (a file replaced or altered on disk) are an
// error wrapping ErrModuleDamaged, never run in its place.
func (s *Store) Module(sum string) ([]byte, error) {
	want, err := hex.DecodeString(sum)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("engine: store: %q is not a sha256", sum)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "modules", sum+".wasm"))
	if err != nil {
		return nil, fmt.Errorf("engine: store: module %s: %w", sum, err)
	}
	if got := sha256.Sum256(b); string(got[:]) != string(want) {
		return nil, fmt.Errorf("%w: modules/%s.wasm holds %d bytes whose sha256 is %x", ErrModuleDamaged, sum, len(b), got)
	}
	return b, nil
}

// Versions returns region's records by effective date.
func (s *Store) Versions(region string) ([]Record, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "versions", region+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []Record
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("engine: store: versions of %s: %w", region, err)
	}
	for i := range recs {
		if err := recs[i].check(region); err != nil {
			return nil, fmt.Errorf("engine: store: versions of %s: record %d: %w", region, i, err)
		}
	}
	return recs, nil
}

// check refuses a record no writer writes: one damaged on disk while still
// JSON (a byte of a state, a region or a date changed) must make the
// region's records unreadable, not skip a version or move it elsewhere.
func (r *Record) check(region string) error {
	switch {
	case r.Region != region:
		return fmt.Errorf("region %q in the file of %s", r.Region, region)
	case r.Version == "" || len(r.Version) > 32:
		return fmt.Errorf("version %q", r.Version)
	case !validDate(r.EffectiveFrom):
		return fmt.Errorf("version %s: effective_from %d is not a date", r.Version, r.EffectiveFrom)
	case len(r.SHA256) != 2*sha256.Size || strings.ToLower(r.SHA256) != r.SHA256:
		return fmt.Errorf("version %s: sha256 %q", r.Version, r.SHA256)
	case r.State != StateActive && r.State != StateWithdrawn:
		return fmt.Errorf("version %s: state %q", r.Version, r.State)
	case r.Source != "world" && r.Source != "upload":
		return fmt.Errorf("version %s: source %q", r.Version, r.Source)
	}
	if _, err := hex.DecodeString(r.SHA256); err != nil {
		return fmt.Errorf("version %s: sha256 %q", r.Version, r.SHA256)
	}
	return nil
}

// validDate: a real calendar day of years 1–9999.
func validDate(d abi.Date) bool {
	y, m, day := int(d.Year()), time.Month(d.Month()), int(d.Day())
	if y < 1 || y > 9999 || m < 1 || m > 12 || day < 1 {
		return false
	}
	return time.Date(y, m, day, 0, 0, 0, 0, time.UTC).Day() == day
}

// Regions lists the regions with version records.
func (s *Store) Regions() ([]string, error) {
	names, err := filepath.Glob(filepath.Join(s.dir, "versions", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		out = append(out, filepath.Base(n[:len(n)-len(".json")]))
	}
	slices.Sort(out)
	return out, nil
}

// Update changes region's records with fn under the store's lock and
// writes them back synced.
func (s *Store) Update(region string, fn func([]Record) ([]Record, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.Versions(region)
	if err != nil {
		return err
	}
	if recs, err = fn(recs); err != nil {
		return err
	}
	slices.SortStableFunc(recs, func(a, b Record) int { return int(a.EffectiveFrom) - int(b.EffectiveFrom) })
	b, err := json.MarshalIndent(recs, "", " ")
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(s.dir, "versions", region+".json"), b)
}

// writeFileSync writes path atomically: a synced temporary file renamed over
// it, then the directory synced, so a crash leaves the old or the new file.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncFileAndDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes the names in directory path durable.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
