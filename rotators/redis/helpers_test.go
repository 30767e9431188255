package redis_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotators/redis"
)

// The Redis this machine starts; its default user has no password.
const redisAddr = "127.0.0.1:6379"

// superuser connects as the default user, failing the test with how to
// start Redis when it cannot.
func superuser(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is not reachable (%v): start it with `redis-server --port 6379` "+
			"(or `sudo service redis-server start`); its default user must have no password", redisAddr, err)
	}
	return c
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// newUser creates a user of its own for the test, with one password
// (returned) and the rights of an application, and deletes it (and its
// marker) at cleanup.
func newUser(t *testing.T, su *goredis.Client) (string, string) {
	t.Helper()
	ctx := context.Background()
	name := "rt_" + randHex(t, 6)
	pw := "init-" + randHex(t, 12)
	require.NoError(t, su.Do(ctx, "ACL", "SETUSER", name, "on", "#"+sha(pw), "resetkeys", "~rt:*", "-@all", "+ping", "+get", "+set").Err())
	t.Cleanup(func() {
		_ = su.Do(context.Background(), "ACL", "DELUSER", name).Err()
		_ = su.Del(context.Background(), redis.FenceKeyPrefix+name).Err()
	})
	return name, pw
}

// spec is the redis rotator spec of a user.
func spec(user string) *policy.RedisSpec {
	return &policy.RedisSpec{AdminURL: policy.Ref{Env: "UNUSED"}, User: user,
		Connection: map[string]string{"host": "127.0.0.1", "port": "6379"}}
}

// newRotator builds a rotator for user that connects as adminURL.
func newRotator(t *testing.T, user, adminURL string, opts ...redis.Option) *redis.Rotator {
	t.Helper()
	r, err := redis.New(spec(user), secret.New(adminURL), opts...)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r
}

// login authenticates a new connection as a client would, independently
// of the rotator.
func login(user, password string) error {
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr, Username: user, Password: password,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// passwords lists the user's password hashes.
func passwords(t *testing.T, su *goredis.Client, user string) []string {
	t.Helper()
	v, err := su.Do(context.Background(), "ACL", "GETUSER", user).Slice()
	require.NoError(t, err)
	for i := 0; i+1 < len(v); i += 2 {
		if v[i] == "passwords" {
			var out []string
			for _, p := range v[i+1].([]interface{}) {
				out = append(out, p.(string))
			}
			return out
		}
	}
	return nil
}

// capture is a go-redis hook that records every command the rotator's
// admin client sends, alone or in a pipeline (MULTI/EXEC).
type capture struct {
	mu   sync.Mutex
	cmds [][]string
	// beforeExec, when set, runs once before the next transaction is sent.
	beforeExec func()
}

func (c *capture) record(cmd goredis.Cmder) {
	var a []string
	for _, x := range cmd.Args() {
		a = append(a, fmt.Sprint(x))
	}
	c.mu.Lock()
	c.cmds = append(c.cmds, a)
	c.mu.Unlock()
}

func (c *capture) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (c *capture) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		c.record(cmd)
		return next(ctx, cmd)
	}
}

func (c *capture) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		c.mu.Lock()
		f := c.beforeExec
		c.beforeExec = nil
		c.mu.Unlock()
		if f != nil {
			f()
		}
		for _, cmd := range cmds {
			c.record(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *capture) all() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.cmds...)
}

// aclSetuserArgs returns the rules of every ACL SETUSER captured.
func (c *capture) aclSetuserArgs() [][]string {
	var out [][]string
	for _, a := range c.all() {
		if len(a) >= 3 && strings.EqualFold(a[0], "acl") && strings.EqualFold(a[1], "setuser") {
			out = append(out, a[3:])
		}
	}
	return out
}

func isWrongPass(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGPASS")
}

func secretOf(s string) secret.Value { return secret.New(s) }

func withLogger(l *slog.Logger) redis.Option { return redis.WithLogger(l) }
