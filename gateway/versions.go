package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/ledger"
)

// Versions manages the policy versions of every region: it loads them into
// the engine, keeps their records and modules in the Store (so that they
// survive restarts and any ledger entry can be replayed with the module that
// produced it), and switches them in Policies without pausing settlement.
type Versions struct {
	eng      *engine.Engine
	store    *engine.Store
	policies *engine.Policies
	log      zerolog.Logger
	now      func() time.Time

	mu      sync.Mutex                 // guards modules and owned, serializes uploads
	modules map[[32]byte]engine.Runner // every loaded module by sha256
	// owned are the modules Versions loaded or was handed by Publish (not
	// Adopt's, which their loader owns): closed when withdrawn.
	owned map[*engine.Module]bool

	// inWorld holds "region/version" of every policy file of the world
	// loaded at this start (LoadWorld), loaded or refused: LoadStored
	// brings back only recorded world versions the world no longer has.
	inWorld map[string]bool

	// maxActive bounds the versions not withdrawn of a region
	// (MaxActiveVersions; tests lower it).
	maxActive int
}

// MaxActiveVersions is how many versions not withdrawn a region may keep.
// Each is loaded, its module compiled in memory (about 15 MiB resident
// for a 2.4 MB module), for bills of its dates however late: without a
// bound a region's token (compromised, or a deployment retried in a
// loop) could publish until the gateway ran out of memory. 64 is decades
// of yearly versions with their corrections; a region at the bound
// withdraws versions no bill will need before it publishes another.
const MaxActiveVersions = 64

// NewVersions returns a manager over eng, store and policies.
func NewVersions(eng *engine.Engine, store *engine.Store, policies *engine.Policies, log zerolog.Logger) *Versions {
	return &Versions{eng: eng, store: store, policies: policies, log: log, now: time.Now, modules: map[[32]byte]engine.Runner{}, owned: map[*engine.Module]bool{}, inWorld: map[string]bool{},
		maxActive: MaxActiveVersions}
}

// Policies is the schedule settlements look versions up in.
func (v *Versions) Policies() *engine.Policies { return v.policies }

// LoadWorld loads w's policy files: each module is checked; a module that
// fails is refused with a logged reason and its region gets no policy from
// it. A version a region has withdrawn is not brought back by a restart.
func (v *Versions) LoadWorld(ctx context.Context, w *World) {
	for _, pf := range w.Policies {
		v.inWorld[pf.Region+"/"+pf.Version] = true
		log := v.log.With().Str("region", pf.Region).Str("version", pf.Version).Logger()
		rec, found, err := v.record(pf.Region, pf.Version)
		if err != nil {
			log.Error().Err(err).Msg("policy store unreadable")
			continue
		}
		if pf.Wasm == nil && found && rec.Source == "world" && rec.EffectiveFrom == pf.EffectiveFrom {
			// Started from another directory, or --modules moved: the
			// module this version was recorded with is in the store.
			if wasm, err := v.store.Module(rec.SHA256); err == nil {
				log.Warn().Str("sha256", rec.SHA256).Msg("policy module file not found; loaded the copy stored when the version was recorded")
				pf.Wasm = wasm
			}
		}
		if found && rec.State == engine.StateWithdrawn {
			log.Warn().Msg("policy version was withdrawn by its region; not loaded")
			continue
		}
		if found && rec.Source == "upload" {
			continue // an upload of the same name takes precedence; LoadStored loads it
		}
		// A version the world names but that cannot be loaded stays in
		// force as unavailable, as a stored one does (LoadStored): its
		// dates are refused (503) rather than settled under the version
		// before it, with that version's ratios and caps.
		unavailable := func(err error) {
			u := &engine.Unavailable{Region: pf.Region, Version: pf.Version, Cause: err}
			if pf.Wasm != nil {
				u.SHA256 = sha256.Sum256(pf.Wasm) // the module refused: listed by it
			}
			v.policies.Put(pf.Region, engine.Version{Name: pf.Version, EffectiveFrom: pf.EffectiveFrom, Module: u})
		}
		if pf.Wasm == nil {
			log.Error().Msg("policy module file not found (run `make policies` for the reference modules); the version is not loaded and its bills are refused until it is")
			unavailable(errors.New("the world's module file for this version was not found at start"))
			continue
		}
		m, err := v.load(ctx, pf.Region, pf.Version, pf.Wasm)
		if err != nil {
			check := "load"
			var le *engine.LoadError
			if errors.As(err, &le) {
				check = le.Check
			}
			log.Error().Err(err).Str("check", check).Msg("policy module refused; its bills are refused until it loads")
			unavailable(err)
			continue
		}
		if found && (rec.SHA256 != m.SHA256Hex() || rec.EffectiveFrom != pf.EffectiveFrom) {
			// Applied as the world says, but not silently: the version's
			// settlements so far keep the module they recorded.
			log.Warn().Str("was_sha256", rec.SHA256).Str("was_effective_from", string(AppendDate(nil, rec.EffectiveFrom))).
				Str("sha256", m.SHA256Hex()).Str("effective_from", string(AppendDate(nil, pf.EffectiveFrom))).
				Msg("policy version changed in the world since it was recorded: its module or effective date is replaced")
		}
		if err := v.record0(pf.Region, pf.Version, pf.EffectiveFrom, m.SHA256Hex(), "", "world"); err != nil {
			log.Error().Err(err).Msg("policy store unwritable")
			continue
		}
		v.policies.Put(pf.Region, engine.Version{Name: pf.Version, EffectiveFrom: pf.EffectiveFrom, Module: m})
		log.Info().Str("sha256", m.SHA256Hex()).Str("effective_from", string(AppendDate(nil, pf.EffectiveFrom))).Msg("policy loaded")
	}
}

