package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
	"github.com/rotator/rotator/rotators/redis"
)

// TestWiringSharesAdminPools: the wiring the daemon and the CLI use gives
// the MariaDB secrets of one server one admin pool, and the Redis secrets
// one admin client, across the targets it builds and releases (the
// daemon builds one per check or tick); Close closes them. The servers
// count: SHOW GLOBAL STATUS 'Connections' and INFO stats
// total_connections_received. Each MariaDB call is a Test with a wrong
// password (the server check on the admin pool, then one refused login,
// which the server counts); each Redis call a Retire of a user that does
// not exist (ACL GETUSER on the admin client). Other clients of the
// servers only add to the counts: one of three tries must meet the bound.
func TestWiringSharesAdminPools(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/")
	require.NoError(t, err)
	defer root.Close()
	if err := root.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB at 127.0.0.1:3306 does not answer (%v): start it (systemctl start mariadb)", err)
	}
	su := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", Protocol: 2, DisableIdentity: true})
	defer su.Close()
	if err := su.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at 127.0.0.1:6379 is not reachable (%v): start it with `redis-server --port 6379`", err)
	}
	t.Setenv("ROTATOR_TEST_MYSQL_ADMIN", "root@tcp(127.0.0.1:3306)/")
	t.Setenv("ROTATOR_TEST_REDIS_ADMIN", "redis://127.0.0.1:6379/0")
	var b strings.Builder
	b.WriteString("stores: [{name: local, files: {dir: " + t.TempDir() + "}}]\nsecrets:\n")
	const secrets, rounds = 3, 5
	for i := 0; i < secrets; i++ {
		fmt.Fprintf(&b, `  - id: db/m%d
    class: database
    rotator: {mysql: {admin_dsn: {env: ROTATOR_TEST_MYSQL_ADMIN}, role: rt_nowire%d}}
    publish: [{store: local, path: m%d}]
  - id: cache/r%d
    class: database
    rotator: {redis: {admin_url: {env: ROTATOR_TEST_REDIS_ADMIN}, user: rt_nowire%d}}
    publish: [{store: local, path: r%d}]
    checks: [{delay: 1s}]
`, i, i, i, i, i, i)
	}
	f, err := policy.Parse("policies.yaml", []byte(b.String()))
	require.NoError(t, err)

	myConns := func() int {
		var name string
		var n int
		require.NoError(t, root.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Connections'").Scan(&name, &n))
		return n
	}
	redisConns := func() int {
		info, err := su.Info(ctx, "stats").Result()
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
	call := func(w *wiring, s *policy.SecretSpec) error {
		tg, release, err := w.Target(ctx, s)
		if err != nil {
			return err
		}
		defer release()
		if s.Rotator.MySQL != nil {
			return tg.Rotator.Test(ctx, rotation.TestRequest{SecretID: s.ID,
				Credential: rotation.Credential{Username: s.Rotator.MySQL.Role + "_blue", Secret: secret.New("wrong")}})
		}
		return tg.Rotator.Retire(ctx, rotation.RetireRequest{SecretID: s.ID,
			Old: rotation.CredentialMeta{KeyID: "sha256:0000000000000000"}, New: rotation.CredentialMeta{KeyID: "sha256:1111111111111111"}})
	}
	var got []string
	for try := 0; try < 3; try++ {
		w := newWiring(f, slog.New(slog.DiscardHandler))
		my0, r0 := myConns(), redisConns()
		for round := 0; round < rounds; round++ {
			for _, s := range f.Secrets {
				err := call(w, s)
				// The calls fail where the test means them to, after
				// using the admin side.
				if s.Rotator.MySQL != nil {
					require.ErrorContains(t, err, "Access denied", s.ID)
				} else {
					require.ErrorContains(t, err, "does not exist", s.ID)
				}
			}
		}
		myAdmin := myConns() - my0 - secrets*rounds // one refused login per MariaDB call
		redisAdmin := redisConns() - r0

		// Close (the daemon's shutdown, a command's end) closes the
		// shared pools: a target still held fails.
		held, release, err := w.Target(ctx, f.Secrets[0])
		require.NoError(t, err)
		w.Close()
		err = held.Rotator.Test(ctx, rotation.TestRequest{SecretID: f.Secrets[0].ID,
			Credential: rotation.Credential{Username: "rt_nowire0_blue", Secret: secret.New("wrong")}})
		require.ErrorContains(t, err, "closed")
		release()

		if myAdmin <= mysql.SharedMaxConns && redisAdmin <= redis.SharedPoolSize {
			t.Logf("%d calls each on %d MariaDB and %d Redis secrets opened %d and %d admin connections (try %d)",
				rounds, secrets, secrets, myAdmin, redisAdmin, try+1)
			return
		}
		got = append(got, fmt.Sprintf("MariaDB %d, Redis %d", myAdmin, redisAdmin))
	}
	t.Fatalf("%d calls each on %d secrets per server opened %s admin connections in three tries; want at most %d (MariaDB) and %d (Redis)",
		rounds, secrets, strings.Join(got, "; "), mysql.SharedMaxConns, redis.SharedPoolSize)
}
