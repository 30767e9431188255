package redis_test

import (
	"context"
	"os"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/redis"
)

// deploy/redis/rotator.acl is enough for a whole rotation (generate,
// retire, restore, discard, fenced), and no more than it claims: the
// rotator's user cannot read an application's key or run CONFIG.
func TestLeastPrivilegeACL(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()
	name, pw := leastPrivilegeAdmin(t, su)

	user, initPW := newUser(t, su)
	r := newRotator(t, user, "redis://"+name+":"+pw+"@"+redisAddr+"/0")
	f1 := rotation.Fence{Token: 1, RunID: "run-1"}
	g1, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-1", Fence: f1})
	require.NoError(t, err)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "s", Old: g1.Replaces, New: g1.Credential.Meta(), Fence: f1}))
	require.True(t, isWrongPass(login(user, initPW)))
	prev := rotation.Credential{Username: user, Secret: secretOf(initPW)}
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{SecretID: "s", Old: g1.Replaces, Previous: &prev, Fence: f1}))
	require.NoError(t, login(user, initPW))
	f2 := rotation.Fence{Token: 2, RunID: "run-2"}
	g2, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-2", Current: g1.Credential.Meta(), Fence: f2})
	require.NoError(t, err)
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "s", New: g2.Credential.Meta(), Current: g1.Credential.Meta(), Fence: f2}))
	require.True(t, isWrongPass(login(user, g2.Credential.Secret.Reveal())))
	// A generate that failed after adding its password: the discard names
	// no key id and finds the password on the marker.
	f3 := rotation.Fence{Token: 3, RunID: "run-3"}
	g3, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-3", Current: g1.Credential.Meta(), Fence: f3})
	require.NoError(t, err)
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "s", Current: g1.Credential.Meta(), Fence: f3}))
	require.True(t, isWrongPass(login(user, g3.Credential.Secret.Reveal())))
	require.NoError(t, login(user, g1.Credential.Secret.Reveal()))
	_, err = r.Generate(ctx, rotation.GenerateRequest{SecretID: "s", RunID: "run-0", Current: g1.Credential.Meta(), Fence: rotation.Fence{Token: 1, RunID: "run-0"}})
	require.ErrorIs(t, err, rotation.ErrFenced, "the fence works with the least privilege")

	// And no more.
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr, Username: name, Password: pw, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, su.Set(ctx, "rt:app-data", "x", 0).Err())
	t.Cleanup(func() { _ = su.Del(context.Background(), "rt:app-data").Err() })
	for _, cmd := range [][]interface{}{{"GET", "rt:app-data"}, {"CONFIG", "GET", "*"}, {"HSET", "rt:other", "a", "b"}, {"KEYS", "*"}, {"FLUSHALL"}} {
		err := c.Do(ctx, cmd...).Err()
		require.Error(t, err, "%v", cmd)
		require.True(t, strings.HasPrefix(err.Error(), "NOPERM"), "%v: %v", cmd, err)
	}
	require.NoError(t, c.HGet(ctx, redis.FenceKeyPrefix+user, "token").Err())
}

// leastPrivilegeAdmin creates a user with the rules of
// deploy/redis/rotator.acl and a password of its own (returned), deleted
// at cleanup.
func leastPrivilegeAdmin(t *testing.T, su *goredis.Client) (string, string) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile("../../deploy/redis/rotator.acl")
	require.NoError(t, err)
	var rules []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "user ") {
			f := strings.Fields(line)
			require.Equal(t, "rotator", f[1])
			rules = f[2:]
		}
	}
	require.NotEmpty(t, rules, "no user line in rotator.acl")
	name := "rt_rotator_" + randHex(t, 4)
	pw := "rotator-" + randHex(t, 12)
	for i, x := range rules {
		if x == "#<sha256-of-password>" {
			rules[i] = "#" + sha(pw)
		}
	}
	args := []interface{}{"ACL", "SETUSER", name}
	for _, x := range rules {
		args = append(args, x)
	}
	require.NoError(t, su.Do(ctx, args...).Err())
	t.Cleanup(func() { _ = su.Do(context.Background(), "ACL", "DELUSER", name).Err() })
	return name, pw
}
