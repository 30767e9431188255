package redis_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/redis"
)

// A process whose lease token is older than the one on the user's marker
// is refused by Redis (EXEC of the WATCHed transaction) and changes no
// password, for every action.
func TestFenceRefusesAnOlderToken(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()
	user, _ := newUser(t, su)
	r := newRotator(t, user, "redis://"+redisAddr+"/0")
	g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-5", Fence: rotation.Fence{Token: 5, RunID: "run-5"}})
	require.NoError(t, err)
	tok, err := su.HGet(ctx, redis.FenceKeyPrefix+user, "token").Result()
	require.NoError(t, err)
	require.Equal(t, "5", tok, "the marker moves with the change")
	before := passwords(t, su, user)

	stale := rotation.Fence{Token: 4, RunID: "run-4"}
	_, err = r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-4", Current: g.Credential.Meta(), Fence: stale})
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.True(t, rotation.IsPermanent(err))
	err = r.Retire(ctx, rotation.RetireRequest{SecretID: "s", Old: g.Replaces, New: g.Credential.Meta(), Fence: stale})
	require.ErrorIs(t, err, rotation.ErrFenced)
	err = r.Discard(ctx, rotation.DiscardRequest{SecretID: "s", New: g.Credential.Meta(), Current: g.Replaces, Fence: stale})
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.ElementsMatch(t, before, passwords(t, su, user), "a refused action changed the user's passwords")
	require.NoError(t, login(user, g.Credential.Secret.Reveal()))

	// The same token (a retry by the holder) and a newer one pass.
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "s", Old: g.Replaces, New: g.Credential.Meta(), Fence: rotation.Fence{Token: 5, RunID: "run-5"}}))
	require.Len(t, passwords(t, su, user), 1)
}

// The delayed packet: the stale process read the marker (token 5, its
// own) and, before its MULTI/EXEC reaches Redis, a newer holder moves the
// marker to 6. WATCH makes EXEC fail; the rotator reads the marker again
// and refuses; the user's passwords are unchanged.
func TestFenceWatchCatchesAMoveBetweenReadAndExec(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()
	user, initPW := newUser(t, su)
	cap := &capture{}
	r := newRotator(t, user, "redis://"+redisAddr+"/0", redis.WithHook(cap))
	require.NoError(t, su.HSet(ctx, redis.FenceKeyPrefix+user, "token", 5, "run", "run-5").Err())
	before := passwords(t, su, user)
	moved := make(chan struct{})
	cap.beforeExec = func() {
		// Another process (token 6) acts between this one's WATCH+HGET and its EXEC.
		require.NoError(t, su.HSet(ctx, redis.FenceKeyPrefix+user, "token", 6, "run", "run-6").Err())
		close(moved)
	}
	_, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-5", Fence: rotation.Fence{Token: 5, RunID: "run-5"}})
	<-moved
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.Contains(t, err.Error(), "run-6")
	require.ElementsMatch(t, before, passwords(t, su, user), "the EXEC after the marker moved must change nothing")
	require.NoError(t, login(user, initPW))
	tok, err := su.HGet(ctx, redis.FenceKeyPrefix+user, "token").Result()
	require.NoError(t, err)
	require.Equal(t, "6", tok)
}