// LoadStored loads every active uploaded version from the store, and every
// active version recorded from an earlier world that this start's world no
// longer has: the world is upserted (api.md), so a policy file that
// disappeared from it does not silently retire a version in force and hand
// its dates to the version before; its region withdraws it through the API.
func (v *Versions) LoadStored(ctx context.Context) error {
	regions, err := v.store.Regions()
	if err != nil {
		return err
	}
	for _, region := range regions {
		recs, err := v.store.Versions(region)
		if err != nil {
			// Which versions are in force is unknown: the region's bills
			// are refused (503) until its records are readable again.
			v.log.Error().Err(err).Str("region", region).Msg("policy version records unreadable; the region's bills are refused until they are readable")
			v.policies.Block(region, &engine.Unavailable{Region: region, Version: "(unknown)", Cause: err})
			continue
		}
		for _, r := range recs {
			if r.State != engine.StateActive || r.Source != "upload" && (r.Source != "world" || v.inWorld[r.Region+"/"+r.Version]) {
				continue
			}
			if r.Source == "world" {
				v.log.Warn().Str("region", r.Region).Str("version", r.Version).Str("sha256", r.SHA256).
					Msg("policy version recorded from the world is no longer in the world directory; loaded the copy stored when it was recorded (its region withdraws it through the API)")
			}
			// One region's missing or refused module costs that region
			// its version, not every region the gateway's start; the
			// version stays in force as unavailable, so that its dates
			// are refused (503) rather than settled under the one before.
			unavailable := func(err error, msg string) {
				v.log.Error().Err(err).Str("region", r.Region).Str("version", r.Version).Msg(msg)
				var sum [32]byte
				hex.Decode(sum[:], []byte(r.SHA256))
				v.policies.Put(r.Region, engine.Version{Name: r.Version, EffectiveFrom: r.EffectiveFrom,
					Module: &engine.Unavailable{Region: r.Region, Version: r.Version, SHA256: sum, Cause: err}})
			}
			wasm, err := v.store.Module(r.SHA256)
			if err != nil {
				unavailable(err, "stored policy module unreadable; the version's bills are refused until it is back")
				continue
			}
			m, err := v.load(ctx, r.Region, r.Version, wasm)
			if err != nil {
				unavailable(err, "stored policy no longer loads; the version's bills are refused until it does")
				continue
			}
			v.policies.Put(r.Region, engine.Version{Name: r.Version, EffectiveFrom: r.EffectiveFrom, Module: m})
		}
		// Of versions with one effective date the one published last
		// applies: in the order of the records, whichever loaded from the
		// world and whichever from the store (a world version whose files
		// are gone, an upload). One without a record (a world version
		// never loaded) is this start's, the latest.
		pos := make(map[string]int, len(recs))
		for i, r := range recs {
			pos[r.Version] = i
		}
		loaded := v.policies.Versions(region)
		v.policies.Order(region, func(name string) int {
			if i, ok := pos[name]; ok {
				return i
			}
			return len(recs)
		})
		// Gateways before this ordering applied, of one date, the last
		// loaded: the world's versions, then the stored ones. Where the
		// records choose another (a world version recorded after an upload
		// of its date), an upgrade changes which policy settles those
		// dates: said at every start, so that it is not silent.
		ordered := v.policies.Versions(region)
		for i, o := range ordered {
			if i+1 < len(ordered) && ordered[i+1].EffectiveFrom == o.EffectiveFrom {
				continue // not the one in force of its date
			}
			for j := len(loaded) - 1; j >= 0; j-- {
				if l := loaded[j]; l.EffectiveFrom == o.EffectiveFrom {
					if l.Name != o.Name {
						v.log.Warn().Str("region", region).Str("version", o.Name).Str("over", l.Name).
							Str("effective_from", string(AppendDate(nil, o.EffectiveFrom))).
							Msg("of the policy versions of one effective date the one recorded last applies: this one, over the other, which gateways before 2026-12-05 applied (they scheduled the world's versions before stored ones)")
					}
					break
				}
			}
		}
	}
	// Every version was loaded with the instance its check probed: only
	// those in force today keep it (see Publish).
	v.mu.Lock()
	defer v.mu.Unlock()
	v.trimNotInForceLocked("")
	return nil
}

