package conformance

import (
	"testing"

	"medgate/plugins/internal/policytest"
)

const examplesDir = "../../testdata/spec/examples"

func loadExamples(t testing.TB) []*policytest.Example {
	t.Helper()
	list, err := policytest.LoadExamples(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		t.Fatalf("no examples in %s", examplesDir)
	}
	return list
}

// TestExamples runs every request of every example file through the native
// policies and compares all 13 amounts with the expected ones.
func TestExamples(t *testing.T) {
	n := 0
	for _, ex := range loadExamples(t) {
		t.Run(ex.Name, func(t *testing.T) {
			calls := policytest.RunExample(ex, Pick, t.Errorf)
			n += len(calls)
		})
	}
	t.Logf("%d policy calls", n)
}
