package bench

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/gateway"
	"medgate/plugins/conformance"
)

// Every request the traffic generates is one the gateway answers 200 as a
// fresh write (settlements, reversals) or a quote: none is a 4xx counted
// as throughput. The real gateway in-process, on a fresh ledger of the
// bench world, with the reference policies (natively: the same answers,
// fast to start), for a short closed loop with many quotes and reversals.
func TestR4EveryGeneratedRequestIsAnswered200(t *testing.T) {
	w := testWorld(t)
	ready := make(chan net.Addr, 1)
	cfg := gateway.Config{Listen: "127.0.0.1:0", DBDir: t.TempDir(), World: os.DirFS(w.Dir),
		Logger: zerolog.Nop(), Ready: func(a net.Addr) { ready <- a }}
	for _, v := range conformance.Versions {
		cfg.Native = append(cfg.Native, engine.Version{Name: v.Name, EffectiveFrom: v.Effective,
			Module: engine.NewNative(v.Region, v.Name, v.Policy)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- gateway.Run(ctx, cfg) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-served:
		t.Fatal(err)
	case <-time.After(time.Minute):
		t.Fatal("the gateway did not start")
	}
	traffic := NewTraffic(w, TrafficConfig{Seed: 21, Nonce: 31, QuotePermille: 100, ReversalPermille: 100})
	res, err := RunLoad(ctx, LoadConfig{Addr: addr.String(), Mode: Closed, Connections: 4, Duration: 2 * time.Second, CheckBodies: true}, traffic)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.ErrorCount(); n > 0 {
		t.Errorf("%d of %d requests not answered 200 as expected: %v, e.g. %q", n, res.Requests, res.Errors, res.ErrorSamples)
	}
	if res.OK["settle"] == 0 || res.OK["quote"] == 0 || res.OK["reversal"] == 0 {
		t.Errorf("answered: %v", res.OK)
	}
	t.Logf("%d requests: %v", res.Requests, res.OK)
}
