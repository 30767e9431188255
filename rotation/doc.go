// Package rotation is the engine: it runs the five steps of a rotation
// (generate, publish, verify, retire, monitor) for one secret at a time,
// journals each of them in the state database, retries, rolls back, and
// defines the two seams the rest of the program plugs into: Rotator (the
// target-side work for one kind of credential) and Store (a place versions
// are published to). Neither seam calls the other; the engine owns the
// order.
//
// # A run
//
// Engine.Run takes the secret's lease (state.AcquireLease, renewed in the
// background), re-reads the secret and its unfinished run, and advances the
// run from its last durable step:
//
//	generate  Rotator.Generate creates and tests the new credential; it is
//	          sealed (AES-256-GCM, run id as associated data) into the run
//	          row; each store stages it (AWS: AWSPENDING).
//	publish   each store makes it current (idempotent per run id); then the
//	          secret's current/previous versions are recorded.
//	verify    Rotator.Clients and the Checks are polled until all pass or
//	          the grace ends (then on_timeout: hold keeps both valid and
//	          alerts once; proceed retires anyway). Between polls the run is
//	          "waiting" with wait_until: a later Run continues it.
//	retire    Rotator.Retire disables the old credential. If it keeps
//	          failing the run waits and retries later; both stay valid.
//	monitor   Rotator.Test re-tests the new credential until the monitor
//	          window ends; a failure rolls back.
//
// Every external action is journaled as a step row before it starts and
// completed after, and tried up to Retry.Attempts times with exponential
// backoff (a Permanent error stops at once).
//
// # Failure and rollback
//
// A failure before the version is fully published ends the run as failed:
// stores that took the new version are rolled back, staged versions are
// aborted and the new credential is discarded. The old credential was never
// touched, so clients keep working. Rollback (by hand, or from monitor)
// re-enables the previous credential first and only then rolls the stores
// back; if the credential cannot be restored the stores are left alone.
//
// # Crashes
//
// Every step is idempotent, so a run interrupted anywhere is resumed by the
// next Run from its last durable step. Hooks let tests "crash" the engine at
// any step boundary.
//
// # Secrets
//
// No plaintext secret reaches the state database, a log line, an event or
// an error: the new credential exists in memory and sealed in the run row,
// and every error text is passed through Redact before it is kept.
package rotation
