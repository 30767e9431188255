package redis_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
)

// A retried generate of the same run removes the password its first try
// added (no store knows it) and keeps the current one.
func TestGenerateRetryRemovesItsStray(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()
	user, initPW := newUser(t, su)
	r := newRotator(t, user, "redis://"+redisAddr+"/0")
	req := rotation.GenerateRequest{SecretID: "s", RunID: "run-1", Fence: rotation.Fence{Token: 1, RunID: "run-1"}}
	a, err := r.Generate(ctx, req)
	require.NoError(t, err)
	b, err := r.Generate(ctx, req)
	require.NoError(t, err)
	require.Equal(t, a.Replaces, b.Replaces)
	require.True(t, isWrongPass(login(user, a.Credential.Secret.Reveal())), "the first try's password must be gone")
	require.NoError(t, login(user, b.Credential.Secret.Reveal()))
	require.NoError(t, login(user, initPW), "the current password must stay")
	require.Len(t, passwords(t, su, user), 2)

	// Another run does not take the previous run's password for a stray.
	c, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-2", Current: b.Credential.Meta(), Fence: rotation.Fence{Token: 2, RunID: "run-2"}})
	require.NoError(t, err)
	require.NoError(t, login(user, b.Credential.Secret.Reveal()))
	require.NoError(t, login(user, c.Credential.Secret.Reveal()))
}

// The rotator refuses, without changing anything, what would lock clients
// out or guess: a missing user, a nopass user, a first rotation of a user
// with several passwords, a current password that is not on the user, a
// retire whose new password is not on the user.
func TestGuards(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()

	t.Run("MissingUser", func(t *testing.T) {
		user := "rt_missing_" + randHex(t, 4)
		r := newRotator(t, user, "redis://"+redisAddr+"/0")
		_, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "r"})
		require.ErrorContains(t, err, "does not exist")
		require.True(t, rotation.IsPermanent(err))
		n, err := su.Do(ctx, "ACL", "GETUSER", user).Result()
		require.Error(t, err, "the user must not have been created: %v", n)
	})
	t.Run("Nopass", func(t *testing.T) {
		user, _ := newUser(t, su)
		require.NoError(t, su.Do(ctx, "ACL", "SETUSER", user, "nopass").Err())
		r := newRotator(t, user, "redis://"+redisAddr+"/0")
		_, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "r"})
		require.ErrorContains(t, err, "nopass")
		require.NoError(t, login(user, "anything"), "the nopass user must still log in without a password")
	})
	t.Run("SeveralPasswordsFirstRotation", func(t *testing.T) {
		user, _ := newUser(t, su)
		require.NoError(t, su.Do(ctx, "ACL", "SETUSER", user, "#"+sha("second")).Err())
		r := newRotator(t, user, "redis://"+redisAddr+"/0")
		_, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "r"})
		require.ErrorContains(t, err, "has 2 passwords")
		require.Len(t, passwords(t, su, user), 2)
	})
	t.Run("CurrentNotOnUser", func(t *testing.T) {
		user, _ := newUser(t, su)
		r := newRotator(t, user, "redis://"+redisAddr+"/0")
		_, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "r",
			Current: rotation.CredentialMeta{Username: user, KeyID: "sha256:0000000000000000"}})
		require.ErrorContains(t, err, "changed outside rotator")
		require.Len(t, passwords(t, su, user), 1)
	})
	t.Run("RetireWithoutNew", func(t *testing.T) {
		user, initPW := newUser(t, su)
		r := newRotator(t, user, "redis://"+redisAddr+"/0")
		g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "r"})
		require.NoError(t, err)
		require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "s", New: g.Credential.Meta(), Current: g.Replaces}))
		err = r.Retire(ctx, rotation.RetireRequest{SecretID: "s", Old: g.Replaces, New: g.Credential.Meta()})
		require.ErrorContains(t, err, "is not on the user")
		require.NoError(t, login(user, initPW), "a refused retire leaves the current password working")
	})
	t.Run("RestoreWithoutPrevious", func(t *testing.T) {
		user, _ := newUser(t, su)
		r := newRotator(t, user, "redis://"+redisAddr+"/0")
		g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "r"})
		require.NoError(t, err)
		require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "s", Old: g.Replaces, New: g.Credential.Meta()}))
		err = r.Restore(ctx, rotation.RestoreRequest{SecretID: "s", Old: g.Replaces})
		require.ErrorIs(t, err, rotation.ErrNotRestorable)
		// Before retire, a restore has nothing to do.
		g2, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "r2", Current: g.Credential.Meta()})
		require.NoError(t, err)
		require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{SecretID: "s", Old: g.Credential.Meta()}))
		_ = g2
	})
	t.Run("ClientsUnsupported", func(t *testing.T) {
		user, _ := newUser(t, su)
		r := newRotator(t, user, "redis://"+redisAddr+"/0")
		_, err := r.Clients(ctx, rotation.ClientsRequest{SecretID: "s"})
		require.ErrorIs(t, err, rotation.ErrUnsupported)
		require.ErrorContains(t, err, "delay and http checks")
	})
}
