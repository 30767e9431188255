package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotators/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fixture is a fresh database with a group role of a unique name (roles are
// cluster-wide) that already logs in with initPassword, as an application
// role would before the rotator takes it over.
type fixture struct {
	dsn          string // superuser DSN of the fresh database
	role         string
	initPassword string
	spec         *policy.PostgresSpec
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newFixture(t *testing.T, mode string) *fixture {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	f := &fixture{dsn: dsn, role: "app_" + randHex(4), initPassword: "init-" + randHex(12)}
	f.spec = &policy.PostgresSpec{
		Role: f.role,
		Mode: mode,
		Connection: map[string]string{
			"host": "127.0.0.1", "database": "app",
		},
	}
	f.exec(t, "CREATE ROLE "+f.role+" LOGIN PASSWORD '"+f.initPassword+"'")
	f.exec(t, "GRANT CREATE ON SCHEMA public TO "+f.role)
	t.Cleanup(func() { f.dropRoles(f.role, f.role+"_blue", f.role+"_green") })
	return f
}

// dropRoles removes the test's roles (they outlive the database otherwise).
func (f *fixture) dropRoles(roles ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1)", roles)
	for _, r := range roles {
		_, _ = conn.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{r}.Sanitize())
	}
	for _, r := range roles {
		_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
	}
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, f.dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err, sql)
}

func (f *fixture) queryRow(t *testing.T, sql string, dest []any, args ...any) {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, f.dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, sql, args...).Scan(dest...), sql)
}

// rotator builds a Rotator with the superuser DSN (or adminDSN when set)
// and closes it at cleanup.
func (f *fixture) rotator(t *testing.T, adminDSN string, opts ...postgres.Option) *postgres.Rotator {
	t.Helper()
	if adminDSN == "" {
		adminDSN = f.dsn
	}
	opts = append([]postgres.Option{postgres.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil)))}, opts...)
	r, err := postgres.New(f.spec, secret.New(adminDSN), opts...)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r
}

// login connects as user with password, as a client would, and runs a query.
func (f *fixture) login(t *testing.T, user, password string) error {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(f.dsn, user, password))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// hold opens a session as user and keeps it until cleanup.
func (f *fixture) hold(t *testing.T, user, password string) *pgx.Conn {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(f.dsn, user, password))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func (f *fixture) canLogin(t *testing.T, role string) bool {
	t.Helper()
	var b bool
	f.queryRow(t, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", []any{&b}, role)
	return b
}

// requireRefused asserts that a login failed because the password is wrong
// or the role may not log in: never because of anything else.
func requireRefused(t *testing.T, err error, what string) {
	t.Helper()
	require.Error(t, err, what+" must be refused")
	require.Regexp(t, `password authentication failed|not permitted to log in`, err.Error(), what)
}

const (
	eventually = 10 * time.Second
	tick       = 20 * time.Millisecond
)

func userDSN(dsn, user, password string) string { return pgtest.UserDSN(dsn, user, password) }
