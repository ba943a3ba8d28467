package cases

import "testing"

// TestR10NamesAreDistinct: Names gives each case a name of its own, so that
// a failure names the case that failed; an unnamed case got "case <i>"
// even when an earlier case was named so, and `policy check` then printed
// the one's failure for both.
func TestR10NamesAreDistinct(t *testing.T) {
	for _, cs := range [][]Case{
		{{Name: "case 1"}, {}},
		{{Name: "a (case 1)"}, {Name: "a"}, {Name: "a"}},
		{{Name: "case 2"}, {Name: "case 2"}, {}},
	} {
		names := Names(cs)
		seen := map[string]int{}
		for i, n := range names {
			if j, dup := seen[n]; dup {
				t.Fatalf("Names = %q: cases %d and %d share %q", names, j, i, n)
			}
			seen[n] = i
		}
	}
}
