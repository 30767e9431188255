package proof_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotators/redis"
)

// crashKind is the target side of a crash world (crash_test.go): how a
// published credential logs in, and which credentials can.
type crashKind interface {
	login(user, password string) error
	// ident names a credential the way live names it: the user for the
	// blue/green kinds (Postgres, MariaDB), the password's key id for
	// Redis (one user, several passwords).
	ident(user, password string) string
	// runIdent names the unfinished run's new credential from what it
	// journaled (new_meta: username, key_id).
	runIdent(user, keyID string) string
	// pending is the credential the target records as made by run (the
	// Redis marker's pending_key, written in the transaction that adds
	// the password), "" when the target keeps no such record: a kill
	// after generate's outcome and before the run journals its new
	// credential (with the first stage's intent) leaves it only there.
	pending(run string) string
	// live lists the credentials that can log in now, sorted.
	live() []string
	// original is the credential clients use before rotator publishes one;
	// ok is false when there is none (MariaDB: init makes the pair locked,
	// the application's old account is not rotator's).
	original() (user, password string, ok bool)
}

// pgKind is a Postgres blue/green pair (target).
type pgKind struct{ tg *target }

func (k pgKind) login(user, pw string) error      { return k.tg.login(user, pw) }
func (pgKind) ident(user, _ string) string        { return user }
func (pgKind) runIdent(user, _ string) string     { return user }
func (pgKind) pending(string) string              { return "" }
func (k pgKind) live() []string                   { return k.tg.loginRoles() }
func (k pgKind) original() (string, string, bool) { return k.tg.role, k.tg.initial, true }

// mysqlKind is a MariaDB blue/green pair of role: <role>_blue and
// <role>_green at host %.
type mysqlKind struct {
	t    *testing.T
	root *sql.DB
	role string
}

// newMySQLRole connects as root to the MariaDB server and names a role
// of the test's own; the users init makes of it, the role and its fence
// row are dropped at cleanup.
func newMySQLRole(t *testing.T, prefix string) *mysqlKind {
	t.Helper()
	root, err := sql.Open("mysql", mysqlRootDSN())
	require.NoError(t, err)
	t.Cleanup(func() { _ = root.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB at %s does not answer (%v): start it (systemctl start mariadb, or `mariadbd --user=mysql &`), or set ROTATOR_TEST_MYSQL_DSN", mysqlRootDSN(), err)
	}
	k := &mysqlKind{t: t, root: root, role: prefix + "_" + randHex(4)}
	t.Cleanup(func() {
		for _, u := range k.users() {
			_, _ = root.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", u))
		}
		_, _ = root.Exec(fmt.Sprintf("DROP ROLE IF EXISTS '%s'", k.role))
		_, _ = root.Exec("DELETE FROM rotator.rotator_fence WHERE secret_key = ?", k.role+"@%")
	})
	return k
}

func (k *mysqlKind) users() []string { return []string{k.role + "_blue", k.role + "_green"} }

func (k *mysqlKind) login(user, pw string) error {
	return mysqlClientLogin(context.Background(), user, pw)
}
func (*mysqlKind) ident(user, _ string) string      { return user }
func (*mysqlKind) runIdent(user, _ string) string   { return user }
func (*mysqlKind) original() (string, string, bool) { return "", "", false }
func (*mysqlKind) pending(string) string            { return "" }

// live lists the users of the pair that are not locked (a locked user's
// login is refused with error 4151, whatever its password).
func (k *mysqlKind) live() []string {
	k.t.Helper()
	rows, err := k.root.Query(`SELECT User FROM mysql.global_priv WHERE Host = '%' AND User IN (?, ?)
		AND COALESCE(JSON_VALUE(Priv, '$.account_locked'), '0') NOT IN ('1', 'true') ORDER BY User`, k.role+"_blue", k.role+"_green")
	require.NoError(k.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		require.NoError(k.t, rows.Scan(&u))
		out = append(out, u)
	}
	require.NoError(k.t, rows.Err())
	return out
}

// redisAddr is the Redis this machine runs; its default user has no
// password and is the admin in these tests.
const redisAddr = "127.0.0.1:6379"

// redisKind is a Redis ACL user of the test's own, with one password
// (initial) and an application's rights.
type redisKind struct {
	t       *testing.T
	su      *goredis.Client
	user    string
	initial string
}

func newRedisUser(t *testing.T) *redisKind {
	t.Helper()
	su := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = su.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := su.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is not reachable (%v): start it with `redis-server --port 6379` "+
			"(or `sudo service redis-server start`); its default user must have no password", redisAddr, err)
	}
	k := &redisKind{t: t, su: su, user: "pr_" + randHex(5), initial: "init-" + randHex(12)}
	h := sha256.Sum256([]byte(k.initial))
	require.NoError(t, su.Do(ctx, "ACL", "SETUSER", k.user, "on", "#"+hex.EncodeToString(h[:]),
		"resetkeys", "~app:*", "-@all", "+ping", "+get", "+set").Err())
	t.Cleanup(func() {
		_ = su.Do(context.Background(), "ACL", "DELUSER", k.user).Err()
		_ = su.Del(context.Background(), redis.FenceKeyPrefix+k.user).Err()
	})
	return k
}

