// Package state keeps rotator's durable state in Postgres (pgx/v5).
//
// # Schema
//
// Migrations are embedded (migrations/*.sql) and applied by Migrate, each in
// its own transaction together with its row in rotator_schema_migrations.
// Migrate is idempotent, serialised by an advisory lock, and refuses a schema
// newer than the binary. Every other command calls CheckSchema first.
//
// Tables: rotator_secrets (one row per managed secret: status, current and
// previous version metadata, last outcome, next due time), rotator_runs (one
// row per rotation or rollback), rotator_steps (the journal: a row written
// before each external action, completed after it), rotator_audit
// (append-only: a trigger rejects UPDATE and DELETE), rotator_leases and
// rotator_schedule_sync (one row: the key of the last schedule sync, so a
// tick with unchanged policies skips it).
//
// # No plaintext
//
// Nothing here holds a plaintext secret. Credentials are described by Meta
// (username, key id). A run that must keep its new credential across a crash
// stores it sealed (internal/seal: AES-256-GCM, run id as associated data) in
// rotator_runs.sealed.
//
// # Leases and fencing
//
// A per-secret lease (AcquireLease) makes a run advance in one place at a
// time. Each takeover increments the lease's token.
//
// # One write path
//
// Every write of a run's state goes through InBatch: its writes (Batch
// methods, each holding its SQL once) are pipelined behind a fence
// statement that locks the lease row and fails on a stale token, and the
// server runs the pipeline as one implicit transaction, in one round trip.
// So a process that lost its lease (it stalled past the expiry and another
// took over) cannot write, and a batch lands whole or not at all. A unique
// index allows one unfinished run per secret, as a second line of
// defence. Writes that need no lease (SyncSecrets, SetNextDue,
// RecordScheduleSync, Resume, the notification episodes) are DB methods.
//
// # Typed values
//
// Run statuses, step names, step outcomes, triggers and secret statuses are
// typed constants (types.go); nothing else spells them.
//
// After taking a lease, callers re-read the secret and its active run
// before deciding what to do.
package state
