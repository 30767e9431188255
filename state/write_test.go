package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/state"
)

// Each write of the one write path (Batch) is checked by the row it leaves.

// leased returns a database with secret db/a and a lease on it.
func leased(t *testing.T) (*state.DB, state.Lease) {
	t.Helper()
	ctx := context.Background()
	db := newDB(t)
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "db/a", Class: "database"}}))
	l, err := db.AcquireLease(ctx, "db/a", "me", time.Minute)
	require.NoError(t, err)
	return db, l
}

func write(t *testing.T, db *state.DB, l state.Lease, fn func(b *state.Batch)) {
	t.Helper()
	require.NoError(t, db.InBatch(context.Background(), l, func(b *state.Batch) error { fn(b); return nil }))
}

func secretRow(t *testing.T, db *state.DB) state.Secret {
	t.Helper()
	s, err := db.Secret(context.Background(), "db/a")
	require.NoError(t, err)
	return s
}

func newRun(id string) *state.Run {
	return &state.Run{ID: id, SecretID: "db/a", Trigger: state.TriggerManual, Attempt: 1,
		Status: state.RunRunning, Step: state.StepGenerate, Version: 1, Old: state.Meta{Username: "app"}}
}

func TestBatchIsFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, l := leased(t)
	// Another holder takes the lease (a live lease is never re-entered, so
	// it is released first, as an expiry would).
	require.NoError(t, db.ReleaseLease(ctx, l))
	taken, err := db.AcquireLease(ctx, "db/a", "other", time.Minute)
	require.NoError(t, err)
	require.Greater(t, taken.Token, l.Token)
	err = db.InBatch(ctx, l, func(b *state.Batch) error { b.Quarantine("db/a", "stale writer"); return nil })
	require.ErrorIs(t, err, state.ErrLeaseLost)
	require.Equal(t, state.SecretActive, secretRow(t, db).Status, "nothing of a fenced-out batch is written")
	log, err := db.AuditLog(ctx, "db/a")
	require.NoError(t, err)
	require.Empty(t, log)
}

func TestBatchInsertRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, l := leased(t)
	run := newRun("r1")
	write(t, db, l, func(b *state.Batch) { b.InsertRun(run) })
	require.False(t, run.StartedAt.IsZero(), "the batch fills in the row's timestamps")

	got, err := db.Run(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, state.RunRunning, got.Status)
	require.Equal(t, state.StepGenerate, got.Step)
	require.Equal(t, state.TriggerManual, got.Trigger)
	require.Equal(t, "me", got.Holder)
	require.Equal(t, "app", got.Old.Username)
	require.NotNil(t, secretRow(t, db).LastAttemptAt, "inserting a run records the attempt on the secret")

	// A second unfinished run of the same secret is refused, and nothing
	// of its batch is written.
	err = db.InBatch(ctx, l, func(b *state.Batch) error {
		b.Audit("db/a", "", "before", "")
		b.InsertRun(newRun("r2"))
		return nil
	})
	require.ErrorIs(t, err, state.ErrRunActive)
	_, err = db.Run(ctx, "r2")
	require.ErrorIs(t, err, state.ErrNotFound)
	log, err := db.AuditLog(ctx, "db/a")
	require.NoError(t, err)
	require.Empty(t, log)
}

func TestBatchUpdateRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, l := leased(t)
	run := newRun("r1")
	write(t, db, l, func(b *state.Batch) { b.InsertRun(run) })

	now := time.Now().UTC().Truncate(time.Microsecond)
	run.Status, run.Step, run.WaitUntil, run.Detail = state.RunWaiting, state.StepVerify, &now, "waiting for clients"
	run.New, run.Sealed, run.PublishedAt = state.Meta{Username: "app_blue"}, []byte("sealed"), &now
	write(t, db, l, func(b *state.Batch) { b.UpdateRun(run) })
	got, err := db.Run(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, state.RunWaiting, got.Status)
	require.Equal(t, state.StepVerify, got.Step)
	require.Equal(t, "app_blue", got.New.Username)
	require.Equal(t, []byte("sealed"), got.Sealed)
	require.Equal(t, "waiting for clients", got.Detail)
	require.True(t, now.Equal(*got.WaitUntil))
	require.True(t, now.Equal(*got.PublishedAt))
	active, err := db.ActiveRun(ctx, "db/a")
	require.NoError(t, err)
	require.Equal(t, "r1", active.ID)

	run.Status, run.Step, run.WaitUntil, run.FinishedAt, run.Sealed, run.Detail = state.RunSucceeded, state.StepDone, nil, &now, nil, ""
	write(t, db, l, func(b *state.Batch) { b.UpdateRun(run) })
	got, err = db.Run(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, got.Status)
	require.Nil(t, got.Sealed, "a finished run keeps no sealed credential")
	require.Nil(t, got.WaitUntil)
	require.Empty(t, got.Detail)
	active, err = db.ActiveRun(ctx, "db/a")
	require.NoError(t, err)
	require.Nil(t, active)

	// A run with no row fails the batch.
	err = db.InBatch(ctx, l, func(b *state.Batch) error { b.UpdateRun(newRun("missing")); return nil })
	require.ErrorIs(t, err, state.ErrNotFound)
}

func TestBatchJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, l := leased(t)
	run := newRun("r1")
	var id int64
	write(t, db, l, func(b *state.Batch) {
		b.InsertRun(run)
		b.StartStep(run.ID, state.StepGenerate, 1, &id)
	})
	require.NotZero(t, id)
	runs, err := db.Runs(ctx, "db/a", 10)
	require.NoError(t, err)
	require.Len(t, runs[0].Steps, 1)
	intent := runs[0].Steps[0]
	require.Equal(t, state.StepGenerate, intent.Step)
	require.Equal(t, 1, intent.Attempt)
	require.Nil(t, intent.FinishedAt, "an intent has no outcome yet")
	require.Empty(t, intent.Outcome)

	write(t, db, l, func(b *state.Batch) {
		b.FinishStep(id, state.OutcomeFailed, "connection refused", "re-key app_blue")
		b.JournalStep(run.ID, state.StepVerify, 1, state.OutcomeHeld, "", "2 sessions on app")
	})
	runs, err = db.Runs(ctx, "db/a", 10)
	require.NoError(t, err)
	require.Len(t, runs[0].Steps, 2)
	done, verify := runs[0].Steps[0], runs[0].Steps[1]
	require.NotNil(t, done.FinishedAt)
	require.Equal(t, state.OutcomeFailed, done.Outcome)
	require.Equal(t, "connection refused", done.Error)
	require.Equal(t, "re-key app_blue", done.Detail)
	require.Equal(t, state.StepVerify, verify.Step)
	require.Equal(t, state.OutcomeHeld, verify.Outcome)
	require.NotNil(t, verify.FinishedAt, "a journaled decision is intent and outcome in one row")
	require.Empty(t, verify.Error)
	require.Equal(t, "2 sessions on app", verify.Detail)
}

func TestBatchSetCurrent(t *testing.T) {
	t.Parallel()
	db, l := leased(t)
	write(t, db, l, func(b *state.Batch) {
		b.SetCurrent("db/a", 2, "r2", state.Meta{Username: "app_green"}, 1, "r1", state.Meta{Username: "app_blue"})
	})
	s := secretRow(t, db)
	require.Equal(t, int64(2), s.CurrentVersion)
	require.Equal(t, "r2", s.CurrentRunID)
	require.Equal(t, "app_green", s.Current.Username)
	require.Equal(t, int64(1), s.PreviousVersion)
	require.Equal(t, "r1", s.PreviousRunID)
	require.Equal(t, "app_blue", s.Previous.Username)

	// A first rotation has no previous run: stored as NULL, read as "".
	write(t, db, l, func(b *state.Batch) {
		b.SetCurrent("db/a", 1, "r1", state.Meta{Username: "app_blue"}, 0, "", state.Meta{Username: "app"})
	})
	s = secretRow(t, db)
	require.Empty(t, s.PreviousRunID)
	require.Equal(t, "app", s.Previous.Username)
}

func TestBatchRecordFailureAndQuarantine(t *testing.T) {
	t.Parallel()
	db, l := leased(t)
	retry := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	write(t, db, l, func(b *state.Batch) { b.RecordFailure("db/a", state.RunFailed, "generate failed", &retry) })
	s := secretRow(t, db)
	require.Equal(t, state.RunFailed, s.LastOutcome)
	require.Equal(t, "generate failed", s.LastError)
	require.Equal(t, 1, s.ConsecutiveFailures)
	require.True(t, retry.Equal(*s.NextDueAt), "the retry time is the next due time")
	require.Nil(t, s.LastSuccessAt)
	require.Equal(t, state.SecretActive, s.Status)

	// No retry time keeps the due time on record; a rollback is no failed
	// run: the count stays.
	write(t, db, l, func(b *state.Batch) { b.RecordFailure("db/a", state.RunRolledBack, "", nil) })
	s = secretRow(t, db)
	require.Equal(t, state.RunRolledBack, s.LastOutcome)
	require.Empty(t, s.LastError)
	require.Equal(t, 1, s.ConsecutiveFailures)
	require.True(t, retry.Equal(*s.NextDueAt))

	write(t, db, l, func(b *state.Batch) {
		b.RecordFailure("db/a", state.RunFailed, "publish failed", nil)
		b.Quarantine("db/a", "2 consecutive failed runs")
	})
	s = secretRow(t, db)
	require.Equal(t, 2, s.ConsecutiveFailures)
	require.Equal(t, state.SecretQuarantined, s.Status)
	log, err := db.AuditLog(context.Background(), "db/a")
	require.NoError(t, err)
	require.Len(t, log, 1)
	require.Equal(t, "quarantined", log[0].Action)
	require.Equal(t, "2 consecutive failed runs", log[0].Detail)
	require.Equal(t, "me", log[0].Actor)

	// A quarantined secret is not due, whatever its due time.
	due, err := db.Due(context.Background(), retry.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, due)
}

