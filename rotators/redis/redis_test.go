package redis_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/redis"
	"github.com/rotator/rotator/rotators/rotatortest"
)

func TestConformance(t *testing.T) {
	su := superuser(t)
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator {
			user, _ := newUser(t, su)
			return newRotator(t, user, "redis://"+redisAddr+"/0")
		},
		Login:      func(t *testing.T, c rotation.Credential) error { return login(c.Username, c.Secret.Reveal()) },
		CanRestore: true,
	})
}

var hashRule = regexp.MustCompile(`^[#!][0-9a-f]{64}$`)

// Every ACL SETUSER the rotator sends carries passwords only as #sha256
// or !sha256, and no command it sends holds a plaintext password; the
// retired password is refused by the server (WRONGPASS).
func TestCommandsCarryOnlyHashes(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()
	user, initPW := newUser(t, su)
	cap := &capture{}
	r := newRotator(t, user, "redis://"+redisAddr+"/0", redis.WithHook(cap))
	f := rotation.Fence{Token: 1, RunID: "run-1"}

	g1, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "cache/redis", RunID: "run-1", Fence: f})
	require.NoError(t, err)
	require.Equal(t, redis.KeyID(secretOf(initPW)), g1.Replaces.KeyID, "a first rotation replaces the user's one password")
	old := g1.Credential
	f2 := rotation.Fence{Token: 2, RunID: "run-2"}
	g2, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "cache/redis", RunID: "run-2", Current: old.Meta(), Fence: f2})
	require.NoError(t, err)
	neu := g2.Credential
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "cache/redis", Old: old.Meta(), New: neu.Meta(), Fence: f2}))
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{SecretID: "cache/redis", Old: old.Meta(), Previous: &old, Fence: f2}))
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "cache/redis", Old: old.Meta(), New: neu.Meta(), Fence: f2}))
	g3, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "cache/redis", RunID: "run-3", Current: neu.Meta(), Fence: rotation.Fence{Token: 3, RunID: "run-3"}})
	require.NoError(t, err)
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "cache/redis", New: g3.Credential.Meta(), Current: neu.Meta(), Fence: rotation.Fence{Token: 3, RunID: "run-3"}}))

	sets := cap.aclSetuserArgs()
	require.Len(t, sets, 7, "generate, generate, retire, restore, retire, generate, discard: one ACL SETUSER each")
	for _, rules := range sets {
		require.NotEmpty(t, rules)
		for _, x := range rules {
			require.Regexp(t, hashRule, x, "an ACL SETUSER rule that is not a password hash")
		}
	}
	plain := []string{initPW, old.Secret.Reveal(), neu.Secret.Reveal(), g3.Credential.Secret.Reveal()}
	for _, cmd := range cap.all() {
		line := strings.Join(cmd, " ")
		for _, p := range plain {
			require.NotContains(t, line, p, "a command sent to Redis holds a plaintext password")
		}
	}

	// What a client sees: the retired and discarded passwords are refused.
	require.True(t, isWrongPass(login(user, old.Secret.Reveal())), "the retired password must be refused")
	require.True(t, isWrongPass(login(user, g3.Credential.Secret.Reveal())), "the discarded password must be refused")
	require.NoError(t, login(user, neu.Secret.Reveal()))
	require.True(t, isWrongPass(login(user, initPW)), "a retire leaves only the new password: the one the first rotation replaced goes too")
}

// After a rollback the rolled-away password stays on the user for the
// clients that hold it; the next rotation's retire removes it with the old
// one, so nothing stays valid that no store publishes as current or
// previous.
func TestRetireRemovesARolledAwayPassword(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()
	user, initPW := newUser(t, su)
	r := newRotator(t, user, "redis://"+redisAddr+"/0")
	f1 := rotation.Fence{Token: 1, RunID: "run-1"}
	g1, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "cache/redis", RunID: "run-1", Fence: f1})
	require.NoError(t, err)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "cache/redis", Old: g1.Replaces, New: g1.Credential.Meta(), Fence: f1}))
	f2 := rotation.Fence{Token: 2, RunID: "run-2"}
	g2, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "cache/redis", RunID: "run-2", Current: g1.Credential.Meta(), Fence: f2})
	require.NoError(t, err)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "cache/redis", Old: g1.Credential.Meta(), New: g2.Credential.Meta(), Fence: f2}))
	// Rollback to g1: re-added, g2 stays for its clients.
	prev := g1.Credential
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{SecretID: "cache/redis", Old: g1.Credential.Meta(), Previous: &prev, Fence: rotation.Fence{Token: 3, RunID: "rb"}}))
	require.NoError(t, login(user, g2.Credential.Secret.Reveal()), "the rolled-away password stays valid after the rollback")
	f4 := rotation.Fence{Token: 4, RunID: "run-4"}
	g4, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "cache/redis", RunID: "run-4", Current: g1.Credential.Meta(), Fence: f4})
	require.NoError(t, err)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "cache/redis", Old: g1.Credential.Meta(), New: g4.Credential.Meta(), Fence: f4}))
	require.Equal(t, []string{sha(g4.Credential.Secret.Reveal())}, passwords(t, su, user), "only the new password is left")
	for _, old := range []string{initPW, g1.Credential.Secret.Reveal(), g2.Credential.Secret.Reveal()} {
		require.True(t, isWrongPass(login(user, old)), "a retired or rolled-away password is refused")
	}
	require.NoError(t, login(user, g4.Credential.Secret.Reveal()))
}

// TestDiscardAfterFailedGenerate: a generate that added its password and
// then failed (here: the engine never got the credential) is discarded
// with no key id named; the password the marker records as that run's is
// removed, the current one stays; for another run nothing changes.
func TestDiscardAfterFailedGenerate(t *testing.T) {
	su := superuser(t)
	user, initPW := newUser(t, su)
	r := newRotator(t, user, "redis://"+redisAddr+"/0")
	ctx := context.Background()
	resp, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "cache/r", RunID: "r1"})
	require.NoError(t, err)
	require.Len(t, passwords(t, su, user), 2)
	cur := rotation.Credential{Username: user, Secret: secretOf(initPW), KeyID: resp.Replaces.KeyID}

	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "cache/r", Current: cur.Meta(), Previous: &cur, Fence: rotation.Fence{RunID: "r2"}}))
	require.Len(t, passwords(t, su, user), 2, "another run's discard leaves the pending password")
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "cache/r", Current: cur.Meta(), Previous: &cur, Fence: rotation.Fence{RunID: "r1"}}))
	require.Equal(t, []string{sha(initPW)}, passwords(t, su, user), "the failed generate's password is removed")
	require.True(t, isWrongPass(login(user, resp.Credential.Secret.Reveal())))
	require.NoError(t, login(user, initPW))
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "cache/r", Current: cur.Meta(), Previous: &cur, Fence: rotation.Fence{RunID: "r1"}}), "again: nothing left to do")
}
