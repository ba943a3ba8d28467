package bench

import (
	"bytes"
	"errors"
	"fmt"
	"medgate/plugins/modbuild"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// FindRepoRoot walks up from dir to the directory whose go.mod declares
// module medgate.
func FindRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module medgate")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: not inside the medgate repository (no go.mod declaring module medgate above the working directory)")
		}
		dir = parent
	}
}

// BuildGateway builds the real gateway binary (./cmd/medgate) to out. The
// bench measures that binary, not an in-process copy, so what it reports
// is what `medgate serve` does.
func BuildGateway(root, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/medgate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: go build ./cmd/medgate: %v\n%s", err, b)
	}
	return nil
}

// PolicyModule is one policy version a world names: its module is built
// from ./plugins/regions/<Region>/<Version>.
type PolicyModule struct{ Region, Version string }

// WorldPolicies lists the policies/<region>/<version>.json of a world.
func WorldPolicies(world string) ([]PolicyModule, error) {
	metas, err := filepath.Glob(filepath.Join(world, "policies", "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var ps []PolicyModule
	for _, m := range metas {
		ps = append(ps, PolicyModule{Region: filepath.Base(filepath.Dir(m)), Version: strings.TrimSuffix(filepath.Base(m), ".json")})
	}
	return ps, nil
}

// ModuleDir returns a directory with <region>/<version>.wasm for every one
// of policies: preferred (build/policies, what `make policies` builds)
// when each module there is newer than every guest source, else a fresh
// build into scratch (the way the gateway tests do, so that `go test`
// works without make).
func ModuleDir(root, preferred, scratch string, policies []PolicyModule) (string, error) {
	mods := make([]modbuild.Module, len(policies))
	for i, p := range policies {
		mods[i] = modbuild.Module{Region: p.Region, Version: p.Version}
	}
	if modbuild.Fresh(root, preferred, mods) {
		return preferred, nil
	}
	if err := modbuild.Build(root, scratch, mods); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return scratch, nil
}