// trimNotInForceLocked closes the idle instances of every module owned
// of region ("": of every region) that is not in force today; it keeps
// their compiled code, and a call instantiates afresh. v.mu is held.
func (v *Versions) trimNotInForceLocked(region string) {
	today := v.today()
	for m := range v.owned {
		if region != "" && m.Region != region {
			continue
		}
		if now, _ := v.policies.Lookup(m.Region, today); now.Module != engine.Runner(m) {
			m.Trim()
		}
	}
}

// idleSweepInterval is how often Run sweeps idle instances (SweepIdle).
const idleSweepInterval = time.Minute

// SweepIdle closes the idle instances of every module owned that is not
// in force today (UTC+8) and was not called since the sweep before. An
// upload trims the versions it leaves out of force, but a version is also
// superseded by the date passing, with nothing uploaded: its pool, grown
// while it was in force, would stay held though only bills dated before
// its successor's date (settled late) may still call it. One called since
// the last sweep keeps its instances (such bills keep coming for a while
// after midnight); a later call instantiates afresh.
func (v *Versions) SweepIdle() {
	v.mu.Lock()
	defer v.mu.Unlock()
	today := v.today()
	for m := range v.owned {
		if now, _ := v.policies.Lookup(m.Region, today); now.Module != engine.Runner(m) {
			m.TrimUnused()
		}
	}
}

// sweepIdleEvery runs SweepIdle every interval until ctx is done.
func (v *Versions) sweepIdleEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v.SweepIdle()
		}
	}
}

// today is the date in UTC+8.
func (v *Versions) today() abi.Date {
	t := v.now().In(ledger.ChinaTime)
	return abi.MakeDate(int32(t.Year()), int32(t.Month()), int32(t.Day()))
}

// load checks and compiles wasm and stores its bytes by hash.
func (v *Versions) load(ctx context.Context, region, version string, wasm []byte) (*engine.Module, error) {
	m, err := v.eng.Load(ctx, region, version, wasm)
	if err != nil {
		return nil, err
	}
	if _, err := v.store.PutModule(wasm); err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.modules[m.SHA256] = m
	v.owned[m] = true
	v.mu.Unlock()
	return m, nil
}

// Runner returns a policy runner for the module with sha256 sum: one already
// loaded, or the stored module loaded on demand. Used to replay entries.
func (v *Versions) Runner(ctx context.Context, region string, sum [32]byte) (engine.Runner, error) {
	v.mu.Lock()
	r, ok := v.modules[sum]
	v.mu.Unlock()
	if ok {
		return r, nil
	}
	for _, ver := range v.policies.Versions(region) {
		if ver.Module.Sum() == sum {
			return ver.Module, nil
		}
	}
	wasm, err := v.store.Module(hex.EncodeToString(sum[:]))
	if err != nil {
		return nil, err
	}
	m, err := v.eng.Load(ctx, region, "sha256:"+hex.EncodeToString(sum[:4]), wasm)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.modules[sum] = m
	v.mu.Unlock()
	return m, nil
}

