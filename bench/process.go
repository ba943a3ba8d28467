package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Process is a server under test running as a child process, so that its
// CPU, memory and garbage collector are its own, as in production.
type Process struct {
	Name string
	Addr string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// GatewayConfig is how to start the real gateway binary.
type GatewayConfig struct {
	Binary  string // the medgate binary
	World   string // world directory
	DB      string // ledger directory (should be fresh)
	Modules string // <region>/<version>.wasm directory
	// Native runs the reference policies compiled into the binary
	// (--native-policies) instead of their wasm modules.
	Native bool
	// Log receives the gateway's stderr (warn level and above).
	Log string
	// Admin, if set, is the address of the gateway's admin listener
	// (--admin-listen: pprof and /metrics), for profiling.
	Admin string
	// Extra flags for `medgate serve`.
	Extra []string
}

// StartGateway starts `medgate serve` on a free local port and waits until
// GET /healthz answers 200.
func StartGateway(ctx context.Context, cfg GatewayConfig) (*Process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--world", cfg.World, "--db", cfg.DB, "--listen", addr,
		"--log-level", "warn", "--modules", cfg.Modules}
	if cfg.Native {
		args = append(args, "--native-policies")
	}
	if cfg.Admin != "" {
		args = append(args, "--admin-listen", cfg.Admin)
	}
	args = append(args, cfg.Extra...)
	name := "gateway"
	if cfg.Native {
		name = "gateway-native"
	}
	return start(ctx, name, addr, cfg.Log, exec.Command(cfg.Binary, args...))
}

func start(ctx context.Context, name, addr, logPath string, cmd *exec.Cmd) (*Process, error) {
	p := &Process{Name: name, Addr: addr, cmd: cmd, done: make(chan struct{})}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		p.log = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		p.closeLog()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitHealthy(ctx, 2*time.Minute); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// waitHealthy polls GET /healthz until it answers 200, the process exits
// or the time is up.
func (p *Process) waitHealthy(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	url := "http://" + p.Addr + "/healthz"
	for {
		status, _, err := fasthttp.GetTimeout(nil, url, time.Second)
		if err == nil && status == fasthttp.StatusOK {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("bench: %s exited before it was healthy (%v); see its log %s", p.Name, p.err, p.logName())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s not healthy at %s after %s; see its log %s", p.Name, url, limit, p.logName())
		}
	}
}

func (p *Process) logName() string {
	if p.log == nil {
		return "(none)"
	}
	return p.log.Name()
}

func (p *Process) closeLog() {
	if p.log != nil {
		p.log.Close()
	}
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Memory reads the child's resident set (VmRSS) and its peak (VmHWM), in
// KiB, from /proc. Zeros when they cannot be read (not Linux, exited).
func (p *Process) Memory() (rss, hwm int64) {
	return procMemory(p.Pid())
}

func procMemory(pid int) (rss, hwm int64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		field := func(name string) (int64, bool) {
			if !strings.HasPrefix(line, name) {
				return 0, false
			}
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(line[len(name):]), " kB"), 10, 64)
			return v, err == nil
		}
		if v, ok := field("VmRSS:"); ok {
			rss = v
		}
		if v, ok := field("VmHWM:"); ok {
			hwm = v
		}
	}
	return rss, hwm
}

// Stop asks the child to shut down (SIGTERM: the gateway finishes in-flight
// requests and closes its ledger), and kills it after 30 s.
func (p *Process) Stop() error {
	defer p.closeLog()
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			return fmt.Errorf("bench: %s exited with %v; see its log %s", p.Name, p.err, p.logName())
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("bench: %s did not stop within 30 s of SIGTERM; killed", p.Name)
	}
}

// freeAddr picks a free local port. Another process could take it before
// the child binds it; the child then fails to start and says so.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
