package killtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"medgate/gateway/internal/testenv"
)

// env reads the run's settings; the tests skip when MEDGATE_CRASH_CYCLES
// is not set.
type env struct {
	cycles  int
	seed    int64
	workers int
}

func readEnv(t *testing.T) env {
	t.Helper()
	n, _ := strconv.Atoi(os.Getenv("MEDGATE_CRASH_CYCLES"))
	if n <= 0 {
		t.Skip("set MEDGATE_CRASH_CYCLES (make crash-short, make crash) to run the kill loop against the real binary")
	}
	e := env{cycles: n, seed: time.Now().UnixNano() % 1_000_000_000, workers: 8}
	if s := os.Getenv("MEDGATE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("MEDGATE_CRASH_SEED: %v", err)
		}
		e.seed = v
	}
	if s := os.Getenv("MEDGATE_CRASH_WORKERS"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			e.workers = v
		}
	}
	return e
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TestMain removes the binary that binary built: it is per test process,
// and each run otherwise left 32 MB in the temporary directory.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// binary builds cmd/medgate once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "medgate-killtest-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "medgate")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/medgate")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/medgate: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is one run of `medgate serve`.
type proc struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	log  *lockedBuffer
	done chan struct{}
	err  error // the process's exit, once done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the gateway on the reference world with its ledger in db.
// It does not wait for it to serve (see ready).
func start(t *testing.T, db string, extra ...string) *proc {
	t.Helper()
	return startBin(t, binary(t), testenv.ModuleDir(t), db, extra...)
}

// startBin is start with a given binary and policy modules directory.
func startBin(t *testing.T, bin, modules, db string, extra ...string) *proc {
	t.Helper()
	port := freePort(t)
	args := append([]string{"serve", "--world", filepath.Join(testenv.RepoRoot(), "testdata", "world"), "--db", db,
		"--listen", "127.0.0.1:" + strconv.Itoa(port), "--modules", modules}, extra...)
	p := &proc{cmd: exec.Command(bin, args...), base: "http://127.0.0.1:" + strconv.Itoa(port),
		log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	// A test that stops while the gateway runs must not leave it running:
	// it would outlive the test holding its files (on a powerfs mount,
	// whose cleanup runs after this one, the unmount would then fail and
	// leave the mount behind).
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

// ready waits until /healthz answers 200.
func (p *proc) ready(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("the gateway exited before serving: %v\n%s", p.err, tail(p.log.String(), 30))
		default:
		}
		resp, err := c.Get(p.base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the gateway did not serve within %v\n%s", within, tail(p.log.String(), 30))
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway survived SIGKILL for 30 s")
	}
}

// term sends SIGTERM and returns the exit code.
func (p *proc) term(t *testing.T, within time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		t.Fatalf("the gateway did not stop within %v of SIGTERM\n%s", within, tail(p.log.String(), 30))
	}
	return p.cmd.ProcessState.ExitCode()
}

var replayedRE = regexp.MustCompile(`replayed (\d+) keys in (\d+) batches`)

// walReplayed sums the keys pebble replayed from the WAL at open, from a
// debug log.
func walReplayed(log string) (keys int, found bool) {
	for _, m := range replayedRE.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		keys += n
		found = true
	}
	return keys, found
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// worldFacts are the reference world's hospitals and persons.
type worldFacts struct {
	hospitals []string
	persons   []personRef
}

type personRef struct{ id, region string }

func readWorld(t *testing.T) worldFacts {
	t.Helper()
	root := filepath.Join(testenv.RepoRoot(), "testdata", "world")
	var w worldFacts
	b, err := os.ReadFile(filepath.Join(root, "hospitals.json"))
	if err != nil {
		t.Fatal(err)
	}
	var hs []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &hs); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		w.hospitals = append(w.hospitals, h.ID)
	}
	files, _ := filepath.Glob(filepath.Join(root, "persons", "*.ndjson"))
	for _, f := range files {
		region := strings.TrimSuffix(filepath.Base(f), ".ndjson")
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var p struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(sc.Bytes(), &p) == nil && p.ID != "" {
				w.persons = append(w.persons, personRef{p.ID, region})
			}
		}
		fh.Close()
	}
	if len(w.hospitals) == 0 || len(w.persons) == 0 {
		t.Fatal("the reference world has no hospitals or persons")
	}
	return w
}

// call sends one request; err is a transport error (no answer).
func call(ctx context.Context, c *http.Client, method, url, token string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}
