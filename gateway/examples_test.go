package gateway

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"medgate/gateway/internal/testenv"
)

type exampleFile struct {
	Name     string    `json:"name"`
	World    worldJSON `json:"world"`
	Requests []struct {
		Op       string          `json:"op"`
		Hospital string          `json:"hospital"`
		Ref      string          `json:"ref"`
		Body     json.RawMessage `json:"body"`
		Note     string          `json:"note"`
		Expect   struct {
			Status        int               `json:"status"`
			ErrorCode     string            `json:"error_code"`
			PolicyVersion string            `json:"policy_version"`
			Amounts       map[string]string `json:"amounts"`
			Lines         []map[string]any  `json:"lines"`
			Replayed      *bool             `json:"replayed"`
		} `json:"expect"`
	} `json:"requests"`
}

// TestExamples runs every worked example of the spec (testdata/spec/examples)
// through the real HTTP handler, each file on a fresh ledger, and compares
// every answer exactly.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "spec", "examples", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var ex exampleFile
		if err := json.Unmarshal(b, &ex); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		t.Run(ex.Name, func(t *testing.T) {
			h := newHarness(t, ex.World.toWorld(t))
			ids := map[string]string{} // request_id -> settlement_id
			for i, r := range ex.Requests {
				var probe struct {
					RequestID string `json:"request_id"`
				}
				json.Unmarshal(r.Body, &probe)
				label := fmt.Sprintf("request %d (%s %s)", i, r.Op, probe.RequestID)
				var path string
				switch r.Op {
				case "settle":
					path = "/v1/settlements"
				case "quote":
					path = "/v1/settlements/quote"
				case "reversal":
					id, ok := ids[r.Ref]
					if !ok {
						t.Fatalf("%s: reverses unknown request %s", label, r.Ref)
					}
					path = "/v1/settlements/" + id + "/reversal"
				default:
					t.Fatalf("%s: unknown op", label)
				}
				before := h.head()
				status, body := h.do("POST", path, "tok-"+r.Hospital, r.Body)
				a := decodeAnswer(t, body)
				if status != r.Expect.Status {
					t.Fatalf("%s: status %d, want %d\nnote: %s\n%s", label, status, r.Expect.Status, r.Note, body)
				}
				if status != 200 {
					if r.Expect.ErrorCode != "" && (a.Error == nil || a.Error.Code != r.Expect.ErrorCode) {
						t.Fatalf("%s: error %s, want code %s", label, body, r.Expect.ErrorCode)
					}
					if h.head() != before {
						t.Fatalf("%s: an error wrote to the ledger", label)
					}
					continue
				}
				if r.Op == "settle" {
					ids[probe.RequestID] = a.SettlementID
				}
				if got := a.Policy["version"]; r.Expect.PolicyVersion != "" && got != r.Expect.PolicyVersion {
					t.Errorf("%s: policy version %s, want %s", label, got, r.Expect.PolicyVersion)
				}
				for k, want := range r.Expect.Amounts {
					if got := a.Amounts[k]; got != want {
						t.Errorf("%s: %s = %s, want %s\nnote: %s\nnotes: %q", label, k, got, want, r.Note, a.Notes)
					}
				}
				if len(a.Lines) != len(r.Expect.Lines) {
					t.Errorf("%s: %d lines, want %d", label, len(a.Lines), len(r.Expect.Lines))
				} else {
					for j, want := range r.Expect.Lines {
						for k, v := range want {
							if a.Lines[j][k] != v {
								t.Errorf("%s: lines[%d].%s = %v, want %v", label, j, k, a.Lines[j][k], v)
							}
						}
					}
				}
				if r.Expect.Replayed != nil && a.Replayed != *r.Expect.Replayed {
					t.Errorf("%s: replayed %v, want %v", label, a.Replayed, *r.Expect.Replayed)
				}
				if r.Op == "quote" && h.head() != before {
					t.Errorf("%s: a quote wrote to the ledger", label)
				}
				if r.Op != "quote" && h.head() != before+1 {
					t.Errorf("%s: ledger head %d, want %d", label, h.head(), before+1)
				}
			}
			if n, err := h.db.Verify(); err != nil {
				t.Fatalf("chain of %d entries does not verify: %v", n, err)
			}
		})
	}
}
