package state_test

import (
	"context"
	"os"
	"strconv"
	"strings"
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
	require.Equal(t, []int{1, 2, 3, 4}, applied)
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
	// A live lease is not re-entered, not even by its own holder.
	_, err = db.AcquireLease(ctx, "db/a", "host-a", time.Minute)
	require.ErrorIs(t, err, state.ErrLeaseHeld)
	// Released, it is taken again with a larger token; the old token is
	// fenced out.
	require.NoError(t, db.ReleaseLease(ctx, a))
	a2, err := db.AcquireLease(ctx, "db/a", "host-a", time.Minute)
	require.NoError(t, err)
	require.Greater(t, a2.Token, a.Token)
	err = db.InBatch(ctx, a, func(b *state.Batch) error { b.Audit("db/a", "", "x", ""); return nil })
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

// TestLeaseTokensSurviveARestore: a lease token is at least the state
// database's clock in microseconds, so after the lease table is restored
// from a backup (tokens written back to older values) the next token is
// still above every token issued before: a target that remembers the
// highest token it saw keeps accepting the new holder.
func TestLeaseTokensSurviveARestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "db/a", Class: "database"}}))
	first, err := db.AcquireLease(ctx, "db/a", "h1", time.Minute)
	require.NoError(t, err)
	require.NoError(t, db.ReleaseLease(ctx, first))
	second, err := db.AcquireLease(ctx, "db/a", "h2", time.Minute)
	require.NoError(t, err)
	require.Greater(t, second.Token, first.Token)
	require.NoError(t, db.ReleaseLease(ctx, second))
	// "Restore" the row as it was before the second lease.
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_leases SET token = $1, holder = 'h1' WHERE secret_id = 'db/a'`, first.Token)
	require.NoError(t, err)
	third, err := db.AcquireLease(ctx, "db/a", "h3", time.Minute)
	require.NoError(t, err)
	require.Greater(t, third.Token, second.Token)
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
	// A URL that does not parse is named by its scheme alone.
	_, err := state.Open(context.Background(), "postgres://u:hunter2@host:notaport/db")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	require.NotContains(t, err.Error(), "notaport")
	require.Contains(t, err.Error(), "state database URL postgres://(a DSN that does not parse)")
	// The forms string matching missed (issue 15).
	for _, c := range []struct{ dsn, pw string }{
		{"postgres://admin:Sup3r@PartOfThePassword@host/app", "PartOfThePassword"},
		{"host=h password = Sup3rS3cret port=x", "Sup3rS3cret"},
		{`host=h password=Sup3r\ S3cret port=x`, "S3cret"},
		{"postgres//user:pw1234567@host/db", "pw1234567"},
	} {
		require.NotContains(t, state.Redact(c.dsn), c.pw, c.dsn)
		_, err := state.Open(context.Background(), c.dsn)
		require.Error(t, err)
		require.NotContains(t, err.Error(), c.pw, c.dsn)
	}
}

// TestAcquireLeaseAndRead: the lease and the run's starting point in one
// round trip; a held lease gives ErrLeaseHeld and the holder (no snapshot),
// a secret the state database does not have gives the lease and
// ErrNotFound, and the snapshot is the secret, its unfinished run and the
// highest version of its runs.
func TestAcquireLeaseAndRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)

	l, snap, err := db.AcquireLeaseAndRead(ctx, "db/missing", "host-a", time.Minute)
	require.ErrorIs(t, err, state.ErrNotFound)
	require.NotZero(t, l.Token, "the lease is held although the secret is not there yet")
	require.Nil(t, snap.Run)
	_, err = db.AcquireLease(ctx, "db/missing", "host-b", time.Minute)
	require.ErrorIs(t, err, state.ErrLeaseHeld)

	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "db/a", Class: "database"}}))
	l, snap, err = db.AcquireLeaseAndRead(ctx, "db/a", "host-a", time.Minute)
	require.NoError(t, err)
	require.Equal(t, "db/a", snap.Secret.ID)
	require.Nil(t, snap.Run)
	require.Zero(t, snap.MaxVersion)
	run := &state.Run{ID: "r7", SecretID: "db/a", Trigger: state.TriggerManual, Attempt: 1,
		Status: state.RunRunning, Step: state.StepPublish, Version: 7, Old: state.Meta{Username: "app"}}
	require.NoError(t, db.InBatch(ctx, l, func(b *state.Batch) error { b.InsertRun(run); return nil }))

	held, snap, err := db.AcquireLeaseAndRead(ctx, "db/a", "host-b", time.Minute)
	require.ErrorIs(t, err, state.ErrLeaseHeld)
	require.Equal(t, "host-a", held.Holder)
	require.Equal(t, state.Snapshot{}, snap, "nothing is read for a holder that did not get the lease")

	require.NoError(t, db.ReleaseLease(ctx, l))
	l2, snap, err := db.AcquireLeaseAndRead(ctx, "db/a", "host-b", time.Minute)
	require.NoError(t, err)
	require.Greater(t, l2.Token, l.Token)
	require.NotNil(t, snap.Run)
	require.Equal(t, "r7", snap.Run.ID)
	require.Equal(t, state.StepPublish, snap.Run.Step)
	require.Equal(t, int64(7), snap.MaxVersion)
}

// TestAcquireLeaseAndReadFailingRead: the acquisition succeeds but a read
// queued after it fails at the server (here: the runs table is locked by
// another session past lock_timeout). The pipeline is one implicit
// transaction, so the lease is not held: the caller gets an error and no
// token, and another holder takes the lease at once.
func TestAcquireLeaseAndReadFailingRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db, err := state.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "db/a", Class: "database"}}))

	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	impatient, err := state.Open(ctx, dsn+sep+"options=-c%20lock_timeout%3D200")
	require.NoError(t, err)
	t.Cleanup(impatient.Close)
	// Warm the statement cache, so that the reads fail when they run,
	// after the acquisition, not when they are prepared.
	l, _, err := impatient.AcquireLeaseAndRead(ctx, "db/a", "host-a", time.Minute)
	require.NoError(t, err)
	require.NoError(t, impatient.ReleaseLease(ctx, l))

	tx, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `LOCK TABLE rotator_runs IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	l, _, err = impatient.AcquireLeaseAndRead(ctx, "db/a", "host-a", time.Minute)
	require.Error(t, err)
	require.NotErrorIs(t, err, state.ErrNotFound)
	require.Zero(t, l.Token, "no lease is reported held: %v", err)
	t.Logf("acquire with a failing read: %v", err)
	require.NoError(t, tx.Rollback(ctx))

	other, err := db.AcquireLease(ctx, "db/a", "host-b", time.Minute)
	require.NoError(t, err, "the failed pipeline left no lease behind")
	require.Equal(t, "host-b", other.Holder)
}
