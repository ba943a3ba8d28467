package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// adminHandler serves the operators' admin listener (--admin-listen, off by
// default): the Go profiler under /debug/pprof/, the metrics at /metrics,
// and at /debug/ledger the ledger store's own report (Pebble's per-level
// table of sizes, compactions and write amplification), which says where a
// big ledger's background work goes. It has no authentication: bind it to
// a loopback or private interface only.
func adminHandler(m *Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/ledger", func(w http.ResponseWriter, r *http.Request) {
		text := m.storeText.Load()
		if text == nil {
			http.Error(w, "no ledger", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, (*text)())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "medgate admin: /debug/pprof/ /debug/ledger /metrics\n")
	})
	return mux
}

// serveAdmin starts the admin listener on addr; stop shuts it down.
func serveAdmin(addr string, m *Metrics, log zerolog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: admin listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: adminHandler(m), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error().Err(err).Msg("admin listener stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("admin listener: /debug/pprof/, /debug/ledger, /metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
