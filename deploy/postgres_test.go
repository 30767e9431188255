package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// psql runs a file of deploy/postgres with psql, as an operator would.
func psql(t *testing.T, dsn, file string, vars ...string) {
	t.Helper()
	bin, err := exec.LookPath("psql")
	if err != nil {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
		if len(matches) == 0 {
			t.Fatalf("psql not found: install the PostgreSQL client (Debian: apt-get install postgresql-client)")
		}
		bin = matches[len(matches)-1]
	}
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1"}
	for _, v := range vars {
		args = append(args, "-v", v)
	}
	args = append(args, "-f", file, dsn)
	out, err := exec.Command(bin, args...).CombinedOutput()
	require.NoError(t, err, "psql -f %s:\n%s", file, out)
}

func exec1(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err, sql)
}

func canLogin(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

// run runs the built binary and returns its exit code and output.
func run(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	require.NoError(t, err)
	return 0, out.String()
}

// The binary carries the version stamped with -ldflags, as the Dockerfile
// stamps it.
func TestVersionStamped(t *testing.T) {
	t.Parallel()
	code, out := run(t, t.TempDir(), os.Environ(), "version")
	require.Equal(t, 0, code, out)
	require.Equal(t, "rotator "+stampedVersion+"\n", out)
}

// deploy/postgres/grants.sql is enough: `rotator init` and two blue/green
// rotations (the second retires a role the first created; each ends the
// old role's sessions) succeed with an admin role made by that file and nothing else,
// against a server that checks passwords. deploy/postgres/state.sql is
// enough for `rotator migrate` and the state the runs write.
func TestPostgresGrants(t *testing.T) {
	superApp := pgtest.NewDatabase(t) // a superuser DSN to a fresh application database
	superPostgres := pgtest.WithDatabase(superApp, "postgres")
	sfx := randHex(4)
	app, admin, stateRole := "app_"+sfx, "rotadm_"+sfx, "rotstate_"+sfx
	appPW, adminPW, statePW := "app-"+randHex(12), "adm-"+randHex(12), "st-"+randHex(12)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, superPostgres)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", stateRole))
		// The application database (and what is owned in it) is dropped by
		// pgtest; the roles are cluster-wide.
		for _, r := range []string{app + "_blue", app + "_green", app, admin, stateRole} {
			_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+r)
		}
	})

	// The application as it is before rotator: one login role owning a table.
	exec1(t, superApp, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT CREATE ON SCHEMA public TO %[1]s`, app, appPW))
	appDSN := pgtest.UserDSN(superApp, app, appPW)
	exec1(t, appDSN, "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)")

	// The admin role: grants.sql, then its password (as \password would).
	psql(t, superApp, filepath.Join("postgres", "grants.sql"), "admin_role="+admin, "app_role="+app, "terminate_sessions=1")
	exec1(t, superApp, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", admin, adminPW))
	// The state role and database: state.sql.
	psql(t, superPostgres, filepath.Join("postgres", "state.sql"), "state_role="+stateRole, "state_db="+stateRole)
	exec1(t, superPostgres, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", stateRole, statePW))

	// What the admin role is, seen from the catalog.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, superApp)
	require.NoError(t, err)
	var super, createdb, createrole, bypass, repl bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication FROM pg_roles WHERE rolname = $1`, admin).
		Scan(&super, &createdb, &createrole, &bypass, &repl))
	require.False(t, super || createdb || bypass || repl, "the admin role is no superuser and has no other attribute")
	require.True(t, createrole)
	var memberOf []string
	require.NoError(t, conn.QueryRow(ctx, `SELECT coalesce(array_agg(g.rolname::text ORDER BY 1), '{}') FROM pg_auth_members m
		JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1`, admin).Scan(&memberOf))
	var pg16 bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int >= 160000`).Scan(&pg16))
	if pg16 {
		require.ElementsMatch(t, []string{"pg_signal_backend", app}, memberOf)
	} else {
		require.Equal(t, []string{"pg_signal_backend"}, memberOf)
	}
	conn.Close(ctx)

	dir := t.TempDir()
	policies := fmt.Sprintf(`version: 1
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: db/app
    class: database
    rotator:
      postgres:
        admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}
        role: %s
        terminate_sessions: true
    publish:
      - store: local
        path: db/app.json
    checks:
      - delay: 0s
    # The test keeps a session of the old role open: the grace ends, the
    # rotation proceeds, and retire ends that session (pg_signal_backend).
    grace: 2s
    on_timeout: proceed
    monitor: 0s
`, app)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(policies), 0o600))
	_, key := run(t, dir, os.Environ(), "keygen")
	env := append(os.Environ(),
		"ROTATOR_POLICIES=policies.yaml",
		"DATABASE_URL="+pgtest.WithDatabase(pgtest.UserDSN(superApp, stateRole, statePW), stateRole),
		"ROTATOR_PG_ADMIN_DSN="+pgtest.UserDSN(superApp, admin, adminPW),
		"ROTATOR_STATE_KEY="+strings.TrimSpace(key),
		"ROTATOR_LOG_FORMAT=json",
	)

	for _, args := range [][]string{{"validate"}, {"migrate"}, {"init", "--secret", "db/app"}} {
		code, out := run(t, dir, env, args...)
		require.Equal(t, 0, code, "rotator %s:\n%s", strings.Join(args, " "), out)
	}

	published := func() (user, password string) {
		data, err := os.ReadFile(filepath.Join(dir, "secrets", "db", "app.json"))
		require.NoError(t, err)
		var v struct{ Username, Password string }
		require.NoError(t, json.Unmarshal(data, &v))
		return v.Username, v.Password
	}
	prevUser, prevPW := app, appPW
	for i := 1; i <= 2; i++ {
		// A client of the current credential still connected: retire ends it.
		held, err := pgx.Connect(ctx, pgtest.UserDSN(superApp, prevUser, prevPW))
		require.NoError(t, err)
		code, out := run(t, dir, env, "run", "--secret", "db/app")
		require.Equal(t, 0, code, "rotation %d as %s:\n%s", i, admin, out)
		_, err = held.Exec(ctx, "SELECT 1")
		require.Error(t, err, "rotation %d: the old role's session was terminated at retire", i)
		_ = held.Close(ctx)
		user, pw := published()
		require.NotEqual(t, prevUser, user)
		require.NoError(t, canLogin(pgtest.UserDSN(superApp, user, pw)), "rotation %d: the published credential logs in", i)
		require.Error(t, canLogin(pgtest.UserDSN(superApp, prevUser, prevPW)), "rotation %d: the old credential is retired", i)
		// The new login role works on the application's data.
		exec1(t, pgtest.UserDSN(superApp, user, pw), "INSERT INTO orders VALUES ($1)", i+1)
		// The actions ran fenced (the marker is the role's comment): the
		// grants are enough for the fence's DO block and COMMENT ON ROLE.
		var marker string
		super, err := pgx.Connect(ctx, superApp)
		require.NoError(t, err)
		defer super.Close(ctx)
		require.NoError(t, super.QueryRow(ctx, "SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1", user).Scan(&marker))
		require.Regexp(t, `^rotator:[0-9]+:[0-9a-f-]+:retire$`, marker, "rotation %d: the fence's marker on %s", i, user)
		prevUser, prevPW = user, pw
	}
	code, out := run(t, dir, env, "status")
	require.Equal(t, 0, code, out)
}
