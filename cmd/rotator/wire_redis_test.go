package main_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

// A Redis ACL user rotated from a policies file through the CLI: each
// `rotator run` publishes a password that logs in and retires the one it
// replaced. Needs the Redis at 127.0.0.1:6379 (default user, no password).
func TestCLIRotatesARedisUser(t *testing.T) {
	ctx := context.Background()
	su := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = su.Close() })
	if err := su.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at 127.0.0.1:6379 is not reachable (%v): start it with `redis-server --port 6379`", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	user := "rt_cli_" + hex.EncodeToString(b)
	initPW := "init-" + hex.EncodeToString(b)
	h := sha256.Sum256([]byte(initPW))
	require.NoError(t, su.Do(ctx, "ACL", "SETUSER", user, "on", "#"+hex.EncodeToString(h[:]), "-@all", "+ping").Err())
	t.Cleanup(func() {
		_ = su.Do(context.Background(), "ACL", "DELUSER", user).Err()
		_ = su.Del(context.Background(), "rotator:fence:"+user).Err()
	})
	policy := `version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: cache/redis
    class: database
    rotator:
      redis:
        admin_url: {env: ROTATOR_REDIS_ADMIN_URL}
        user: ` + user + `
        connection: {host: 127.0.0.1, port: 6379}
    publish:
      - store: local
        path: cache/redis.json
        derive: {url: "redis://{username}:{password}@{host}:{port}/0"}
    checks:
      - delay: 1s
    grace: 30s
    monitor: 0s
`
	e := newEnv(t, pgtest.NewDatabase(t), policy, "ROTATOR_REDIS_ADMIN_URL=redis://127.0.0.1:6379/0")
	e.must("validate")
	e.must("migrate")
	login := func(pw string) error {
		c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", Username: user, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		defer c.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	}
	published := func() map[string]string {
		raw, err := os.ReadFile(filepath.Join(e.dir, "secrets", "cache/redis.json"))
		require.NoError(t, err)
		var d map[string]string
		require.NoError(t, json.Unmarshal(raw, &d))
		return d
	}
	var all []string
	e.must("run", "--secret", "cache/redis")
	v1 := published()
	require.Equal(t, user, v1["username"])
	require.True(t, strings.HasPrefix(v1["key_id"], "sha256:"), v1["key_id"])
	require.NoError(t, login(v1["password"]))
	require.Error(t, login(initPW), "the first run retires the password it replaced")
	all = append(all, initPW, v1["password"])

	out := e.must("run", "--secret", "cache/redis")
	v2 := published()
	require.NotEqual(t, v1["password"], v2["password"])
	require.NoError(t, login(v2["password"]))
	require.Error(t, login(v1["password"]), "the retired password must be refused")
	require.Equal(t, "redis://"+user+":"+v2["password"]+"@127.0.0.1:6379/0", v2["url"])
	for _, pw := range append(all, v2["password"]) {
		require.NotContains(t, out.stdout+out.stderr, pw)
	}
}