// The bug of issue 11: a success must lift a quarantine.
func TestBatchRecordSuccessLiftsQuarantine(t *testing.T) {
	t.Parallel()
	db, l := leased(t)
	write(t, db, l, func(b *state.Batch) {
		b.RecordFailure("db/a", state.RunFailed, "boom", nil)
		b.Quarantine("db/a", "1 consecutive failed run")
	})
	require.Equal(t, state.SecretQuarantined, secretRow(t, db).Status)

	next := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond)
	write(t, db, l, func(b *state.Batch) { b.RecordSuccess("db/a", &next) })
	s := secretRow(t, db)
	require.Equal(t, state.SecretActive, s.Status)
	require.Equal(t, state.RunSucceeded, s.LastOutcome)
	require.Empty(t, s.LastError)
	require.Zero(t, s.ConsecutiveFailures)
	require.NotNil(t, s.LastSuccessAt)
	require.True(t, next.Equal(*s.NextDueAt))
}

func TestBatchAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, l := leased(t)
	run := newRun("r1")
	write(t, db, l, func(b *state.Batch) {
		b.InsertRun(run)
		b.Audit("db/a", run.ID, "run_started", "trigger manual")
		b.Audit("db/a", "", "note", "")
	})
	log, err := db.AuditLog(ctx, "db/a")
	require.NoError(t, err)
	require.Len(t, log, 2)
	require.Equal(t, state.Audit{ID: log[0].ID, At: log[0].At, SecretID: "db/a", RunID: "r1", Actor: "me", Action: "run_started", Detail: "trigger manual"}, log[0])
	require.Equal(t, state.Audit{ID: log[1].ID, At: log[1].At, SecretID: "db/a", Actor: "me", Action: "note"}, log[1])

	// The audit log is append-only.
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_audit SET action = 'forged'`)
	require.ErrorContains(t, err, "append-only")
	_, err = db.Pool().Exec(ctx, `DELETE FROM rotator_audit`)
	require.ErrorContains(t, err, "append-only")
}

func TestResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, l := leased(t)
	ok, err := db.Resume(ctx, "db/a", "alice")
	require.NoError(t, err)
	require.False(t, ok, "an active secret is not resumed")

	write(t, db, l, func(b *state.Batch) {
		b.RecordFailure("db/a", state.RunFailed, "boom", nil)
		b.Quarantine("db/a", "1 consecutive failed run")
	})
	ok, err = db.Resume(ctx, "db/a", "alice")
	require.NoError(t, err)
	require.True(t, ok)
	s := secretRow(t, db)
	require.Equal(t, state.SecretActive, s.Status)
	require.Zero(t, s.ConsecutiveFailures)
	require.NotNil(t, s.NextDueAt)
	log, err := db.AuditLog(ctx, "db/a")
	require.NoError(t, err)
	require.Len(t, log, 2)
	require.Equal(t, "resumed", log[1].Action)
	require.Equal(t, "alice", log[1].Actor)
	require.Empty(t, log[1].RunID)
}

// ActiveRuns reads, in one query, the unfinished run of each secret
// asked for: what ActiveRun reads for each one.
func TestActiveRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	ids := []string{"s/running", "s/waiting", "s/attention", "s/done", "s/none"}
	var defs []state.SecretDef
	for _, id := range ids {
		defs = append(defs, state.SecretDef{ID: id, Class: "database"})
	}
	require.NoError(t, db.SyncSecrets(ctx, defs))
	statuses := map[string]state.RunStatus{"s/running": state.RunRunning, "s/waiting": state.RunWaiting,
		"s/attention": state.RunNeedsAttention, "s/done": state.RunSucceeded}
	for id, st := range statuses {
		l, err := db.AcquireLease(ctx, id, "me", time.Minute)
		require.NoError(t, err)
		run := newRun("run-" + id)
		run.SecretID = id
		write(t, db, l, func(b *state.Batch) { b.InsertRun(run) })
		run.Status = st
		write(t, db, l, func(b *state.Batch) { b.UpdateRun(run) })
	}
	got, err := db.ActiveRuns(ctx, append(ids, "s/not-a-secret"))
	require.NoError(t, err)
	require.Len(t, got, 3)
	for _, id := range ids {
		one, err := db.ActiveRun(ctx, id)
		require.NoError(t, err)
		if one == nil {
			require.NotContains(t, got, id)
			continue
		}
		require.Equal(t, one, got[id], id)
	}
	none, err := db.ActiveRuns(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, none)
}
