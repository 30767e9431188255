// Package bench measures the engine against the floor: the same external
// operations a blue/green Postgres rotation needs (ALTER ROLE with a SCRAM
// verifier, one login with the new password, one NOLOGIN, one store write)
// done in a plain loop with the same concurrency. docs/proof.md has the
// commands and the numbers. scale.sh measures the scheduler at scale (run
// --due with nothing due, the daemon at 100,000 secrets) and compare.py
// compares its results with baseline-scale.txt (docs/performance.md).
package bench
