package rotation_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
	"github.com/rotator/rotator/rotators/redis"
)

// The failure-path matrix's cells for the kinds beyond Postgres (issue
// 18): a MariaDB blue/green pair on the server at 127.0.0.1:3306 and a
// Redis ACL user on 127.0.0.1:6379. They run the cell procedure of
// TestFailurePathMatrix unchanged; the world differs only in its rotator
// and its matrixKind (how a published credential is tested, which
// credentials can log in).
const (
	matrixMySQL = "mysql"
	matrixRedis = "redis"
)

// matrixKind is the target side of a cell: Postgres (the env's pair),
// MariaDB, Redis, or a key ring (matrixkeyring_test.go), which has no
// target: its stores are all there is.
type matrixKind interface {
	// works logs in with c as a client would.
	works(c rotation.Credential) error
	// ident names a credential the way live names it: the user of a
	// blue/green pair, the key id of a Redis password (computed from the
	// secret when c carries one, else c.KeyID: an unfinished run's
	// journaled credential).
	ident(c rotation.Credential) string
	// live lists what can log in now.
	live() []string
	// original is the ident of what clients use before anything is
	// published ("" when nothing).
	original() string
}

// pgMatrixKind is the env's Postgres blue/green pair.
type pgMatrixKind struct{ e *env }

func (k pgMatrixKind) works(c rotation.Credential) error {
	return k.e.login(c.Username, c.Secret.Reveal())
}
func (pgMatrixKind) ident(c rotation.Credential) string { return c.Username }
func (k pgMatrixKind) live() []string                   { return k.e.loginRoles() }
func (k pgMatrixKind) original() string                 { return k.e.role }

// dualKey reports whether a mode keeps old and new valid side by side,
// so nothing may log in that no store publishes (single-role and tokens
// are not checked so).
func dualKey(mode string) bool {
	return mode == policy.ModeBlueGreen || mode == matrixMySQL || mode == matrixRedis || mode == matrixAWSIAM
}

// newMatrixKind makes the target of a mysql, redis or keyring cell and its
// rotator, which logs to the engine's logger (searched by noPlaintext).
func newMatrixKind(t *testing.T, mode string, logger *slog.Logger) (matrixKind, rotation.Rotator) {
	t.Helper()
	switch mode {
	case matrixMySQL:
		return newMySQLMatrixKind(t, logger)
	case matrixRedis:
		return newRedisMatrixKind(t, logger)
	case matrixKeyring:
		return newKeyringMatrixKind(t, logger)
	}
	t.Fatalf("unknown kind %q", mode)
	return nil, nil
}

func matrixRand() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mysqlMatrixKind is a MariaDB pair <role>_blue, <role>_green at %.
type mysqlMatrixKind struct {
	t    *testing.T
	root *sql.DB
	role string
}

func mysqlRootDSN() string {
	if d := os.Getenv("ROTATOR_TEST_MYSQL_DSN"); d != "" {
		return d
	}
	return "root@tcp(127.0.0.1:3306)/"
}

