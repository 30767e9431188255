package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestHistoryOf(t *testing.T) {
	t.Parallel()
	at := func(h int) *time.Time { v := time.Date(2026, 8, 10, h, 0, 0, 0, time.UTC); return &v }
	tests := []struct {
		name string
		sec  state.Secret
		want schedule.History
	}{
		{"never seen", state.Secret{Status: "active"}, schedule.History{}},
		{"never rotated, first due recorded: pinned",
			state.Secret{Status: "active", NextDueAt: at(5)}, schedule.History{Pinned: *at(5)}},
		{"rotated: from the success, the stored time is recomputed",
			state.Secret{Status: "active", LastSuccessAt: at(3), LastAttemptAt: at(2), LastOutcome: state.RunSucceeded, NextDueAt: at(9)},
			schedule.History{LastSuccess: *at(3)}},
		{"failed after a success: the failed attempt",
			state.Secret{Status: "active", LastSuccessAt: at(3), LastAttemptAt: at(4), LastOutcome: state.RunFailed, ConsecutiveFailures: 1, NextDueAt: at(9)},
			schedule.History{LastSuccess: *at(3), LastFailure: *at(4)}},
		{"failed, never rotated",
			state.Secret{Status: "active", LastAttemptAt: at(4), LastOutcome: state.RunFailed, ConsecutiveFailures: 2, NextDueAt: at(9)},
			schedule.History{LastFailure: *at(4)}},
		{"rolled back: a failure",
			state.Secret{Status: "active", LastSuccessAt: at(3), LastAttemptAt: at(4), LastOutcome: state.RunRolledBack},
			schedule.History{LastSuccess: *at(3), LastFailure: *at(4)}},
		{"quarantined",
			state.Secret{Status: "quarantined", LastSuccessAt: at(3), LastAttemptAt: at(4), LastOutcome: state.RunFailed, ConsecutiveFailures: 3, NextDueAt: at(9)},
			schedule.History{Quarantined: true, LastSuccess: *at(3), LastFailure: *at(4)}},
		{"resumed (failure count reset): the recorded time",
			state.Secret{Status: "active", LastSuccessAt: at(3), LastAttemptAt: at(4), LastOutcome: state.RunFailed, NextDueAt: at(6)},
			schedule.History{LastSuccess: *at(3), Pinned: *at(6)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, daemon.HistoryOf(tc.sec))
		})
	}
}

// Sync records what Preview shows; a second Sync changes nothing; a
// failed secret keeps its retry time; a quarantined one is left alone.
func TestSyncAndPreviewAgree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`stores: [{name: local, files: {dir: s}}]
defaults: {jitter: 6h, retry: {next_run: 2h}}
secrets:
  - {id: tok/new, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: a}]}
  - {id: tok/failed, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: b}]}
  - {id: tok/quarantined, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: c}]}
`), 0o600))
	f, err := policy.Load(path)
	require.NoError(t, err)
	g, err := daemon.NewGeneration(f, nil)
	require.NoError(t, err)
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)

	now := time.Now()
	require.NoError(t, g.Sync(ctx, db, now))
	failedAt := now.Add(-time.Hour).Truncate(time.Microsecond)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_attempt_at = $1, last_outcome = 'failed', consecutive_failures = 1,
		next_due_at = NULL WHERE id = 'tok/failed'`, failedAt)
	require.NoError(t, err)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET status = 'quarantined', next_due_at = '2000-01-01Z' WHERE id = 'tok/quarantined'`)
	require.NoError(t, err)
	// The rows were edited by hand (a run records its due time itself):
	// forget the sync mark, so the next Sync recomputes with the same file.
	_, err = db.Pool().Exec(ctx, `DELETE FROM rotator_schedule_sync`)
	require.NoError(t, err)

	later := now.Add(3 * time.Minute)
	require.NoError(t, g.Sync(ctx, db, later))
	decs, err := g.Preview(ctx, db, later.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, decs, 3)
	for _, d := range decs {
		stored, err := db.Secret(ctx, d.SecretID)
		require.NoError(t, err)
		switch d.SecretID {
		case "tok/quarantined":
			require.Equal(t, daemon.ActionQuarantined, d.Action)
			require.True(t, stored.NextDueAt.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), "left alone")
			continue
		case "tok/new":
			// (Postgres keeps microseconds.)
			require.WithinDuration(t, now.Add(schedule.Jitter("tok/new", 6*time.Hour)), d.Due.At, time.Microsecond, "first due time kept")
		case "tok/failed":
			require.True(t, d.Due.At.Equal(failedAt.Add(2*time.Hour).Add(schedule.Jitter("tok/failed", 6*time.Hour))), "%s", d.Due.At)
		}
		require.Equal(t, daemon.ActionNotDue, d.Action)
		require.True(t, d.Due.At.Equal(*stored.NextDueAt), "%s: preview %s, stored %s", d.SecretID, d.Due.At, stored.NextDueAt)
	}
	// PreviewOf decides for the secrets named alone, as Preview does, in
	// policy order; a name the policies lack is left out. PreviewEach
	// gives Preview's decisions a batch at a time.
	some, err := g.PreviewOf(ctx, db, later.Add(time.Minute), "tok/quarantined", "tok/none", "tok/new")
	require.NoError(t, err)
	require.Equal(t, []daemon.Decision{decs[0], decs[2]}, some)
	var each []daemon.Decision
	require.NoError(t, g.PreviewEach(ctx, db, later.Add(time.Minute), func(b []daemon.Decision) error {
		each = append(each, b...)
		return nil
	}))
	require.Equal(t, decs, each)
}