// ReplayRunner returns a runner to re-execute ledger entries recorded
// with the module of sha256 sum, and a function to release it. A stored
// module is compiled afresh from its bytes (checked against sum) into a
// private copy: not the module settling, whose pooled instances have
// served live settlements (a module keeping state between calls would
// answer a replay from that state, and a replay's calls would change
// it), and not from the on-disk cache of compiled code, which is trusted
// to be the module's but not verified. A module not stored (the native
// reference policies) is the loaded one.
func (v *Versions) ReplayRunner(ctx context.Context, region, version string, sum [32]byte) (engine.Runner, func(), error) {
	wasm, err := v.store.Module(hex.EncodeToString(sum[:]))
	if errors.Is(err, os.ErrNotExist) {
		r, err := v.Runner(ctx, region, sum)
		return r, func() {}, err
	}
	if err != nil {
		return nil, nil, err
	}
	m, err := v.eng.LoadCandidate(ctx, region, version, wasm)
	if err != nil {
		return nil, nil, err
	}
	return m, func() { m.Close(context.Background()) }, nil
}

func (v *Versions) record(region, version string) (engine.Record, bool, error) {
	recs, err := v.store.Versions(region)
	if err != nil {
		return engine.Record{}, false, err
	}
	for _, r := range recs {
		if r.Version == version {
			return r, true, nil
		}
	}
	return engine.Record{}, false, nil
}

// record0 records an active version unless the same record exists.
func (v *Versions) record0(region, version string, eff abi.Date, sum, casesSum, source string) error {
	return v.store.Update(region, func(recs []engine.Record) ([]engine.Record, error) {
		for i, r := range recs {
			if r.Version == version {
				if r.SHA256 == sum && r.EffectiveFrom == eff && r.Source == source && r.CasesSHA256 == casesSum {
					return recs, nil
				}
				recs[i] = engine.Record{Region: region, Version: version, EffectiveFrom: eff, SHA256: sum, CasesSHA256: casesSum, State: engine.StateActive, Source: source, RecordedAt: v.now().UTC()}
				return recs, nil
			}
		}
		return append(recs, engine.Record{Region: region, Version: version, EffectiveFrom: eff, SHA256: sum, CasesSHA256: casesSum, State: engine.StateActive, Source: source, RecordedAt: v.now().UTC()}), nil
	})
}

// Adopt records and schedules an already loaded module as a world version
// of its region (tests and embedders that load modules themselves).
func (v *Versions) Adopt(m *engine.Module, wasm []byte, eff abi.Date) error {
	if _, err := v.store.PutModule(wasm); err != nil {
		return err
	}
	if err := v.record0(m.Region, m.Version, eff, m.SHA256Hex(), "", "world"); err != nil {
		return err
	}
	v.mu.Lock()
	v.modules[m.SHA256] = m
	v.inWorld[m.Region+"/"+m.Version] = true // loaded: LoadStored leaves it
	v.mu.Unlock()
	v.policies.Put(m.Region, engine.Version{Name: m.Version, EffectiveFrom: eff, Module: m})
	return nil
}

// ErrVersionExists is returned by Publish for a version name already used.
var ErrVersionExists = errors.New("gateway: version name already used")

// Publish adds a checked module as a new version of region, in force from
// eff. The version name must be new to the region (withdrawn ones included).
func (v *Versions) Publish(ctx context.Context, m *engine.Module, wasm []byte, eff abi.Date) error {
	return v.publish(ctx, m, wasm, eff, "")
}

// publish is Publish recording casesSum, the CasesSum of the upload's
// example cases.
func (v *Versions) publish(ctx context.Context, m *engine.Module, wasm []byte, eff abi.Date, casesSum string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, found, err := v.record(m.Region, m.Version); err != nil {
		return err
	} else if found {
		return ErrVersionExists
	}
	if err := v.room(m.Region); err != nil {
		return err
	}
	if _, err := v.store.PutModule(wasm); err != nil {
		return err
	}
	if err := v.record0(m.Region, m.Version, eff, m.SHA256Hex(), casesSum, "upload"); err != nil {
		return err
	}
	v.modules[m.SHA256] = m
	v.owned[m] = true
	v.policies.Put(m.Region, engine.Version{Name: m.Version, EffectiveFrom: eff, Module: m})
	v.log.Info().Str("region", m.Region).Str("version", m.Version).Str("sha256", m.SHA256Hex()).
		Str("effective_from", string(AppendDate(nil, eff))).Msg("policy version published")
	// Answered once no settlement computed with the version it supersedes
	// can still commit.
	v.policies.Quiesce()
	// A version not in force today (this one, scheduled or already
	// superseded, or the one it supersedes) is called for old or future
	// dates only, maybe never: the instances it holds (the one this check
	// left, with what its start and cases grew, or those of its days in
	// force) would stay pinned.
	v.trimNotInForceLocked(m.Region)
	return nil
}

