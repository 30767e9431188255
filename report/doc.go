// Package report turns what the state database records into what people
// read: the read models of `rotator status`, `rotator plan` and `rotator
// history`, and their table and JSON renderings. It reads and renders; it
// never writes state and never computes a due time itself.
//
// # Due times
//
// status and plan show each secret's due time as daemon.Generation.Preview
// gives it: schedule.Rule.Due applied to the secret's recorded history (the
// same function and the same facts from which the engine, `run --due` and
// the daemon record next_due_at, and on which `run --due --dry-run`
// decides). After any `run --due` or daemon (re)load with the same
// policies, that is exactly the stored next_due_at; with changed policies
// it is what the next one records. A quarantined secret has no due time.
//
// # JSON
//
// status -o json is one object per secret of the policies, with the state
// row's fields (a secret with no row is shown as never rotated), plus due
// (absent when quarantined), interval, interval_seconds, age_seconds,
// overdue, active_run, active_step, active_status and held (the active run
// is held at verify).
//
// # Conditions
//
// ConditionOf reduces a status row (and whether its published credential
// is broken) to the one word the status page highlights; Conditions lists
// them from the one that most needs a person (broken) to ok. plan -o json is one object per secret: secret, class, due
// (absent when quarantined), due_local, why, steps, status. history -o json
// is the runs, newest first, with their steps.
package report
