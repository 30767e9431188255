package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/state"
)

// SetNextDue with Seen writes only rows nothing has written since they
// were read: a due time computed from a stale read (another process's run
// ended in between) never overwrites the newer one.
func TestSetNextDueSeenGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "a", Class: "c"}, {ID: "b", Class: "c"}}))
	a, err := db.Secret(ctx, "a")
	require.NoError(t, err)
	b, err := db.Secret(ctx, "b")
	require.NoError(t, err)

	// Another process records b's due time after the read.
	newer := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, db.SetNextDue(ctx, []state.DueAt{{ID: "b", At: newer}}))

	stale := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, db.SetNextDue(ctx, []state.DueAt{{ID: "a", At: stale, Seen: a.UpdatedAt}, {ID: "b", At: stale, Seen: b.UpdatedAt}}))
	a, err = db.Secret(ctx, "a")
	require.NoError(t, err)
	b, err = db.Secret(ctx, "b")
	require.NoError(t, err)
	require.True(t, a.NextDueAt.Equal(stale), "an unchanged row is written")
	require.True(t, b.NextDueAt.Equal(newer), "a row written since the read is left alone: %s", b.NextDueAt)
}