// isUnavailable says whether version of region is scheduled as unavailable.
func (v *Versions) isUnavailable(region, version string) bool {
	for _, s := range v.policies.Versions(region) {
		if _, ok := s.Module.(*engine.Unavailable); ok && s.Name == version {
			return true
		}
	}
	return false
}

// restore schedules m, checked, for a version recorded with its module
// that was unavailable since start (its stored copy missing or refused),
// storing its bytes again, in place of the stand-in refusing its bills.
func (v *Versions) restore(m *engine.Module, wasm []byte, eff abi.Date) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	// Asked again under v.mu, which Withdraw holds while it records and
	// unschedules a version: the caller saw it unavailable before its
	// check ran, and a withdrawal meanwhile must not be undone in the
	// schedule while the store records it withdrawn.
	if !v.isUnavailable(m.Region, m.Version) {
		return conflict("version_exists", "version", "region %s already has a version %s, withdrawn or restored while this upload was checked (versions are never reused, withdrawn ones included)",
			m.Region, m.Version)
	}
	if _, err := v.store.PutModule(wasm); err != nil {
		return err
	}
	v.modules[m.SHA256] = m
	v.owned[m] = true
	v.policies.Put(m.Region, engine.Version{Name: m.Version, EffectiveFrom: eff, Module: m})
	v.log.Info().Str("region", m.Region).Str("version", m.Version).Str("sha256", m.SHA256Hex()).Msg("policy version restored by the same upload again")
	v.trimNotInForceLocked(m.Region)
	return nil
}

// errTooManyVersions: the region keeps maxActive versions not withdrawn,
// or more (a store written before the bound); a *tooManyVersionsError is it.
var errTooManyVersions = errors.New("gateway: the region keeps the most versions allowed")

// tooManyVersionsError says how many versions the region keeps and the
// most it may: above the bound, withdrawing one does not make room.
type tooManyVersionsError struct{ kept, max int }

func (e *tooManyVersionsError) Error() string {
	return fmt.Sprintf("%v: %d kept, at most %d", errTooManyVersions, e.kept, e.max)
}

func (e *tooManyVersionsError) Is(target error) bool { return target == errTooManyVersions }

// room says whether region may publish one more version: a
// *tooManyVersionsError when it keeps maxActive versions not withdrawn,
// or more.
func (v *Versions) room(region string) error {
	recs, err := v.store.Versions(region)
	if err != nil {
		return err
	}
	active := 0
	for _, r := range recs {
		if r.State == engine.StateActive {
			active++
		}
	}
	if active >= v.maxActive {
		return &tooManyVersionsError{kept: active, max: v.maxActive}
	}
	return nil
}

// Withdraw rolls back version of region: it stops applying at once and the
// previous version applies again. Its module, once no settlement can still
// use it, is closed (its compiled code and instances freed): a replay of
// its entries compiles the stored copy (ReplayRunner). The
// region's last active version is not withdrawn (errLastVersion): there is
// nothing to roll back to, and every bill of its insured would be refused.
// Nor is the version in force today (UTC+8) when no earlier one is active:
// a successor scheduled for a later date does not cover today, so every
// bill dated before that date would be refused just the same. A version
// already withdrawn is errAlreadyWithdrawn with its record.
func (v *Versions) Withdraw(region, version string) (engine.Record, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := v.now().In(ledger.ChinaTime)
	today := abi.MakeDate(int32(t.Year()), int32(t.Month()), int32(t.Day()))
	var out engine.Record
	err := v.store.Update(region, func(recs []engine.Record) ([]engine.Record, error) {
		active, othersByToday := 0, 0
		for _, r := range recs {
			if r.State == engine.StateActive {
				active++
				if r.Version != version && r.EffectiveFrom <= today {
					othersByToday++
				}
			}
		}
		for i, r := range recs {
			if r.Version == version {
				if r.State == engine.StateWithdrawn {
					out = r // when: the caller answers a retry with it
					return nil, errAlreadyWithdrawn
				}
				if active == 1 || (r.EffectiveFrom <= today && othersByToday == 0) {
					return nil, errLastVersion
				}
				recs[i].State = engine.StateWithdrawn
				recs[i].WithdrawnAt = v.now().UTC()
				out = recs[i]
				return recs, nil
			}
		}
		// A world version scheduled as unavailable at its first start
		// (its module not found or refused) has no record, yet refuses
		// every bill of its dates: its region rolls it back like any
		// other. Recorded withdrawn, so that the next start with the
		// same world does not schedule it again (LoadWorld).
		for _, s := range v.policies.Versions(region) {
			u, ok := s.Module.(*engine.Unavailable)
			if !ok || s.Name != version {
				continue
			}
			if active == 0 || (s.EffectiveFrom <= today && othersByToday == 0) {
				return nil, errLastVersion
			}
			sum := u.SHA256
			if sum == ([32]byte{}) {
				sum = noModule // a record names a module: this one had none
			}
			at := v.now().UTC()
			out = engine.Record{Region: region, Version: version, EffectiveFrom: s.EffectiveFrom, SHA256: hex.EncodeToString(sum[:]),
				State: engine.StateWithdrawn, Source: "world", RecordedAt: at, WithdrawnAt: at}
			return append(recs, out), nil
		}
		return nil, errNoVersion
	})
	if err != nil {
		return out, err
	}
	old, _ := v.policies.Remove(region, version)
	v.log.Info().Str("region", region).Str("version", version).Msg("policy version withdrawn")
	// "Stops applying at once": once answered, no settlement computed with
	// it can still commit (one in flight has finished before).
	v.policies.Quiesce()
	if m, ok := old.Module.(*engine.Module); ok && v.owned[m] {
		delete(v.owned, m)
		if v.modules[m.SHA256] == engine.Runner(m) {
			delete(v.modules, m.SHA256)
		}
		m.Close(context.Background())
	}
	return out, nil
}

