// Package proof holds the tests behind docs/proof.md: the rotator is killed
// at every step boundary and at random points inside steps and must resume
// (TestCrashAnywhere); the target database, a store and Slack go away in
// the middle of a run (TestOutages); fifty clients keep logging in while
// the blue/green pair is rotated again and again (TestLiveClients).
//
// The default `go test ./proof` runs reduced sizes; PROOF_FULL=1 runs the
// sizes docs/proof.md reports (60 crash points, 200 rotations under load).
// The engine-against-floor benchmark is in package bench.
package proof
