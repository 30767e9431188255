package main_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/secret"
)

// stateDump is every row of every table of the state database, as text.
func stateDump(t *testing.T, stateDSN string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, stateDSN)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	var b strings.Builder
	for _, tb := range tables {
		rows, err := conn.Query(ctx, `SELECT t::text FROM `+pgx.Identifier{tb}.Sanitize()+` t`)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		b.WriteString(strings.Join(lines, "\n"))
	}
	return b.String()
}

// The admin DSN and the state database URL in the forms string matching
// got wrong (issue 15), through the CLI: a run that fails to connect (or
// to parse), then history and status. No part of the password reaches
// stdout, the JSON logs, history, the state database or a webhook.
func TestCLIDSNRedaction(t *testing.T) {
	u, err := url.Parse(pgtest.AdminDSN(t))
	require.NoError(t, err)
	host, port := u.Hostname(), u.Port()
	hooks := &hookReceiver{}
	hook := httptest.NewServer(hooks)
	defer hook.Close()

	forms := []struct {
		name string
		dsn  string
		hide []string
	}{
		{"unescaped @", "postgres://leakadmin:Sup3r@PartOfThePassword@" + host + ":" + port + "/postgres", []string{"Sup3r", "PartOfThePassword"}},
		{"spaces around =", "host=" + host + " port=" + port + " user=leakadmin password = Sup3rS3cretKV dbname=postgres", []string{"Sup3rS3cretKV"}},
		{"spaces around =, bad port", "host=" + host + " port=x user=leakadmin password = Sup3rS3cretKV", []string{"Sup3rS3cretKV"}},
		{"escaped space", "host=" + host + " port=" + port + ` user=leakadmin password=Sup3r\ S3cretSp dbname=postgres`, []string{"Sup3r", "S3cretSp"}},
		{"no ://", "postgres//leakadmin:Sup3rN0Scheme@" + host + ":" + port + "/postgres", []string{"Sup3rN0Scheme", "leakadmin"}},
		{"escaped url, wrong password", "postgres://leakadmin:Esc%40ped%2FPw@" + host + ":" + port + "/postgres", []string{"Esc@ped/Pw", "Esc%40ped%2FPw"}},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			c := newCLI(t)
			policy := policyYAML + `
notify:
  webhooks:
    - name: pager
      url: ` + hook.URL + `
      secret: {env: HOOK_KEY}
`
			require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(policy), 0o600))
			stateDSN := c.envValue("DATABASE_URL")
			require.Equal(t, 0, c.run("migrate").code)
			c.env = append(c.withoutEnv("ROTATOR_PG_ADMIN_DSN"), "ROTATOR_PG_ADMIN_DSN="+f.dsn, "HOOK_KEY=hook-key-0123456789")
			before := hooks.count()
			r := c.run("run", "--secret", "db/postgres")
			require.NotEqual(t, 0, r.code, r.stdout+r.stderr)
			c.run("history", "--secret", "db/postgres")
			c.run("history", "--secret", "db/postgres", "-o", "json")
			c.run("status")

			// The same DSN as the state database's URL.
			bad := append(c.withoutEnv("DATABASE_URL"), "DATABASE_URL="+f.dsn)
			saved := c.env
			c.env = bad
			require.NotEqual(t, 0, c.run("history", "--secret", "db/postgres").code)
			require.NotEqual(t, 0, c.run("run", "--secret", "db/postgres").code)
			c.env = saved

			hooks.mu.Lock()
			var sent strings.Builder
			for _, b := range hooks.bodies[before:] {
				sent.Write(b)
			}
			hooks.mu.Unlock()
			outputs := map[string]string{"cli output": c.all.String(), "state database": stateDump(t, stateDSN), "webhooks": sent.String()}
			for what, out := range outputs {
				for _, seg := range strings.Split(out, secret.Redacted) {
					for _, h := range f.hide {
						require.NotContains(t, seg, h, "%s leaks %q:\n%s", what, h, out)
					}
				}
			}
		})
	}
}
