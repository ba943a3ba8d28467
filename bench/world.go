package bench

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WorldConfig says how to make a bench world from the reference world.
type WorldConfig struct {
	// Source is the reference world directory (testdata/world).
	Source string
	// Dir is where the bench world is written (created; existing files of
	// the same names are replaced).
	Dir string
	// PersonsPerRegion generated persons are added to each insured region
	// that has a persons file in Source. Default 20,000.
	PersonsPerRegion int
	// Seed makes the world reproducible.
	Seed uint64
}

// World is a generated bench world: what the traffic generator needs to
// know about it (the gateway reads the files in Dir).
type World struct {
	Dir       string
	Hospitals []Hospital
	// Persons by insured region; Regions lists the keys in order.
	Persons map[string][]Person
	Regions []string
}

// Hospital is a hospital of the world with its bearer token and the codes
// of its treating region's catalog (after the prefecture/province
// fallback of policies.md §1), from which its bills are drawn.
type Hospital struct {
	ID, Region, Token string
	Level             int
	Codes             []string
}

// Person is what the traffic generator needs to know of an insured person
// to send only requests that are valid and plausible for them.
type Person struct {
	ID         string
	Resident   bool // scheme resident (else employee)
	Conditions bool // has a chronic condition (chronic and two_disease visits)
	Account    bool // has a personal-account balance
}

// personRecord is one line of persons/<region>.ndjson (api.md).
type personRecord struct {
	ID                   string   `json:"id"`
	Scheme               string   `json:"scheme"`
	Employment           string   `json:"employment"`
	Groups               []string `json:"groups"`
	Conditions           []string `json:"conditions"`
	Registration         string   `json:"registration"`
	AccountBalance       string   `json:"account_balance"`
	EnrolledOn           string   `json:"enrolled_on"`
	InConcentratedPeriod bool     `json:"in_concentrated_period"`
	LapsedYears          int      `json:"lapsed_years"`
	RepaidYears          int      `json:"repaid_years"`
	ContinuousYears      int      `json:"continuous_years"`
	ZeroClaimYears       int      `json:"zero_claim_years"`
}

func (r *personRecord) person() Person {
	return Person{ID: r.ID, Resident: r.Scheme == "resident", Conditions: len(r.Conditions) > 0,
		Account: r.AccountBalance != "" && strings.Trim(r.AccountBalance, "0.") != ""}
}

// HospitalToken is the reference world's demo token of a hospital
// (README, "Demo tokens").
func HospitalToken(id string) string { return "demo-hospital-" + id }

// GenerateWorld writes a bench world into cfg.Dir: the reference world's
// principals, hospitals, catalogs and policy dates as they are, and its
// persons plus PersonsPerRegion generated ones per insured region. Policy
// modules are not copied: the gateway finds them with --modules.
func GenerateWorld(cfg WorldConfig) (*World, error) {
	if cfg.PersonsPerRegion == 0 {
		cfg.PersonsPerRegion = 20000
	}
	src, dst := cfg.Source, cfg.Dir
	if err := os.MkdirAll(filepath.Join(dst, "persons"), 0o755); err != nil {
		return nil, err
	}
	copies := []string{"principals.json", "hospitals.json"}
	for _, glob := range []string{"catalogs/*.ndjson", "policies/*/*.json"} {
		names, _ := filepath.Glob(filepath.Join(src, glob))
		for _, n := range names {
			rel, _ := filepath.Rel(src, n)
			copies = append(copies, rel)
		}
	}
	for _, rel := range copies {
		if err := copyFile(filepath.Join(src, rel), filepath.Join(dst, rel)); err != nil {
			return nil, fmt.Errorf("bench world: %w", err)
		}
	}
	w := &World{Dir: dst, Persons: map[string][]Person{}}
	var err error
	if w.Hospitals, err = readHospitals(src); err != nil {
		return nil, err
	}
	files, _ := filepath.Glob(filepath.Join(src, "persons", "*.ndjson"))
	sort.Strings(files)
	for i, f := range files {
		region := strings.TrimSuffix(filepath.Base(f), ".ndjson")
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))
		persons, err := writePersons(f, filepath.Join(dst, "persons", region+".ndjson"), region, cfg.PersonsPerRegion, rng)
		if err != nil {
			return nil, fmt.Errorf("bench world: persons of %s: %w", region, err)
		}
		w.Regions = append(w.Regions, region)
		w.Persons[region] = persons
	}
	if len(w.Regions) == 0 {
		return nil, fmt.Errorf("bench world: %s has no persons/*.ndjson", src)
	}
	return w, nil
}

// readHospitals reads hospitals.json, checks that principals.json knows
// each hospital's demo token, and finds each one's catalog.
func readHospitals(src string) ([]Hospital, error) {
	var recs []struct {
		ID     string `json:"id"`
		Region string `json:"region"`
		Level  int    `json:"level"`
	}
	if err := readJSON(filepath.Join(src, "hospitals.json"), &recs); err != nil {
		return nil, err
	}
	var principals []struct {
		TokenSHA256 string `json:"token_sha256"`
		Role        string `json:"role"`
		ID          string `json:"id"`
	}
	if err := readJSON(filepath.Join(src, "principals.json"), &principals); err != nil {
		return nil, err
	}
	known := map[string]string{}
	for _, p := range principals {
		if p.Role == "hospital" {
			known[p.TokenSHA256] = p.ID
		}
	}
	var hs []Hospital
	for _, r := range recs {
		tok := HospitalToken(r.ID)
		sum := sha256.Sum256([]byte(tok))
		if known[hex.EncodeToString(sum[:])] != r.ID {
			return nil, fmt.Errorf("bench world: principals.json has no demo token %q for hospital %s", tok, r.ID)
		}
		codes, err := catalogCodes(src, r.Region)
		if err != nil {
			return nil, err
		}
		hs = append(hs, Hospital{ID: r.ID, Region: r.Region, Token: tok, Level: r.Level, Codes: codes})
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("bench world: %s lists no hospitals", src)
	}
	return hs, nil
}

// catalogCodes lists the codes of region's catalog with the fallback of
// policies.md §1: the region's own catalog, else its prefecture's
// (xxxx00), else its province's (xx0000). A hospital without any catalog
// gets no codes; its bills are then all unlisted lines.
func catalogCodes(src, region string) ([]string, error) {
	for _, r := range []string{region, region[:4] + "00", region[:2] + "0000"} {
		f, err := os.Open(filepath.Join(src, "catalogs", r+".ndjson"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		codes, err := readCodes(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("bench world: catalog %s: %w", r, err)
		}
		return codes, nil
	}
	return nil, nil
}

// readCodes reads the codes of a catalog file (NDJSON).
func readCodes(f *os.File) ([]string, error) {
	var codes []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, err
		}
		codes = append(codes, e.Code)
	}
	return codes, sc.Err()
}

// writePersons copies the reference persons of region from src to dst and
// appends n generated ones; it returns them all.
func writePersons(src, dst, region string, n int, rng *rand.Rand) ([]Person, error) {
	in, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<16)
	var persons []Person
	seen := map[string]bool{}
	for _, line := range strings.Split(string(in), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r personRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, err
		}
		seen[r.ID] = true
		persons = append(persons, r.person())
		bw.WriteString(line)
		bw.WriteByte('\n')
	}
	for added := 0; added < n; {
		r := genPerson(region, rng)
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		added++
		persons = append(persons, r.person())
		b, err := json.Marshal(&r)
		if err != nil {
			return nil, err
		}
		bw.Write(b)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	return persons, out.Close()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
