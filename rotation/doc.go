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
// Engine.Run takes the secret's lease and reads the secret and its
// unfinished run in one round trip (state.AcquireLeaseAndRead; the lease is
// renewed in the background), and advances the run from its last durable
// step. A run that succeeds gives the lease up with its last write; a
// renewal refused once that write is sent is the release, not a loss, but
// one that gets no answer is not: the write still ends by the safe time
// below. The lease holder is unique per run
// (host:pid:nonce/run), and a live lease is never re-entered, so a second
// run of the secret anywhere, this process included, is ErrBusy. Renewals
// have a deadline; when none has succeeded for 2/3 of the TTL the run's
// context ends (and with it any external action in flight), so a process
// whose state connection froze stops acting before its lease can expire;
// an action starts only while the lease has at least min(action timeout,
// TTL/3) left. Each destructive Rotator request carries the lease
// token (Fence) for targets that check it; a refusal (ErrFenced) stops the
// run where it is, compensating nothing. The steps:
//
//	generate  Rotator.Generate creates and tests the new credential; it is
//	          sealed (AES-256-GCM, run id as associated data) into the run
//	          row; each store stages it (AWS: AWSPENDING). A rotator that
//	          changes the live credential in place (single-role) only
//	          prepares it here (GenerateRequest.Prepare, Unapplied).
//	publish   a prepared credential is set at the target first (Generate
//	          with Apply, journaled as generate; a failure there is a
//	          failed generate, compensated by setting the published
//	          password back); then each store makes it current
//	          (idempotent per run id); then the secret's current/previous
//	          versions are recorded.
//	verify    Rotator.Clients and the Checks are evaluated until all pass
//	          or the grace ends (then on_timeout: hold keeps both valid and
//	          alerts once; proceed retires anyway). Between two looks the
//	          run is "waiting" with wait_until: when the soonest check that
//	          did not pass can change its answer (a Delay's end, exactly;
//	          a Poller's interval, Target.ClientsInterval for Clients),
//	          never after the grace. A later Run continues it.
//	retire    Rotator.Retire disables the old credential. If it keeps
//	          failing the run waits and retries later; both stay valid.
//	monitor   Rotator.Test re-tests the new credential until the monitor
//	          window ends; a failure rolls back.
//
// Every external action is journaled as a step row before it starts and
// completed after, and tried up to Retry.Attempts times with exponential
// backoff (a Permanent error stops at once).
//
// # Observe first
//
// The world is the truth, the journal a record. Before a run starts or
// resumes, before retire and before a failed run's credential is
// discarded, the engine reads what every store publishes (Describe) and
// compares it with the journal (observe.go): it adopts what the stores
// consistently publish (a restored state database), ends a stale
// unfinished run as superseded without touching anything, or marks the
// secret drift (ErrDrift) and touches nothing until Engine.Adopt. A new
// version's number is above every number the state database or any store
// has recorded.
//
// # Failure, compensation and rollback
//
// A failure before the version is published everywhere moves the run to
// the compensate step (compensate.go): each store that took the version is
// rolled back and staged versions are aborted, as journaled actions with
// retries; then, once no store publishes it, the new credential is
// discarded (single-role: the old password is set back). A store that
// cannot be put back leaves the run needs_attention, the new credential
// valid and sealed, and later runs continue the compensation. Rollback (by
// hand, or from monitor) is derived from what the stores publish as
// previous: that credential is re-enabled and must log in before any store
// is changed, or the rollback is refused; it is idempotent.
//
// # Crashes
//
// Every step is idempotent, so a run interrupted anywhere is resumed by the
// next Run from its last durable step. Hooks let tests "crash" the engine at
// any step boundary.
//
// # Checks
//
// Checker (check.go) tests, read-only and without a lease, what each store
// publishes as current: it reads the version, tests it with Rotator.Test,
// compares the stores, sets rotator_published_credential_ok and emits one
// credential_broken event per broken credential. `rotator check` and the
// daemon's schedule call it.
//
// # Secrets
//
// No plaintext secret reaches the state database, a log line, an event or
// an error: the new credential exists in memory and sealed in the run row,
// and every error text is passed through Redact before it is kept.
package rotation