// noModule is the sha256 recorded for a version withdrawn whose module
// file was never found: that of no bytes, which no module has (an empty
// module is refused).
var noModule = sha256.Sum256(nil)

var (
	errAlreadyWithdrawn = errors.New("gateway: version already withdrawn")
	errNoVersion        = errors.New("gateway: no such version")
	errLastVersion      = errors.New("gateway: the region's last version")
)

// List returns region's version records with their state today.
func (v *Versions) List(region string, today abi.Date) ([]VersionInfo, error) {
	recs, err := v.store.Versions(region)
	if err != nil {
		return nil, err
	}
	inForce, _ := v.policies.Lookup(region, today)
	// A version scheduled as unavailable (its module missing or refused
	// at start) refuses the bills of its dates: listed so, with the
	// module it stands for, and listed even without a record (a world
	// version never loaded), or the list showed the version before it
	// superseded and none in force, while its dates were refused.
	unavailable := map[string]*engine.Unavailable{}
	for _, s := range v.policies.Versions(region) {
		if u, ok := s.Module.(*engine.Unavailable); ok {
			unavailable[s.Name] = u
		}
	}
	out := make([]VersionInfo, 0, len(recs)+len(unavailable))
	for _, r := range recs {
		st := string(r.State)
		if r.State == engine.StateActive {
			u, isUnavailable := unavailable[r.Version]
			delete(unavailable, r.Version)
			switch {
			case isUnavailable:
				st = "unavailable"
				if u.SHA256 != ([32]byte{}) {
					r.SHA256 = hex.EncodeToString(u.SHA256[:])
				}
			case r.Version == inForce.Name:
				st = "in_force"
			case r.EffectiveFrom > today:
				st = "scheduled"
			default:
				st = "superseded"
			}
		}
		out = append(out, VersionInfo{Record: r, Status: st})
	}
	for _, s := range v.policies.Versions(region) {
		if u, ok := unavailable[s.Name]; ok && s.Module == engine.Runner(u) {
			// Never recorded: a world version not loaded at this start.
			r := engine.Record{Region: region, Version: s.Name, EffectiveFrom: s.EffectiveFrom, State: engine.StateActive, Source: "world"}
			if u.SHA256 != ([32]byte{}) {
				r.SHA256 = hex.EncodeToString(u.SHA256[:])
			}
			out = append(out, VersionInfo{Record: r, Status: "unavailable"})
		}
	}
	return out, nil
}

// Unavailable lists "region/version" of every version scheduled that
// cannot run (its module missing or refused at start, or its region's
// records unreadable): the bills of its dates are refused (503).
func (v *Versions) Unavailable() []string {
	var out []string
	for _, region := range v.policies.Regions() {
		for _, s := range v.policies.Versions(region) {
			if _, ok := s.Module.(*engine.Unavailable); ok {
				out = append(out, region+"/"+s.Name)
			}
		}
	}
	return out
}

// VersionInfo is a record with its status on a given day: in_force,
// scheduled, superseded, withdrawn or unavailable.
type VersionInfo struct {
	engine.Record
	Status string `json:"status"`
}

func (v *Versions) String() string { return fmt.Sprintf("versions(%d modules)", len(v.modules)) }