// Sync skips the work when the state database was last synced from the
// same policies (the mark holds the file's content hash), and does it
// again as soon as the file changes: a changed interval takes effect, a
// pending retry keeps its time (retry.next_run from its failed attempt),
// and a new secret gets its row.
func TestSyncSkipsOnlyUnchangedPolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policies.yaml")
	write := func(interval, extra string) *daemon.Generation {
		t.Helper()
		require.NoError(t, os.WriteFile(path, []byte(`stores: [{name: local, files: {dir: s}}]
defaults: {jitter: 0s, retry: {next_run: 2h}}
classes: {admin_token: {interval: `+interval+`}}
secrets:
  - {id: tok/ok, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: a}]}
  - {id: tok/failed, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: b}]}
`+extra), 0o600))
		f, err := policy.Load(path)
		require.NoError(t, err)
		g, err := daemon.NewGeneration(f, nil)
		require.NoError(t, err)
		return g
	}
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	nextDue := func(id string) time.Time {
		t.Helper()
		s, err := db.Secret(ctx, id)
		require.NoError(t, err)
		require.NotNil(t, s.NextDueAt, id)
		return *s.NextDueAt
	}

	now := time.Now()
	require.NoError(t, write("30d", "").Sync(ctx, db, now))
	// tok/ok rotated a day ago (its due time as the engine records it);
	// tok/failed failed an hour ago, after a success ten days ago (its
	// retry time as the engine records it).
	success := now.Add(-24 * time.Hour).Truncate(time.Microsecond)
	failedAt := now.Add(-time.Hour).Truncate(time.Microsecond)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $1, last_outcome = 'succeeded', next_due_at = $2 WHERE id = 'tok/ok'`,
		success, success.Add(30*24*time.Hour))
	require.NoError(t, err)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $1, last_attempt_at = $2, last_outcome = 'failed',
		consecutive_failures = 1, next_due_at = $3 WHERE id = 'tok/failed'`, success.Add(-9*24*time.Hour), failedAt, failedAt.Add(2*time.Hour))
	require.NoError(t, err)

	// The same file, loaded again (another CronJob pod, a daemon restart):
	// nothing is recomputed. A sentinel no sync would write shows it.
	sentinel := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET next_due_at = $1 WHERE id = 'tok/ok'`, sentinel)
	require.NoError(t, err)
	require.NoError(t, write("30d", "").Sync(ctx, db, now.Add(time.Minute)))
	require.True(t, nextDue("tok/ok").Equal(sentinel), "unchanged policies: the sync was skipped")

	// A changed file (even one byte: the interval) is synced again.
	require.NoError(t, write("7d", "").Sync(ctx, db, now.Add(2*time.Minute)))
	require.True(t, nextDue("tok/ok").Equal(success.Add(7*24*time.Hour)), "the new interval took effect: %s", nextDue("tok/ok"))
	require.True(t, nextDue("tok/failed").Equal(failedAt.Add(2*time.Hour)), "the pending retry kept its time: %s", nextDue("tok/failed"))

	// A new secret gets its row; going back to an earlier file syncs too.
	require.NoError(t, write("7d", "  - {id: tok/new, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: c}]}\n").
		Sync(ctx, db, now.Add(3*time.Minute)))
	require.True(t, nextDue("tok/new").Equal(now.Add(3*time.Minute).Truncate(time.Microsecond)), "%s", nextDue("tok/new"))
	require.NoError(t, write("30d", "").Sync(ctx, db, now.Add(4*time.Minute)))
	require.True(t, nextDue("tok/ok").Equal(success.Add(30*24*time.Hour)), "%s", nextDue("tok/ok"))
	require.True(t, nextDue("tok/failed").Equal(failedAt.Add(2*time.Hour)), "%s", nextDue("tok/failed"))
}

// A sync that stops half-way (here its due times are refused, after the
// secrets' rows were written) leaves no mark that vouches for the rows it
// rewrote: a sync of the policies synced before it is not skipped, and
// puts their class back.
func TestSyncStoppedHalfWayIsDoneAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policies.yaml")
	gen := func(class string) *daemon.Generation {
		t.Helper()
		require.NoError(t, os.WriteFile(path, []byte(`stores: [{name: local, files: {dir: s}}]
secrets:
  - {id: tok/a, class: `+class+`, rotator: {token: {}}, publish: [{store: local, path: a}]}
`), 0o600))
		f, err := policy.Load(path)
		require.NoError(t, err)
		g, err := daemon.NewGeneration(f, nil)
		require.NoError(t, err)
		return g
	}
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)

	require.NoError(t, gen("admin_token").Sync(ctx, db, time.Now()))
	// Rotated: its due time follows its class's interval.
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = now() - interval '1 day', last_outcome = 'succeeded'`)
	require.NoError(t, err)
	_, err = db.Pool().Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'test: due times refused'; END $$;
		CREATE TRIGGER refuse BEFORE UPDATE OF next_due_at ON rotator_secrets FOR EACH ROW EXECUTE FUNCTION refuse()`)
	require.NoError(t, err)
	require.ErrorContains(t, gen("database").Sync(ctx, db, time.Now()), "test: due times refused")
	s, err := db.Secret(ctx, "tok/a")
	require.NoError(t, err)
	require.Equal(t, "database", s.Class, "the rows were written before the due times")
	_, err = db.Pool().Exec(ctx, `DROP TRIGGER refuse ON rotator_secrets`)
	require.NoError(t, err)

	require.NoError(t, gen("admin_token").Sync(ctx, db, time.Now()))
	s, err = db.Secret(ctx, "tok/a")
	require.NoError(t, err)
	require.Equal(t, "admin_token", s.Class, "the sync of the earlier policies was not skipped")
}
