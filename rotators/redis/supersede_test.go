package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/redis"
)

// connectionsOf lists the ids of the server's client connections
// authenticated as user (CLIENT LIST).
func connectionsOf(t *testing.T, su *goredis.Client, user string) []string {
	t.Helper()
	list, err := su.ClientList(context.Background()).Result()
	require.NoError(t, err)
	return connectionsIn(list, user)
}

// connectionsIn lists the ids of the connections of user in a CLIENT
// LIST answer.
func connectionsIn(list, user string) []string {
	var ids []string
	for _, l := range strings.Split(list, "\n") {
		if !strings.Contains(l, " user="+user+" ") {
			continue
		}
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				ids = append(ids, v)
			}
		}
	}
	return ids
}

// TestSupersededAdminClientCloses: an operator changes the admin user's
// password and the admin URL with it; the wiring resolves the URL at
// each target, so the next rotators are built with the new one, on a new
// shared client. Redis keeps the connections authenticated with the old
// password open, and the daemon's generation (which holds the shared
// clients) lasts until a reload: the old URL's client must not keep them
// that long. A rotator still using it (a run in flight) keeps working;
// once the last one is closed, its connections are closed. The new URL's
// client stays open when its rotators are closed (it is not superseded).
func TestSupersededAdminClientCloses(t *testing.T) {
	su := superuser(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, pw1 := leastPrivilegeAdmin(t, su)
	user, _ := newUser(t, su)
	pools := redis.NewPools()
	t.Cleanup(pools.Close)
	url := func(pw string) secret.Value {
		return secret.New("redis://" + admin + ":" + pw + "@" + redisAddr + "/0")
	}
	// A discard of a key id the user does not have: ACL GETUSER on the
	// admin client, nothing changed.
	call := func(r *redis.Rotator) error {
		return r.Discard(ctx, rotation.DiscardRequest{SecretID: "c", New: rotation.CredentialMeta{Username: user, KeyID: "sha256:0000000000000000"},
			Current: rotation.CredentialMeta{Username: user, KeyID: "sha256:1111111111111111"}, Fence: rotation.Fence{Token: 1, RunID: "r"}})
	}

	inFlight, err := redis.New(spec(user), url(pw1), redis.WithPools(pools))
	require.NoError(t, err)
	defer inFlight.Close()
	require.NoError(t, call(inFlight))
	old := connectionsOf(t, su, admin)
	require.NotEmpty(t, old)

	pw2 := "rotator-" + randHex(t, 12)
	require.NoError(t, su.Do(ctx, "ACL", "SETUSER", admin, "resetpass", "#"+sha(pw2)).Err())
	for i := 0; i < 2; i++ {
		r, err := redis.New(spec(user), url(pw2), redis.WithPools(pools))
		require.NoError(t, err)
		require.NoError(t, call(r))
		r.Close()
	}
	require.NoError(t, call(inFlight), "a rotator still using the old URL's client keeps working")
	require.Subset(t, connectionsOf(t, su, admin), old)

	inFlight.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		now := connectionsOf(t, su, admin)
		for _, id := range old {
			for _, n := range now {
				if n == id {
					left++
				}
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connection(s) authenticated with the replaced admin password are still open after the last rotator using them was closed (ids %v of %v)", left, old, now)
		}
		time.Sleep(20 * time.Millisecond)
	}
	newConns := connectionsOf(t, su, admin)
	require.NotEmpty(t, newConns, "the current URL's client keeps its connections")
	r, err := redis.New(spec(user), url(pw2), redis.WithPools(pools))
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, call(r))
}

// TestAdminPasswordRefusedSaysSo: the admin password was changed under
// the shared client (an operator's change, the URL not updated yet):
// the connections it holds keep working, and once one must be opened
// again the error says that the admin URL's credentials are refused
// (permanent), not that the admin lacks ACL rights, and never holds
// the password.
func TestAdminPasswordRefusedSaysSo(t *testing.T) {
	su := superuser(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, pw := leastPrivilegeAdmin(t, su)
	user, _ := newUser(t, su)
	pools := redis.NewPools()
	t.Cleanup(pools.Close)
	r := newRotator(t, user, "redis://"+admin+":"+pw+"@"+redisAddr+"/0", redis.WithPools(pools))
	call := func() error {
		return r.Discard(ctx, rotation.DiscardRequest{SecretID: "c", New: rotation.CredentialMeta{Username: user, KeyID: "sha256:0000000000000000"},
			Current: rotation.CredentialMeta{Username: user, KeyID: "sha256:1111111111111111"}, Fence: rotation.Fence{Token: 1, RunID: "r"}})
	}
	require.NoError(t, call())
	require.NoError(t, su.Do(ctx, "ACL", "SETUSER", admin, "resetpass", "#"+sha("another-"+randHex(t, 8))).Err())
	require.NoError(t, call(), "an open connection stays authenticated")
	for _, id := range connectionsOf(t, su, admin) {
		require.NoError(t, su.ClientKillByFilter(ctx, "ID", id).Err())
	}
	err := call()
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "WRONGPASS")
	require.ErrorContains(t, err, "admin URL")
	require.NotContains(t, err.Error(), "rotator.acl", "a refused password is not a missing ACL right")
	require.NotContains(t, err.Error(), pw)
}
