package meter

// ScopeCosts exposes scopeCosts to the tests.
func ScopeCosts(code []byte) ([]int64, error) { return scopeCosts(code, nil) }
