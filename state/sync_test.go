package state_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/state"
)

// The schedule sync mark is compare-and-set: a sync that began before
// another one recorded cannot record its key over it.
func TestScheduleSyncMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)

	m0, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, state.SyncMark{}, m0, "never synced")

	ok, err := db.RecordScheduleSync(ctx, m0, "a")
	require.NoError(t, err)
	require.True(t, ok)
	m1, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, state.SyncMark{Key: "a", Gen: 1}, m1)

	// A second process read m0 too (before "a" was recorded): refused.
	ok, err = db.RecordScheduleSync(ctx, m0, "b")
	require.NoError(t, err)
	require.False(t, ok, "a sync from a stale read does not record")
	m, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, m1, m)

	ok, err = db.RecordScheduleSync(ctx, m1, "b")
	require.NoError(t, err)
	require.True(t, ok)
	m, err = db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, state.SyncMark{Key: "b", Gen: 2}, m)

	// A sync about to write clears the key, not the generation: it
	// records after it as any sync does.
	require.NoError(t, db.ClearScheduleSync(ctx))
	m, err = db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, state.SyncMark{Key: "", Gen: 2}, m)
	ok, err = db.RecordScheduleSync(ctx, m, "c")
	require.NoError(t, err)
	require.True(t, ok)
	m, err = db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, state.SyncMark{Key: "c", Gen: 3}, m)
}

// ClearOtherScheduleSync clears a key of other policies, not its own.
func TestClearOtherScheduleSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	ok, err := db.RecordScheduleSync(ctx, state.SyncMark{}, "a")
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, db.ClearOtherScheduleSync(ctx, "a"))
	m, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, state.SyncMark{Key: "a", Gen: 1}, m)
	require.NoError(t, db.ClearOtherScheduleSync(ctx, "b"))
	m, err = db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, state.SyncMark{Key: "", Gen: 1}, m)
}
