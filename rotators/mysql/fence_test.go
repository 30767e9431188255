package mysql_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
)

// marker reads the fence row of the fixture's secret.
func (f *fixture) marker(t *testing.T) (int64, string, string) {
	t.Helper()
	var (
		tok         int64
		run, action string
	)
	require.NoError(t, f.root.QueryRow("SELECT token, run_id, action FROM rotator.rotator_fence WHERE secret_key = ?", f.role+"@"+f.host).Scan(&tok, &run, &action))
	return tok, run, action
}

// TestFenceStaleRefused: every destructive action carries the lease
// token; once a newer token has acted on the secret, an action with an
// older one is refused by the server-side check (rotation.ErrFenced,
// permanent) and changes nothing: the newer holder's credential still
// logs in, lock states and the marker stay.
func TestFenceStaleRefused(t *testing.T) {
	f := newFixture(t)
	r := f.initialized(t)
	ctx := ctxT(t)
	blue, green := f.role+"_blue", f.role+"_green"
	old := rotation.Fence{Token: 100, RunID: "run-a"}
	cur := rotation.Fence{Token: 200, RunID: "run-b"}

	g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: cur.RunID, Fence: cur})
	require.NoError(t, err)
	require.Equal(t, blue, g.Credential.Username)
	tok, run, action := f.marker(t)
	require.Equal(t, []any{int64(200), "run-b", "rekey"}, []any{tok, run, action})

	_, err = r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: old.RunID, Current: g.Credential.Meta(), Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.True(t, rotation.IsPermanent(err))
	require.ErrorContains(t, err, "lease token 200")
	err = r.Retire(ctx, rotation.RetireRequest{Old: g.Credential.Meta(), New: rotation.CredentialMeta{Username: green}, Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)
	err = r.Discard(ctx, rotation.DiscardRequest{New: g.Credential.Meta(), Current: rotation.CredentialMeta{Username: green}, Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)
	err = r.Restore(ctx, rotation.RestoreRequest{Old: rotation.CredentialMeta{Username: green}, Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)

	require.NoError(t, login(blue, g.Credential.Secret.Reveal()), "the newer holder's credential still logs in")
	require.False(t, f.locked(t, blue))
	require.True(t, f.locked(t, green), "the stale generate did not re-key green, the stale restore did not unlock it")
	tok, run, action = f.marker(t)
	require.Equal(t, []any{int64(200), "run-b", "rekey"}, []any{tok, run, action}, "a refused action moves no marker")

	// The same token again (the holder's own retry) and a newer one pass.
	g2, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: cur.RunID, Current: g.Credential.Meta(), Fence: cur})
	require.NoError(t, err)
	require.Equal(t, green, g2.Credential.Username)
	next := rotation.Fence{Token: 300, RunID: "run-c"}
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: g.Credential.Meta(), New: g2.Credential.Meta(), Fence: next}))
	require.True(t, f.locked(t, blue))
	tok, run, action = f.marker(t)
	require.Equal(t, []any{int64(300), "run-c", "retire"}, []any{tok, run, action})
}

// TestFenceWaitsForLockThenChecks: a fenced action that arrives while
// another holds the secret's named lock waits for it, and checks the
// marker only once it holds it: a newer lease holder that acted meanwhile
// (here: the test, holding the lock and moving the marker to 500) has the
// late action refused, and the standby stays locked.
func TestFenceWaitsForLockThenChecks(t *testing.T) {
	f := newFixture(t)
	r := f.initialized(t)
	ctx := ctxT(t)
	g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "a", Fence: rotation.Fence{Token: 100, RunID: "a"}})
	require.NoError(t, err)

	// The newer holder's session takes the lock (its name: GET_LOCK's
	// argument in the rotator's own statements, read from the fence row's key).
	hold, err := f.root.Conn(ctx)
	require.NoError(t, err)
	defer hold.Close()
	lock := fenceLockName(f.role + "@" + f.host)
	var got int
	require.NoError(t, hold.QueryRowContext(ctx, "SELECT GET_LOCK(?, 5)", lock).Scan(&got))
	require.Equal(t, 1, got)

	done := make(chan error, 1)
	go func() {
		_, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "b", Current: g.Credential.Meta(), Fence: rotation.Fence{Token: 200, RunID: "b"}})
		done <- err
	}()
	// Signal: the action's session waits on the lock.
	require.Eventually(t, func() bool {
		var n int
		_ = f.root.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT GET_LOCK(%' AND ID <> ?", connID(t, hold)).Scan(&n)
		return n > 0
	}, 20*time.Second, 10*time.Millisecond, "the fenced action waits on the named lock")
	select {
	case err := <-done:
		t.Fatalf("the fenced action did not wait for the lock: %v", err)
	default:
	}
	_, err = hold.ExecContext(ctx, "UPDATE rotator.rotator_fence SET token = 500, run_id = 'newer', action = 'rekey' WHERE secret_key = ?", f.role+"@"+f.host)
	require.NoError(t, err)
	_, err = hold.ExecContext(ctx, "DO RELEASE_LOCK(?)", lock)
	require.NoError(t, err)
	err = <-done
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.ErrorContains(t, err, "lease token 500")
	require.True(t, f.locked(t, f.role+"_green"), "the refused re-key left the standby locked")
}

// fenceLockName is the rotator's lock name for a fence key (see fenceLock).
func fenceLockName(key string) string {
	h := sha256.Sum256([]byte(key))
	return "rotator_fence_" + hex.EncodeToString(h[:16])
}

func connID(t *testing.T, c *sql.Conn) int64 {
	t.Helper()
	var id int64
	require.NoError(t, c.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id))
	return id
}