func newMySQLMatrixKind(t *testing.T, logger *slog.Logger) (matrixKind, rotation.Rotator) {
	root, err := sql.Open("mysql", mysqlRootDSN())
	require.NoError(t, err)
	t.Cleanup(func() { _ = root.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB at %s does not answer (%v): start it (systemctl start mariadb, or `mariadbd --user=mysql &`), or set ROTATOR_TEST_MYSQL_DSN", mysqlRootDSN(), err)
	}
	k := &mysqlMatrixKind{t: t, root: root, role: "mx_" + matrixRand()}
	t.Cleanup(func() {
		for _, u := range []string{k.role + "_blue", k.role + "_green"} {
			_, _ = root.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", u))
		}
		_, _ = root.Exec(fmt.Sprintf("DROP ROLE IF EXISTS '%s'", k.role))
		_, _ = root.Exec("DELETE FROM rotator.rotator_fence WHERE secret_key = ?", k.role+"@%")
	})
	r, err := mysql.New(&policy.MySQLSpec{Role: k.role, Connection: map[string]string{"host": "127.0.0.1", "port": "3306"}}, secret.New(mysqlRootDSN()), mysql.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(r.Close)
	_, err = r.Init(ctx)
	require.NoError(t, err)
	return k, r
}

func (k *mysqlMatrixKind) works(c rotation.Credential) error {
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = c.Username, c.Secret.Reveal(), "tcp", "127.0.0.1:3306"
	cfg.Timeout = 10 * time.Second
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var one int
	return db.QueryRow("SELECT 1").Scan(&one)
}

func (*mysqlMatrixKind) ident(c rotation.Credential) string { return c.Username }
func (*mysqlMatrixKind) original() string                   { return "" } // init leaves both users locked

// live lists the users of the pair that are not locked.
func (k *mysqlMatrixKind) live() []string {
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

const matrixRedisAddr = "127.0.0.1:6379"

// redisMatrixKind is a Redis ACL user of the cell's own with one
// password before rotator.
type redisMatrixKind struct {
	t       *testing.T
	su      *goredis.Client
	user    string
	initial string
}

func newRedisMatrixKind(t *testing.T, logger *slog.Logger) (matrixKind, rotation.Rotator) {
	su := goredis.NewClient(&goredis.Options{Addr: matrixRedisAddr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = su.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := su.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is not reachable (%v): start it with `redis-server --port 6379` "+
			"(or `sudo service redis-server start`); its default user must have no password", matrixRedisAddr, err)
	}
	k := &redisMatrixKind{t: t, su: su, user: "mx_" + matrixRand(), initial: "init-" + matrixRand() + matrixRand()}
	h := sha256.Sum256([]byte(k.initial))
	require.NoError(t, su.Do(ctx, "ACL", "SETUSER", k.user, "on", "#"+hex.EncodeToString(h[:]),
		"resetkeys", "~app:*", "-@all", "+ping").Err())
	t.Cleanup(func() {
		_ = su.Do(context.Background(), "ACL", "DELUSER", k.user).Err()
		_ = su.Del(context.Background(), redis.FenceKeyPrefix+k.user).Err()
	})
	r, err := redis.New(&policy.RedisSpec{AdminURL: policy.Ref{Env: "UNUSED"}, User: k.user,
		Connection: map[string]string{"host": "127.0.0.1", "port": "6379"}}, secret.New("redis://"+matrixRedisAddr+"/0"), redis.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return k, r
}

func (k *redisMatrixKind) works(c rotation.Credential) error {
	cl := goredis.NewClient(&goredis.Options{Addr: matrixRedisAddr, Username: c.Username, Password: c.Secret.Reveal(),
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.Ping(ctx).Err()
}

func (*redisMatrixKind) ident(c rotation.Credential) string {
	if c.Secret.IsZero() {
		return c.KeyID
	}
	return redis.KeyID(c.Secret)
}

func (k *redisMatrixKind) original() string { return redis.KeyID(secret.New(k.initial)) }

// live lists the key ids of the user's passwords (none when it is off).
func (k *redisMatrixKind) live() []string {
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

// kindCases are the MariaDB, Redis and AWS IAM (matrixawsiam_test.go)
// cells: a fault at each step —
// generate fails; a publish fails (the last of three files stores) or
// takes the version and is gone through its compensation (files, and a
// real AWS store behind a proxy that goes down); a store is unreachable
// from the end of publish through retire (files, AWS); the monitor's
// re-test fails (rollback). 7 cells per kind; MATRIX_FULL adds a failed
// stage, publish and retire timeouts and a failed publish at AWS after
// the files store took the version (4 more). The stores' own faults are
// covered by the Postgres cells, Vault's included; these cells need no
// Vault.
func kindCases() []matrixCase {
	type cell struct {
		layout []string
		pos    int
		op     string
		kind   faultKind
	}
	cells := []cell{
		{filesOnly(2), 0, "generate", faultError},
		{filesOnly(3), 2, "publish", faultError},
		{filesOnly(2), 0, "publish", faultGone},
		{filesOnly(2), 1, "retire", faultGone},
		{filesOnly(2), 0, "monitor", faultError},
		{[]string{"aws", "files"}, 0, "publish", faultGone},
		{[]string{"aws", "files"}, 0, "retire", faultGone},
	}
	if matrixFull {
		cells = append(cells,
			cell{filesOnly(3), 0, "stage", faultError},
			cell{filesOnly(3), 2, "publish", faultTimeout},
			cell{[]string{"aws", "files"}, 0, "retire", faultTimeout},
			cell{[]string{"files", "aws"}, 1, "publish", faultError},
		)
	}
	var cs []matrixCase
	for _, mode := range []string{matrixMySQL, matrixRedis, matrixAWSIAM} {
		for _, c := range cells {
			cs = append(cs, matrixCase{mode: mode, layout: c.layout, pos: c.pos, op: c.op, kind: c.kind})
		}
	}
	return cs
}
