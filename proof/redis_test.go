package proof_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const redisLoadPolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: cache/redis
    class: database
    rotator:
      redis:
        admin_url: {env: ROTATOR_REDIS_ADMIN_URL}
        user: %s
        connection: {host: 127.0.0.1, port: "6379"}
    publish:
      - store: local
        path: cache/redis.json
    checks:
      - delay: 1s   # Redis cannot count a password's clients: >= the clients' refresh (50ms) + a login, with margin
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// TestRedisLiveClients: clients that open a new connection continuously
// (AUTH with what the files store publishes, re-read every 50ms; PING)
// never fail while `rotator run` rotates the Redis user's password again
// and again from a policies file; afterwards the user holds only the
// published password and every password published before is refused.
// PROOF_ROTATIONS=N sets another number of rotations.
func TestRedisLiveClients(t *testing.T) {
	k := newRedisUser(t)
	published := cliLiveClients(t, cliLive{
		kind: "redis", id: "cache/redis", policy: fmt.Sprintf(redisLoadPolicy, k.user),
		env:   []string{"ROTATOR_REDIS_ADMIN_URL=redis://" + redisAddr + "/0"},
		login: redisClientLogin,
	})
	final := published[len(published)-1]
	require.Equal(t, []string{k.ident(final.User, final.Password)}, k.live(), "only the published password is on the user")
	for _, c := range append(published[:len(published)-1], cred{User: k.user, Password: k.initial, Version: "0"}) {
		err := k.login(c.User, c.Password)
		require.Error(t, err, "version %s was retired", c.Version)
		require.True(t, strings.HasPrefix(err.Error(), "WRONGPASS"), "version %s: %v", c.Version, err)
	}
}
