package engine

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"medgate/engine/abi"
)

// Version is a policy version in force from EffectiveFrom until the next
// version of its region takes over.
type Version struct {
	Name          string
	EffectiveFrom abi.Date
	Module        Runner
	// blocking: the region's versions are unknown (see Block).
	blocking bool
}

// Region is the insured region the version belongs to.
func (v Version) Region() string {
	switch m := v.Module.(type) {
	case *Module:
		return m.Region
	case *Native:
		return m.Region
	case *Unavailable:
		return m.Region
	}
	return ""
}

// Policies maps each insured region to its versions. Lookups are lock-free
// (a copy-on-write snapshot), so versions switch without pausing settlement.
type Policies struct {
	mu   sync.Mutex // serializes writers
	snap atomic.Pointer[map[string][]Version]
	// cur counts the holders (Hold) that may still act on a version
	// looked up before the latest Quiesce began.
	cur atomic.Pointer[holders]
	// quiescing serializes Quiesce: each waits only for the generation of
	// holders it retires, so one that began while another still waited
	// for an older generation must wait for that one to finish first.
	quiescing sync.Mutex
}

type holders struct{ n atomic.Int64 }

// A Hold is a caller registered with Policies.Hold.
type Hold struct{ h *holders }

// Release ends the hold.
func (h Hold) Release() { h.h.n.Add(-1) }

// Hold registers a caller that looks a version up and acts on it (computes
// and commits a settlement) until Release: a Quiesce that begins meanwhile
// waits for it. Holding costs two atomic adds and allocates nothing (it is
// on every settlement's path); it never blocks.
func (p *Policies) Hold() Hold {
	for {
		h := p.cur.Load()
		if h == nil {
			p.cur.CompareAndSwap(nil, new(holders))
			continue
		}
		h.n.Add(1)
		if p.cur.Load() == h {
			return Hold{h}
		}
		// A Quiesce began between the two loads and may have seen no
		// holder: hold the new generation instead.
		h.n.Add(-1)
	}
}

// Quiesce waits until every Hold taken before it began is released: after
// a Put or Remove, no caller still acts on a version looked up before it.
// Later holders do not wait for it, nor it for them.
func (p *Policies) Quiesce() {
	p.quiescing.Lock()
	defer p.quiescing.Unlock()
	old := p.cur.Swap(new(holders))
	if old == nil {
		return
	}
	for old.n.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
}

// Lookup returns the version of region in force on date: the one with the
// latest EffectiveFrom not after date.
func (p *Policies) Lookup(region string, date abi.Date) (Version, bool) {
	m := p.snap.Load()
	if m == nil {
		return Version{}, false
	}
	vs := (*m)[region]
	if len(vs) > 0 && vs[0].blocking {
		return vs[0], true
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].EffectiveFrom <= date {
			return vs[i], true
		}
	}
	return Version{}, false
}

// Put adds v to region, replacing a version of the same name, and returns
// the replaced one (the caller closes its module when it is done with it).
// Of versions with the same effective date the one added last applies; a
// replaced one (a version restored after it was found unavailable at
// start) keeps its place among them, so that the one published last still
// applies, as it does after a restart (versions load in publishing order).
func (p *Policies) Put(region string, v Version) (old Version, replaced bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := p.cloneLocked()
	vs := next[region]
	for i := range vs {
		if vs[i].Name == v.Name {
			old, replaced = vs[i], true
			vs[i] = v
			break
		}
	}
	if !replaced {
		vs = append(vs, v)
	}
	slices.SortStableFunc(vs, func(a, b Version) int { return int(a.EffectiveFrom) - int(b.EffectiveFrom) })
	next[region] = vs
	p.snap.Store(&next)
	return old, replaced
}

// Order sorts region's versions by effective date and those of one date by
// rank, the highest last (it applies); versions of equal rank keep their
// order. A start schedules world versions before stored ones, and orders
// them by their records afterwards (Versions.LoadStored).
func (p *Policies) Order(region string, rank func(name string) int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := p.cloneLocked()
	vs := next[region]
	if len(vs) > 0 && vs[0].blocking {
		return
	}
	slices.SortStableFunc(vs, func(a, b Version) int {
		if a.EffectiveFrom != b.EffectiveFrom {
			return cmp.Compare(a.EffectiveFrom, b.EffectiveFrom)
		}
		return cmp.Compare(rank(a.Name), rank(b.Name))
	})
	next[region] = vs
	p.snap.Store(&next)
}

// Block makes every date of region resolve to r, whatever versions it
// has: for a region whose version records cannot be read, so that none of
// its bills is settled under a version an unknown later one replaced.
func (p *Policies) Block(region string, r Runner) {
	p.Put(region, Version{Name: "(unavailable)", EffectiveFrom: math.MinInt32, Module: r, blocking: true})
}

// Remove withdraws version name of region, so the previous one applies again.
func (p *Policies) Remove(region, name string) (Version, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := p.cloneLocked()
	vs := next[region]
	for i := range vs {
		if vs[i].Name == name {
			old := vs[i]
			next[region] = slices.Delete(vs, i, i+1)
			p.snap.Store(&next)
			return old, true
		}
	}
	return Version{}, false
}

// Versions lists region's versions by effective date.
func (p *Policies) Versions(region string) []Version {
	m := p.snap.Load()
	if m == nil {
		return nil
	}
	return slices.Clone((*m)[region])
}

// HasUnavailable reports whether any region schedules a version that
// cannot run (an *Unavailable). It allocates nothing: /healthz asks it.
func (p *Policies) HasUnavailable() bool {
	m := p.snap.Load()
	if m == nil {
		return false
	}
	for _, vs := range *m {
		for i := range vs {
			if _, ok := vs[i].Module.(*Unavailable); ok {
				return true
			}
		}
	}
	return false
}

// Regions lists every region with at least one version.
func (p *Policies) Regions() []string {
	m := p.snap.Load()
	if m == nil {
		return nil
	}
	var out []string
	for r, vs := range *m {
		if len(vs) > 0 {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

func (p *Policies) cloneLocked() map[string][]Version {
	next := map[string][]Version{}
	if m := p.snap.Load(); m != nil {
		for r, vs := range *m {
			next[r] = slices.Clone(vs)
		}
	}
	return next
}
