package gateway

import (
	"context"
	"net"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"
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
