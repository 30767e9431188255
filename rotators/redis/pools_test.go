package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/redis"
	"github.com/rotator/rotator/rotators/rotatortest"
)

// The conformance suite on shared admin clients.
func TestConformanceSharedPools(t *testing.T) {
	su := superuser(t)
	pools := redis.NewPools()
	t.Cleanup(pools.Close)
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator {
			user, _ := newUser(t, su)
			return newRotator(t, user, "redis://"+redisAddr+"/0", redis.WithPools(pools))
		},
		Login:      func(t *testing.T, c rotation.Credential) error { return login(c.Username, c.Secret.Reveal()) },
		CanRestore: true,
	})
}

// received is the server's total_connections_received (INFO stats).
func received(t *testing.T, su *goredis.Client) int {
	t.Helper()
	info, err := su.Info(context.Background(), "stats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("INFO stats has no total_connections_received")
	return 0
}

// TestSharedAdminClientConnections: rotations of many users of one
// server, more at once than the pool holds, each call on a rotator built
// for it and closed after (as the daemon and the CLI do), with the
// least-privilege admin of deploy/redis/rotator.acl, open at most
// SharedPoolSize admin connections in all, not one per call. The server
// counts: total_connections_received rises by one per login test (a
// fresh connection: generate's test of the new password, and Test) plus
// the admin connections. Other clients of the server only add to the
// count, so the bound is met by at least one of a few tries (each on
// fresh pools); without sharing every try opens an admin connection per
// rotator. Fencing holds on the shared connections: a stale token is
// refused.
func TestSharedAdminClientConnections(t *testing.T) {
	su := superuser(t)
	ctx := context.Background()
	name, pw := leastPrivilegeAdmin(t, su)
	adminURL := secret.New("redis://" + name + ":" + pw + "@" + redisAddr + "/0")
	const users, rounds = 12, 3
	type state struct {
		user  string
		cur   rotation.Credential
		token int64
	}
	var us []*state
	for i := 0; i < users; i++ {
		u, p := newUser(t, su)
		us = append(us, &state{user: u, cur: rotation.Credential{Username: u, Secret: secret.New(p)}, token: 10})
	}
	// Per user and round: a rotator that generates, tests, retires; and
	// one whose stale generate is refused. Two logins (generate's test
	// and Test), no login for the refused one.
	step := func(pools *redis.Pools, s *state) error {
		r, err := redis.New(spec(s.user), adminURL, redis.WithPools(pools))
		if err != nil {
			return err
		}
		defer r.Close()
		s.token++
		f := rotation.Fence{Token: s.token, RunID: fmt.Sprintf("run-%d", s.token)}
		g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: s.user, RunID: f.RunID, Current: s.cur.Meta(), Fence: f})
		if err != nil {
			return err
		}
		if err := r.Test(ctx, rotation.TestRequest{SecretID: s.user, Credential: g.Credential}); err != nil {
			return err
		}
		if err := r.Retire(ctx, rotation.RetireRequest{SecretID: s.user, Old: g.Replaces, New: g.Credential.Meta(), Fence: f}); err != nil {
			return err
		}
		s.cur = g.Credential
		stale, err := redis.New(spec(s.user), adminURL, redis.WithPools(pools))
		if err != nil {
			return err
		}
		defer stale.Close()
		old := rotation.Fence{Token: s.token - 1, RunID: "stale"}
		_, err = stale.Generate(ctx, rotation.GenerateRequest{SecretID: s.user, RunID: old.RunID, Current: s.cur.Meta(), Fence: old})
		if !errors.Is(err, rotation.ErrFenced) {
			return fmt.Errorf("a stale token's generate of %s: want refused by the fence, got %v", s.user, err)
		}
		return nil
	}
	logins := users * rounds * 2
	var admin []int
	for try := 0; try < 3; try++ {
		pools := redis.NewPools()
		before := received(t, su)
		for round := 0; round < rounds; round++ {
			var wg sync.WaitGroup
			errs := make(chan error, users)
			for _, s := range us {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- step(pools, s)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		}
		opened := received(t, su) - before - logins
		pools.Close()
		admin = append(admin, opened)
		if opened <= redis.SharedPoolSize {
			t.Logf("%d rotations of %d users opened %d admin connections (try %d)", users*rounds, users, opened, try+1)
			for _, s := range us {
				require.NoError(t, login(s.user, s.cur.Secret.Reveal()))
			}
			return
		}
	}
	t.Fatalf("%d rotations of %d users on one server opened %v admin connections in three tries; want at most %d (the shared pool's size)",
		users*rounds, users, admin, redis.SharedPoolSize)
}

// A rotator given WithHook keeps a client of its own (a hook must see
// its commands only); closing it leaves the shared client working.
func TestHookedRotatorOwnClient(t *testing.T) {
	su := superuser(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pools := redis.NewPools()
	t.Cleanup(pools.Close)
	ua, _ := newUser(t, su)
	ub, _ := newUser(t, su)
	var cb capture
	shared := newRotator(t, ua, "redis://"+redisAddr+"/0", redis.WithPools(pools))
	hooked := newRotator(t, ub, "redis://"+redisAddr+"/0", redis.WithPools(pools), redis.WithHook(&cb))
	_, err := shared.Generate(ctx, rotation.GenerateRequest{SecretID: "a", RunID: "r1", Fence: rotation.Fence{Token: 1, RunID: "r1"}})
	require.NoError(t, err)
	require.Empty(t, cb.all(), "the hook saw another rotator's commands")
	_, err = hooked.Generate(ctx, rotation.GenerateRequest{SecretID: "b", RunID: "r1", Fence: rotation.Fence{Token: 1, RunID: "r1"}})
	require.NoError(t, err)
	require.NotEmpty(t, cb.aclSetuserArgs())
	hooked.Close()
	_, err = shared.Generate(ctx, rotation.GenerateRequest{SecretID: "a", RunID: "r2", Fence: rotation.Fence{Token: 2, RunID: "r2"}})
	require.Error(t, err, "two passwords and none named current: refused, after reading the user on the shared client")
	require.ErrorContains(t, err, "has 2 passwords")
}

// After Close, a rotator cannot be built on the pools; the error names
// the server by address, never the admin URL or its password.
func TestClosedPoolsRefuse(t *testing.T) {
	pools := redis.NewPools()
	pools.Close()
	const pw = "s3cret-admin-pw"
	_, err := redis.New(spec("app"), secret.New("redis://rotator:"+pw+"@"+redisAddr+"/0"), redis.WithPools(pools))
	require.ErrorContains(t, err, "closed")
	require.ErrorContains(t, err, redisAddr)
	require.NotContains(t, err.Error(), pw)
}
