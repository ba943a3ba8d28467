package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"medgate/engine/abi"
	"medgate/plugins/internal/policytest"
)

// goTool finds the go command, or "" when there is none.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// buildModules builds every reference module into dir concurrently, the way
// the Makefile does, and returns their paths by "region/version".
func buildModules(t *testing.T, dir string) map[string]string {
	t.Helper()
	goCmd := goTool()
	if goCmd == "" {
		t.Skip("go command not found")
	}
	paths := map[string]string{}
	errs := make([]error, len(Versions))
	var wg sync.WaitGroup
	for i, v := range Versions {
		key := v.Region + "/" + v.Name
		out := filepath.Join(dir, v.Region, v.Name+".wasm")
		paths[key] = out
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(goCmd, "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./plugins/regions/"+key)
			cmd.Dir = "../.."
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build %s: %v\n%s", key, err, b)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// guest is one instance of a module, called through the ABI's exports.
type guest struct {
	mod                          api.Module
	abiVersion, inputBuf, settle api.Function
}

func instantiate(ctx context.Context, t *testing.T, r wazero.Runtime, name, path string) *guest {
	t.Helper()
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	compiled, err := r.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("%s: compile: %v", name, err)
	}
	for _, imp := range compiled.ImportedFunctions() {
		if mod, _, _ := imp.Import(); mod != wasi_snapshot_preview1.ModuleName {
			t.Errorf("%s imports from %q", name, mod)
		}
	}
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().
		WithName(name).WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatalf("%s: instantiate: %v", name, err)
	}
	g := &guest{mod: mod, abiVersion: mod.ExportedFunction("abi_version"),
		inputBuf: mod.ExportedFunction("input_buffer"), settle: mod.ExportedFunction("settle")}
	if g.abiVersion == nil || g.inputBuf == nil || g.settle == nil || mod.Memory() == nil {
		t.Fatalf("%s: missing exports", name)
	}
	return g
}

// call runs one settlement through the exports and returns a copy of the
// encoded Output.
func (g *guest) call(ctx context.Context, input []byte) ([]byte, error) {
	res, err := g.inputBuf.Call(ctx, uint64(len(input)))
	if err != nil {
		return nil, err
	}
	if !g.mod.Memory().Write(uint32(res[0]), input) {
		return nil, fmt.Errorf("input buffer %#x+%d out of memory", uint32(res[0]), len(input))
	}
	res, err = g.settle.Call(ctx, uint64(len(input)))
	if err != nil {
		return nil, err
	}
	ptr, n := uint32(res[0]>>32), uint32(res[0])
	out, ok := g.mod.Memory().Read(ptr, n)
	if !ok {
		return nil, fmt.Errorf("output %#x+%d out of memory", ptr, n)
	}
	return bytes.Clone(out), nil
}

// TestWasmEquivalence builds the four modules and checks that each answers
// every example call with exactly the bytes of the native policy.
func TestWasmEquivalence(t *testing.T) {
	paths := buildModules(t, t.TempDir())

	// The calls of every example, by module.
	calls := map[string][]policytest.Settled{}
	for _, ex := range loadExamples(t) {
		for _, c := range policytest.RunExample(ex, Pick, t.Errorf) {
			key := c.Region + "/" + c.Version
			calls[key] = append(calls[key], c)
		}
	}

	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)

	for _, v := range Versions {
		key := v.Region + "/" + v.Name
		g := instantiate(ctx, t, r, key, paths[key])
		if res, err := g.abiVersion.Call(ctx); err != nil || uint32(res[0]) != abi.Version {
			t.Errorf("%s: abi_version = %v, %v", key, res, err)
		}
		list := calls[key]
		if len(list) == 0 && v.Name != "v2023" {
			t.Errorf("%s: no example calls", key)
		}
		// A few calls of the other versions too, so that every module
		// answers a variety of inputs; then everything again in reverse
		// order: an instance keeps no state between calls.
		for _, w := range Versions {
			if w.Region != v.Region || w.Name != v.Name {
				other := calls[w.Region+"/"+w.Name]
				for i := 0; i < len(other); i += 7 {
					c := other[i]
					c.Output = policytest.RunBytes(v.Policy, c.Input)
					list = append(list, c)
				}
			}
		}
		for pass := 0; pass < 2; pass++ {
			for i := range list {
				c := list[i]
				if pass == 1 {
					c = list[len(list)-1-i]
				}
				got, err := g.call(ctx, c.Input)
				if err != nil {
					t.Fatalf("%s %s: %v", key, c.Name, err)
				}
				if !bytes.Equal(got, c.Output) {
					t.Errorf("%s %s: wasm output differs from native", key, c.Name)
				}
			}
		}
		// A malformed input is refused, not trapped, and the instance
		// still answers correctly afterwards.
		got, err := g.call(ctx, []byte{1, 0, 0, 0, 9})
		if err != nil {
			t.Fatalf("%s: malformed input: %v", key, err)
		}
		var out abi.Output
		if err := out.Decode(got); err != nil || out.Refusal == "" {
			t.Errorf("%s: malformed input: refusal %q, %v", key, out.Refusal, err)
		}
		if len(list) > 0 {
			if got, err := g.call(ctx, list[0].Input); err != nil || !bytes.Equal(got, list[0].Output) {
				t.Errorf("%s: after a refusal: %v", key, err)
			}
		}
		// A panic in the guest traps the call; nothing is answered (the
		// host discards the instance).
		if _, err := g.settle.Call(ctx, 1<<30); err == nil {
			t.Errorf("%s: settle beyond the input buffer did not trap", key)
		}
		t.Logf("%s: %d calls identical", key, 2*len(list))
	}
}
