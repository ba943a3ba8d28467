package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"medgate/engine"
	"medgate/gateway/internal/testenv"
	"medgate/ledger"
)

// harness is a gateway over a fresh ledger, served on an in-memory
// listener and spoken to over real HTTP.
type harness struct {
	tb       testing.TB
	db       *ledger.DB
	fs       vfs.FS
	dir      string
	policies *engine.Policies
	versions *Versions
	srv      *Server
	ln       *fasthttputil.InmemoryListener
	client   *fasthttp.Client
	world    *World
	// now, when set before start, is the clock of the ledger (commit
	// times) and of the clearing endpoints.
	now func() time.Time
	// minFree and freeSpace, when set before start, are the ledger's
	// MinFreeBytes and FreeSpace.
	minFree   uint64
	freeSpace func(string) (uint64, error)
	// cacheSize, when set before start, is the ledger's block cache.
	cacheSize int64
}

// worldJSON is a world fragment as the examples give it.
type worldJSON struct {
	Hospitals []HospitalRecord             `json:"hospitals"`
	Catalogs  map[string][]json.RawMessage `json:"catalogs"`
	Persons   map[string][]json.RawMessage `json:"persons"`
}

// toWorld converts a fragment, giving every hospital the token "tok-<id>",
// region r the token "tok-region-<r>" and the clearing house "tok-clearing".
func (wj *worldJSON) toWorld(tb testing.TB) *World {
	tb.Helper()
	w := &World{Catalogs: map[string][]ledger.CatalogEntry{}}
	for _, r := range wj.Hospitals {
		h, err := r.Hospital()
		if err != nil {
			tb.Fatal(err)
		}
		w.Hospitals = append(w.Hospitals, h)
		w.Principals = append(w.Principals, PrincipalRecord{TokenSHA256: TokenHash("tok-" + h.ID), Role: RoleHospital, ID: h.ID})
	}
	for region, lines := range wj.Catalogs {
		for _, l := range lines {
			e, err := ParseCatalogEntry(l)
			if err != nil {
				tb.Fatalf("catalog %s: %v", region, err)
			}
			w.Catalogs[region] = append(w.Catalogs[region], e)
		}
	}
	for region, lines := range wj.Persons {
		for _, l := range lines {
			p, err := ParsePerson(region, l)
			if err != nil {
				tb.Fatalf("person %s: %v", region, err)
			}
			w.Persons = append(w.Persons, p)
		}
	}
	for _, r := range []string{"371600", "152500", "370000"} {
		w.Principals = append(w.Principals, PrincipalRecord{TokenSHA256: TokenHash("tok-region-" + r), Role: RoleRegion, ID: r})
	}
	w.Principals = append(w.Principals, PrincipalRecord{TokenSHA256: TokenHash("tok-clearing"), Role: RoleClearing, ID: "clearing"})
	return w
}

// referenceVersions schedules the reference policies (loaded once per test
// binary) in a fresh Versions with its own store.
func referenceVersions(tb testing.TB, policies *engine.Policies) *Versions {
	eng, loaded := testenv.Engine(tb)
	store, err := engine.OpenStore(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	v := NewVersions(eng, store, policies, zerolog.Nop())
	for _, ref := range testenv.Reference {
		m := loaded[ref.Region+"/"+ref.Version].Module.(*engine.Module)
		wasm, err := os.ReadFile(filepath.Join(testenv.ModuleDir(tb), ref.Region, ref.Version+".wasm"))
		if err != nil {
			tb.Fatal(err)
		}
		d, _ := ParseDate([]byte(ref.EffectiveFrom))
		if err := v.Adopt(m, wasm, d); err != nil {
			tb.Fatal(err)
		}
	}
	return v
}

// newHarness starts a gateway on world with a fresh in-memory ledger and
// the reference policies.
func newHarness(tb testing.TB, w *World) *harness {
	tb.Helper()
	h := &harness{tb: tb, fs: vfs.NewMem(), dir: "ledger", world: w, policies: &engine.Policies{}}
	h.versions = referenceVersions(tb, h.policies)
	h.start()
	tb.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	tb := h.tb
	db, err := ledger.Open(h.dir, ledger.Options{FS: h.fs, Logger: zerolog.Nop(), Now: h.now, MinFreeBytes: h.minFree, FreeSpace: h.freeSpace, CacheSize: h.cacheSize})
	if err != nil {
		tb.Fatal(err)
	}
	h.db = db
	if err := h.world.ApplyRegistry(db); err != nil {
		tb.Fatal(err)
	}
	principals, err := NewPrincipals(h.world.Principals)
	if err != nil {
		tb.Fatal(err)
	}
	h.srv = NewServer(ServerConfig{Service: NewService(db, h.policies, zerolog.Nop()), DB: db, Versions: h.versions,
		Principals: principals, Logger: zerolog.Nop(), Now: h.now})
	h.ln = fasthttputil.NewInmemoryListener()
	go h.srv.Serve(h.ln)
	ln := h.ln
	h.client = &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConnsPerHost: 512}
}

