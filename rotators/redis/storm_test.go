package redis_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/redis"
)

// lockedBuffer is a log sink for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSharedClientUnderKills: more users of one server rotate at once
// than the shared admin client's pool holds, with the least-privilege
// admin of deploy/redis/rotator.acl, while CLIENT KILL ends the admin's
// connections one after another (between commands and inside the
// fence's WATCH/MULTI/EXEC). Calls fail (transiently) but: every call
// returns within its deadline (a full pool is a timeout error, not a
// wait for good), no error or log line holds the admin password, every
// user's current password logs in, and afterwards the client serves
// every user again.
func TestSharedClientUnderKills(t *testing.T) {
	const users, rounds = 16, 8
	su := superuser(t)
	admin, pw := leastPrivilegeAdmin(t, su)
	adminURL := secret.New("redis://" + admin + ":" + pw + "@" + redisAddr + "/0")
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	pools := redis.NewPools()
	t.Cleanup(pools.Close)
	type state struct {
		r   *redis.Rotator
		cur rotation.Credential
	}
	var ss []*state
	for i := 0; i < users; i++ {
		u, p := newUser(t, su)
		r := newRotator(t, u, adminURL.Reveal(), redis.WithPools(pools), redis.WithLogger(logger))
		ss = append(ss, &state{r: r, cur: rotation.Credential{Username: u, Secret: secret.New(p), KeyID: redis.KeyID(secret.New(p))}})
	}

	stop, killed := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			list, err := su.ClientList(context.Background()).Result()
			if err != nil {
				continue
			}
			if ids := connectionsIn(list, admin); len(ids) > 0 {
				if su.ClientKillByFilter(context.Background(), "ID", ids[i%len(ids)]).Err() == nil {
					n++
				}
			}
		}
	}()
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 1; j <= rounds; j++ {
				fence := rotation.Fence{Token: int64(j), RunID: fmt.Sprintf("run-%d", j)}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				// As the engine: a generated password is published (the
				// current one from then on), then the old one retired.
				g, err := s.r.Generate(ctx, rotation.GenerateRequest{SecretID: s.cur.Username, RunID: fence.RunID, Current: s.cur.Meta(), Fence: fence})
				if err == nil {
					old := s.cur
					s.cur = g.Credential
					err = s.r.Retire(ctx, rotation.RetireRequest{SecretID: old.Username, Old: old.Meta(), New: g.Credential.Meta(), Fence: fence})
				}
				if ctx.Err() != nil {
					fail(fmt.Errorf("user %s round %d: ran out of its deadline: %v", s.cur.Username, j, err))
				}
				cancel()
				if err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	t.Logf("%d admin connections killed; %d of %d calls failed", <-killed, len(errs), users*rounds)
	for _, err := range errs {
		require.NotContains(t, err.Error(), pw, "an error holds the admin password")
		require.NotContains(t, err.Error(), "ran out of its deadline")
	}
	require.NotContains(t, logs.String(), pw, "a log line holds the admin password")
	require.Less(t, len(errs), users*rounds, "no rotation went through")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range ss {
		require.NoError(t, login(s.cur.Username, s.cur.Secret.Reveal()), "the current password of %s", s.cur.Username)
		// A generate with the next token works on the shared client.
		fence := rotation.Fence{Token: rounds + 1, RunID: "after"}
		_, err := s.r.Generate(ctx, rotation.GenerateRequest{SecretID: s.cur.Username, RunID: fence.RunID, Current: s.cur.Meta(), Fence: fence})
		require.NoError(t, err, "after the kills")
	}
}
