// Package killtest runs the real medgate binary under load and kills it:
// its tests (killtest_test.go, powerloss_test.go, shutdown_test.go) are the
// crash, power-cut and graceful-shutdown tests of README "Faults and
// guarantees". The power cut is package powerfs: a FUSE mount that loses
// what was not synced.
//
// They are skipped unless MEDGATE_CRASH_CYCLES is set, so that `go test
// ./...` stays fast:
//
//	MEDGATE_CRASH_CYCLES=10  go test ./gateway/killtest -v   # make crash-short
//	MEDGATE_CRASH_CYCLES=100 go test ./gateway/killtest -v   # make crash
//
// MEDGATE_CRASH_SEED replays a run's choices (kill moments, request mix and
// bodies; the interleaving of a real process is not replayable, so a
// failing run keeps its ledger directory and prints it: `medgate audit
// --db DIR` looks at it exactly as the crash left it). MEDGATE_CRASH_WORKERS
// sets the number of concurrent clients (default 8).
package killtest
