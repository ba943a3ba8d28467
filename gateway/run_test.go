package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// TestRunRefusesAWorldWithoutPrincipals: --world pointed at the wrong
// directory (or one whose principals.json is missing or empty) would
// start a gateway that answers every token 401; the start stops instead,
// saying why.
func TestRunRefusesAWorldWithoutPrincipals(t *testing.T) {
	for name, world := range map[string]fstest.MapFS{
		"no principals.json":    {"hospitals.json": {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}]`)}},
		"empty principals.json": {"principals.json": {Data: []byte(`[]`)}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		served := false
		err := Run(ctx, Config{Listen: "127.0.0.1:0", DBDir: t.TempDir(), World: world, Logger: zerolog.Nop(),
			Ready: func(net.Addr) { served = true; cancel() }})
		cancel()
		if served || err == nil || !strings.Contains(err.Error(), "principals.json") {
			t.Errorf("%s: served %v, err %v", name, served, err)
		}
	}
}

// TestRunStartsOnALowDisk: a start while the ledger's disk is nearly full
// (here: a threshold no disk meets) serves what the ledger holds, degraded,
// rather than not at all: the world's registry writes are refused and
// logged, not fatal.
func TestRunStartsOnALowDisk(t *testing.T) {
	world := fstest.MapFS{
		"hospitals.json":  {Data: []byte(`[{"id": "H1", "region": "371602", "level": 3}]`)},
		"principals.json": {Data: []byte(`[{"token_sha256": "` + TokenHash("x") + `", "role": "hospital", "id": "H1"}]`)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	health := make(chan string, 1)
	err := Run(ctx, Config{Listen: "127.0.0.1:0", DBDir: t.TempDir(), World: world, Logger: zerolog.Nop(), LedgerMinFree: 1 << 62,
		Ready: func(addr net.Addr) {
			go func() { // Ready runs before Serve
				defer cancel()
				status, body, err := fasthttp.GetTimeout(nil, "http://"+addr.String()+"/healthz", 10*time.Second)
				if err != nil || status != 200 {
					health <- fmt.Sprintf("%d %v", status, err)
					return
				}
				health <- string(body)
			}()
		}})
	if err != nil {
		t.Fatalf("Run on a low disk: %v", err)
	}
	if h := <-health; !strings.Contains(h, `"disk_full"`) {
		t.Fatalf("/healthz on a low disk: %s", h)
	}
}
