package proof_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/state"
)

// TestPipelinedWritesAreFenced: the engine's pipelined state writes
// (state.DB.InBatch) commit all or nothing, and a process whose lease was
// taken over writes nothing.
func TestPipelinedWritesAreFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := state.Open(ctx, newStateDSN(t))
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "s", Class: "database"}}))

	old, err := db.AcquireLease(ctx, "s", "a", time.Millisecond)
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond)
	cur, err := db.AcquireLease(ctx, "s", "b", time.Minute)
	require.NoError(t, err)

	run := &state.Run{ID: "00000000-0000-4000-8000-000000000001", SecretID: "s", Trigger: state.TriggerManual, Attempt: 1, Status: state.RunRunning, Step: state.StepGenerate, Version: 1}
	err = db.InBatch(ctx, old, func(b *state.Batch) error { b.InsertRun(run); b.Audit("s", run.ID, "x", ""); return nil })
	require.ErrorIs(t, err, state.ErrLeaseLost)
	active, err := db.ActiveRun(ctx, "s")
	require.NoError(t, err)
	require.Nil(t, active, "a stale lease holder wrote nothing")

	var id int64
	require.NoError(t, db.InBatch(ctx, cur, func(b *state.Batch) error {
		b.InsertRun(run)
		b.StartStep(run.ID, state.StepGenerate, 1, &id)
		return nil
	}))
	require.NotZero(t, id)
	require.False(t, run.StartedAt.IsZero())

	// A second unfinished run is refused, and the statements queued with
	// it are rolled back.
	run2 := *run
	run2.ID = "00000000-0000-4000-8000-000000000002"
	var id2 int64
	err = db.InBatch(ctx, cur, func(b *state.Batch) error {
		b.StartStep(run.ID, state.StepStage, 1, &id2)
		b.InsertRun(&run2)
		return nil
	})
	require.ErrorIs(t, err, state.ErrRunActive)
	runs, err := db.Runs(ctx, "s", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Len(t, runs[0].Steps, 1, "the step queued before the failing insert was rolled back too")
}
