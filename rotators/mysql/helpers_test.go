package mysql_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
)

// rootDSN is the MariaDB server this machine runs (root, empty password,
// over TCP). ROTATOR_TEST_MYSQL_DSN sets another.
func rootDSN() string {
	if d := os.Getenv("ROTATOR_TEST_MYSQL_DSN"); d != "" {
		return d
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// fixture is one test's role: a unique name, dropped (with its users and
// its fence row) at cleanup.
type fixture struct {
	role string
	host string
	root *sql.DB
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root, err := sql.Open("mysql", rootDSN())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB at %s does not answer (%v): start it (systemctl start mariadb, or `mariadbd --user=mysql &`), or set ROTATOR_TEST_MYSQL_DSN", rootDSN(), err)
	}
	f := &fixture{role: "rt_" + randHex(4), host: "%", root: root}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, u := range []string{f.role + "_blue", f.role + "_green"} {
			_, _ = root.ExecContext(ctx, fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", u, f.host))
		}
		_, _ = root.ExecContext(ctx, fmt.Sprintf("DROP ROLE IF EXISTS '%s'", f.role))
		_, _ = root.ExecContext(ctx, "DELETE FROM rotator.rotator_fence WHERE secret_key = ?", f.role+"@"+f.host)
		_ = root.Close()
	})
	return f
}

func (f *fixture) spec() *policy.MySQLSpec {
	return &policy.MySQLSpec{Role: f.role, Host: f.host, Connection: map[string]string{"host": "127.0.0.1", "port": "3306"}}
}

// rotator returns a rotator of the fixture's role with admin DSN dsn
// (root's when empty), closed at cleanup.
func (f *fixture) rotator(t *testing.T, dsn string) *mysql.Rotator {
	t.Helper()
	if dsn == "" {
		dsn = rootDSN()
	}
	r, err := mysql.New(f.spec(), secret.New(dsn))
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r
}

// initialized is rotator after Init.
func (f *fixture) initialized(t *testing.T) *mysql.Rotator {
	t.Helper()
	r := f.rotator(t, "")
	_, err := r.Init(ctxT(t))
	require.NoError(t, err)
	return r
}

// login connects over TCP as user and runs a query, as a client would.
func login(user, password string) error {
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, password, "tcp", "127.0.0.1:3306"
	cfg.Timeout = 10 * time.Second
	c, err := driver.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	var role sql.NullString
	return db.QueryRow("SELECT CURRENT_ROLE()").Scan(&role)
}

// locked reports whether user is locked.
func (f *fixture) locked(t *testing.T, user string) bool {
	t.Helper()
	var l bool
	require.NoError(t, f.root.QueryRow(`SELECT COALESCE(JSON_VALUE(Priv, '$.account_locked'), '0') IN ('1', 'true')
		FROM mysql.global_priv WHERE User = ? AND Host = ?`, user, f.host).Scan(&l))
	return l
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openAs keeps one connection open as the credential's user, closed at
// cleanup.
func openAs(t *testing.T, c rotation.Credential) *sql.Conn {
	t.Helper()
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = c.Username, c.Secret.Reveal(), "tcp", "127.0.0.1:3306"
	conn, err := driver.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	sc, err := db.Conn(ctxT(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Close(); _ = db.Close() })
	return sc
}
