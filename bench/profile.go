package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// profiler fetches profiles of a gateway from its admin listener
// (--admin-listen: net/http/pprof), so that the profiles are of the real
// binary under the bench's own load.
type profiler struct {
	admin  string // host:port of the admin listener
	dir    string
	target string
}

// fetch saves GET /debug/pprof/<what> as <dir>/<target>-<name>.prof.
func (p *profiler) fetch(what, name string, timeout time.Duration) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + p.admin + "/debug/pprof/" + what)
	if err := fasthttp.DoTimeout(req, resp, timeout); err != nil {
		return fmt.Errorf("bench: profile %s of %s: %w", what, p.target, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("bench: profile %s of %s: status %d: %s", what, p.target, resp.StatusCode(), truncate(string(resp.Body()), 200))
	}
	return os.WriteFile(filepath.Join(p.dir, p.target+"-"+name+".prof"), resp.Body(), 0o644)
}

// around profiles run: heap allocations before and after it (compare them
// with pprof -base) and the CPU for secs seconds from its start.
func (p *profiler) around(secs int, run func() error) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	// gc=1: a collection first, so the profile is up to date.
	if err := p.fetch("allocs?gc=1", "allocs-base", time.Minute); err != nil {
		return err
	}
	cpu := make(chan error, 1)
	go func() {
		cpu <- p.fetch("profile?seconds="+strconv.Itoa(secs), "cpu", time.Duration(secs)*time.Second+time.Minute)
	}()
	err := run()
	if cerr := <-cpu; err == nil {
		err = cerr
	}
	if err == nil {
		err = p.fetch("allocs?gc=1", "allocs", time.Minute)
	}
	return err
}
