package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// helloEnv, when set in a process's environment, makes MaybeRunHelloChild
// serve hello-world on its value (an address) instead of returning.
const helloEnv = "MEDBENCH_HELLO_LISTEN"

// helloProcsEnv sets the hello-world child's GOMAXPROCS (see StartHello).
const helloProcsEnv = "MEDBENCH_HELLO_PROCS"

var helloBody = []byte(`{"ok":true}`)

// NewHelloServer is the baseline server: fasthttp configured like the
// gateway's, answering every request (body read, as fasthttp always does)
// with a small JSON body and no work. Its throughput is the most the HTTP
// layer and the client can do on this machine.
func NewHelloServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(helloBody)
		},
		Name:               "hello",
		MaxRequestBodySize: 8 << 20,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        120 * time.Second,
	}
}

// MaybeRunHelloChild turns this process into the hello-world server when
// StartHello started it (the bench re-executes its own binary, so the
// baseline needs no separate build and runs in its own process like the
// gateway). Call it first thing in main or TestMain. It returns only when
// this process is not such a child.
func MaybeRunHelloChild() {
	addr := os.Getenv(helloEnv)
	if addr == "" {
		return
	}
	if n, _ := strconv.Atoi(os.Getenv(helloProcsEnv)); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serveHello(ctx, addr); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveHello(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := NewHelloServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		return srv.Shutdown()
	}
}

// StartHello starts the hello-world server as a child process (this
// binary, re-executed) and waits until it answers.
func StartHello(ctx context.Context, logPath string) (*Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helloEnv+"="+addr)
	return start(ctx, "hello", addr, logPath, cmd)
}