// login authenticates a new connection (AUTH user password, PING), as a
// client does.
func (k *redisKind) login(user, pw string) error {
	return redisClientLogin(context.Background(), user, pw)
}

func redisClientLogin(ctx context.Context, user, pw string) error {
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr, Username: user, Password: pw,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func (*redisKind) ident(_, pw string) string          { return redis.KeyID(secret.New(pw)) }
func (*redisKind) runIdent(_, keyID string) string    { return keyID }
func (k *redisKind) original() (string, string, bool) { return k.user, k.initial, true }

func (k *redisKind) pending(run string) string {
	k.t.Helper()
	m, err := k.su.HGetAll(context.Background(), redis.FenceKeyPrefix+k.user).Result()
	require.NoError(k.t, err)
	if m["pending_run"] != run {
		return ""
	}
	return m["pending_key"]
}

// live lists the key ids of the user's passwords (none when the user is
// off).
func (k *redisKind) live() []string {
	k.t.Helper()
	v, err := k.su.Do(context.Background(), "ACL", "GETUSER", k.user).Slice()
	require.NoError(k.t, err)
	var out []string
	on := false
	for i := 0; i+1 < len(v); i += 2 {
		switch v[i] {
		case "flags":
			on = slices.Contains(v[i+1].([]interface{}), interface{}("on"))
		case "passwords":
			for _, p := range v[i+1].([]interface{}) {
				out = append(out, redis.KeyIDPrefix+p.(string)[:16])
			}
		}
	}
	if !on {
		return nil
	}
	slices.Sort(out)
	return out
}

// crashKindPolicy is crashPolicy for another kind: the secret (%[2]s) and
// its rotator block (%[3]s) are the kind's; a short delay check (Redis
// cannot count a password's clients, so its policy needs one).
const crashKindPolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
  - name: aws
    awssm:
      region: us-east-1
      endpoint: %[1]s
secrets:
  - id: %[2]s
    class: database
    rotator:
%[3]s
    publish:
      - store: local
        path: %[2]s.json
      - store: aws
        path: proof/%[2]s
    checks:
      - delay: 1s
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// newKindCrashWorld is a crash world (the CLI, the files store and AWS on
// moto_server) for a MariaDB pair ("mysql") or a Redis user ("redis").
func newKindCrashWorld(t *testing.T, kind string) *crashWorld {
	t.Helper()
	moto := mototest.New(t)
	w := &crashWorld{t: t, dir: t.TempDir(), stateDSN: newStateDSN(t), seen: map[string]bool{}}
	w.sm, w.motoURL = secretsmanager.NewFromConfig(moto.AWSConfig()), moto.URL
	switch kind {
	case "mysql":
		k := newMySQLRole(t, "pc")
		w.kind, w.id = k, "db/mariadb"
		block := fmt.Sprintf("      mysql:\n        admin_dsn: {env: ROTATOR_MYSQL_ADMIN_DSN}\n        role: %s\n        connection: {host: 127.0.0.1, port: \"3306\"}", k.role)
		w.start(fmt.Sprintf(crashKindPolicy, moto.URL, w.id, block), true, "ROTATOR_MYSQL_ADMIN_DSN="+mysqlRootDSN())
	case "redis":
		k := newRedisUser(t)
		w.kind, w.id = k, "cache/redis"
		block := fmt.Sprintf("      redis:\n        admin_url: {env: ROTATOR_REDIS_ADMIN_URL}\n        user: %s\n        connection: {host: 127.0.0.1, port: \"6379\"}", k.user)
		w.start(fmt.Sprintf(crashKindPolicy, moto.URL, w.id, block), false, "ROTATOR_REDIS_ADMIN_URL=redis://"+redisAddr+"/0")
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	return w
}

// crashKindRandom is how many random kills the MariaDB and Redis crash
// tests add to the step boundaries (50 with PROOF_FULL).
func crashKindRandom() int {
	if full {
		return 50
	}
	return 3
}

// TestCrashAnywhereMySQL is TestCrashAnywhere for a MariaDB blue/green
// pair: SIGKILL at every step boundary and at random moments; after each
// kill what the stores publish logs in and every unlocked user of the pair
// is published or the unfinished run's; the next run resumes and
// completes, after which only the published user is unlocked and no
// version was published twice.
func TestCrashAnywhereMySQL(t *testing.T) {
	t.Parallel()
	crashAnywhere(t, newKindCrashWorld(t, "mysql"), crashKindRandom())
}

// TestCrashAnywhereRedis is TestCrashAnywhere for a Redis ACL user: after
// each kill what the stores publish logs in and every password on the
// user is published (or the original, or the unfinished run's); after the
// resumed run the user holds the published password only: every other
// one is refused.
func TestCrashAnywhereRedis(t *testing.T) {
	t.Parallel()
	crashAnywhere(t, newKindCrashWorld(t, "redis"), crashKindRandom())
}
