package state_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/state"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newDB(t *testing.T) *state.DB {
	t.Helper()
	ctx := context.Background()
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	return db
}

func TestMigrateIdempotentAndChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()

	require.ErrorIs(t, db.CheckSchema(ctx), state.ErrSchemaOld)
	applied, err := db.Migrate(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, applied)
	applied, err = db.Migrate(ctx)
	require.NoError(t, err)
	require.Empty(t, applied)
	require.NoError(t, db.CheckSchema(ctx))

	// A newer schema (written by a later binary) is refused.
	_, err = db.Pool().Exec(ctx, `INSERT INTO rotator_schema_migrations (version, name) VALUES (999, 'future.sql')`)
	require.NoError(t, err)
	_, err = db.Migrate(ctx)
	require.ErrorIs(t, err, state.ErrSchemaNew)
	require.ErrorContains(t, err, "upgrade rotator")
	require.ErrorIs(t, db.CheckSchema(ctx), state.ErrSchemaNew)
}

func TestOpenUnreachableNamesServer(t *testing.T) {
	t.Parallel()
	port, err := pgtest.FreePort()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = state.Open(ctx, "postgres://rotator:s3cr3t-pw@127.0.0.1:"+itoa(port)+"/rotator?connect_timeout=2")
	require.Error(t, err)
	require.Contains(t, err.Error(), "127.0.0.1:"+itoa(port)+"/rotator")
	require.Contains(t, err.Error(), "DATABASE_URL")
	require.NotContains(t, err.Error(), "s3cr3t-pw")

	_, err = state.Open(ctx, "")
	require.ErrorContains(t, err, "set DATABASE_URL")
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestLeaseFencing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "db/a", Class: "database"}}))

	a, err := db.AcquireLease(ctx, "db/a", "host-a", time.Minute)
	require.NoError(t, err)
	// Another holder cannot take a live lease, and learns who holds it.
	held, err := db.AcquireLease(ctx, "db/a", "host-b", time.Minute)
	require.ErrorIs(t, err, state.ErrLeaseHeld)
	require.Equal(t, "host-a", held.Holder)
	// The same holder may take it again (restart of the same process).
	a2, err := db.AcquireLease(ctx, "db/a", "host-a", time.Minute)
	require.NoError(t, err)
	require.Greater(t, a2.Token, a.Token)
	// The old token is fenced out.
	err = db.InTx(ctx, a, func(tx *state.Tx) error { return tx.Audit(ctx, "db/a", "", "x", "") })
	require.ErrorIs(t, err, state.ErrLeaseLost)

	// An expired lease can be taken over; the old holder's writes and renewals fail.
	short, err := db.AcquireLease(ctx, "db/b", "host-a", 50*time.Millisecond)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := db.AcquireLease(ctx, "db/b", "host-b", time.Minute)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	require.ErrorIs(t, db.RenewLease(ctx, &short, time.Minute), state.ErrLeaseLost)

	// Release lets another take it at once.
	require.NoError(t, db.ReleaseLease(ctx, a2))
	_, err = db.AcquireLease(ctx, "db/a", "host-b", time.Minute)
	require.NoError(t, err)
}

func TestNotifyEpisodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	_, ok, err := db.Episode(ctx, "db/a", "slack")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, db.SaveEpisode(ctx, "db/a", "slack", []byte(`{"Kinds":["rotation_failed"]}`)))
	require.NoError(t, db.SaveEpisode(ctx, "db/a", "slack", []byte(`{"Kinds":["rotation_failed","rollback"]}`)))
	data, ok, err := db.Episode(ctx, "db/a", "slack")
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, `{"Kinds":["rotation_failed","rollback"]}`, string(data))
	_, ok, err = db.Episode(ctx, "db/a", "webhook")
	require.NoError(t, err)
	require.False(t, ok, "episodes are per sink")
	require.NoError(t, db.EndEpisode(ctx, "db/a", "slack"))
	require.NoError(t, db.EndEpisode(ctx, "db/a", "slack"))
	_, ok, err = db.Episode(ctx, "db/a", "slack")
	require.NoError(t, err)
	require.False(t, ok)
}

func TestRunsStepsAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "db/a", Class: "database"}}))
	l, err := db.AcquireLease(ctx, "db/a", "me", time.Minute)
	require.NoError(t, err)

	run := &state.Run{ID: "r1", SecretID: "db/a", Trigger: "manual", Attempt: 1, Status: state.RunRunning, Step: "generate", Version: 1}
	require.NoError(t, db.InTx(ctx, l, func(tx *state.Tx) error {
		if err := tx.InsertRun(ctx, run); err != nil {
			return err
		}
		id, err := tx.StartStep(ctx, run.ID, "generate", 1)
		if err != nil {
			return err
		}
		return tx.FinishStep(ctx, id, "ok", "", "re-keyed app_blue")
	}))
	// A second unfinished run for the same secret is refused.
	err = db.InTx(ctx, l, func(tx *state.Tx) error {
		return tx.InsertRun(ctx, &state.Run{ID: "r2", SecretID: "db/a", Trigger: "manual", Status: state.RunRunning, Step: "generate", Version: 1})
	})
	require.ErrorIs(t, err, state.ErrRunActive)

	active, err := db.ActiveRun(ctx, "db/a")
	require.NoError(t, err)
	require.Equal(t, "r1", active.ID)

	now := time.Now()
	run.Status, run.Step, run.FinishedAt = state.RunSucceeded, "done", &now
	run.New = state.Meta{Username: "app_blue"}
	require.NoError(t, db.InTx(ctx, l, func(tx *state.Tx) error {
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		if err := tx.SetCurrent(ctx, "db/a", 1, "r1", run.New, 0, "", state.Meta{Username: "app"}); err != nil {
			return err
		}
		if err := tx.RecordOutcome(ctx, "db/a", state.RunSucceeded, "", nil); err != nil {
			return err
		}
		return tx.Audit(ctx, "db/a", "r1", "rotated", "version 1")
	}))
	active, err = db.ActiveRun(ctx, "db/a")
	require.NoError(t, err)
	require.Nil(t, active)

	runs, err := db.Runs(ctx, "db/a", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Len(t, runs[0].Steps, 1)
	require.Equal(t, "re-keyed app_blue", runs[0].Steps[0].Detail)

	s, err := db.Secret(ctx, "db/a")
	require.NoError(t, err)
	require.Equal(t, int64(1), s.CurrentVersion)
	require.Equal(t, "app_blue", s.Current.Username)
	require.Equal(t, "app", s.Previous.Username)
	require.NotNil(t, s.LastSuccessAt)

	_, err = db.Secret(ctx, "nope")
	require.ErrorIs(t, err, state.ErrNotFound)

	// The audit log is append-only.
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_audit SET action = 'forged'`)
	require.ErrorContains(t, err, "append-only")
	_, err = db.Pool().Exec(ctx, `DELETE FROM rotator_audit`)
	require.ErrorContains(t, err, "append-only")
	log, err := db.AuditLog(ctx, "db/a")
	require.NoError(t, err)
	require.Len(t, log, 1)
	require.Equal(t, "me", log[0].Actor)
}

// A DSN's password never reaches a message, parseable or not.
func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"postgres://u:hunter2@host:5432/db",
		"postgres://u:hunter2@host:notaport/db",
		"postgresql://u:hun%40ter2@host/db?sslmode=disable",
		"host=db user=u password=hunter2 dbname=x",
	} {
		require.NotContains(t, state.Redact(dsn), "hunter2", dsn)
		require.NotContains(t, state.Redact(dsn), "hun%40ter2", dsn)
		_, err := state.Open(context.Background(), dsn+"&bogus")
		if err != nil {
			require.NotContains(t, err.Error(), "hunter2", dsn)
			require.NotContains(t, err.Error(), "hun@ter2", dsn)
		}
	}
	_, err := state.Open(context.Background(), "postgres://u:hunter2@host:notaport/db")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	require.Contains(t, err.Error(), "u:REDACTED@host:notaport/db")
}