func (h *harness) stop() {
	if h.db == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.srv.Shutdown(ctx)
	h.ln.Close()
	if err := h.db.Close(); err != nil {
		h.tb.Error(err)
	}
	h.db = nil
}

// restart closes the gateway and the ledger and opens them again on the
// same (in-memory) files.
func (h *harness) restart() {
	h.stop()
	h.start()
}

// roundTrip sends one request (with a content type when ctype is set) and
// returns the response, which the caller releases.
func (h *harness) roundTrip(method, path, token, ctype string, body []byte, timeout time.Duration) (*fasthttp.Response, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	req.Header.SetMethod(method)
	req.SetRequestURI("http://gateway" + path)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.SetBody(body)
		if ctype != "" {
			req.Header.SetContentType(ctype)
		}
	}
	if err := h.client.DoTimeout(req, resp, timeout); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	checkAnswer(h.tb, method, path, body, resp) // r4_docs_test.go: the answer is openapi.yaml's
	return resp, nil
}

// do sends one request and returns the status and body. A request that
// gets no answer fails the test and returns status 0 (not Fatalf: many
// callers are goroutines whose result a test waits for, and Fatalf would
// end the goroutine and leave the test waiting).
func (h *harness) do(method, path, token string, body []byte) (int, []byte) {
	h.tb.Helper()
	resp, err := h.roundTrip(method, path, token, "application/json", body, 10*time.Second)
	if err != nil {
		h.tb.Errorf("%s %s: %v", method, path, err)
		return 0, []byte(err.Error())
	}
	defer fasthttp.ReleaseResponse(resp)
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

// answer is a decoded settlement answer.
// rawConn is a connection to the harness's server for writing HTTP by
// hand, with a 5 s deadline so that a server that never answers fails
// the test instead of hanging it.
func (h *harness) rawConn(tb testing.TB) net.Conn {
	tb.Helper()
	c, err := h.ln.Dial()
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

type answer struct {
	SettlementID string            `json:"settlement_id"`
	Seq          uint64            `json:"seq"`
	Replayed     bool              `json:"replayed"`
	Reverses     string            `json:"reverses"`
	ReversedBy   string            `json:"reversed_by"`
	Policy       map[string]string `json:"policy"`
	Amounts      map[string]string `json:"amounts"`
	Lines        []map[string]any  `json:"lines"`
	Notes        []string          `json:"notes"`
	Error        *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func decodeAnswer(tb testing.TB, body []byte) answer {
	tb.Helper()
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		tb.Fatalf("answer is not JSON: %v\n%s", err, body)
	}
	return a
}

// ledgerState is everything a failed request must leave unchanged.
func (h *harness) head() uint64 {
	seq, _ := h.db.Head()
	return seq
}

func newMemFS() vfs.FS { return vfs.NewMem() }

// doEarly is do for a request the server may answer before it has read
// the body (a refused token on an upload route): like net/http's client,
// it reads the answer while it writes the body.
func (h *harness) doEarly(method, path, token string, body []byte) (int, []byte) {
	h.tb.Helper()
	c, err := h.ln.Dial()
	if err != nil {
		h.tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	head := method + " " + path + " HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n"
	if token != "" {
		head += "Authorization: Bearer " + token + "\r\n"
	}
	go func() {
		// A write error is the server closing after its answer.
		if _, err := c.Write([]byte(head + "\r\n")); err == nil {
			c.Write(body)
		}
	}()
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		h.tb.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}
