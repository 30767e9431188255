package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/pgtest"
)

// checkPolicy publishes a blue/green Postgres secret to the files store and
// to AWS Secrets Manager (moto), and a self-issued token to the files store.
const checkPolicy = `version: 1
defaults:
  monitor: 0s
  jitter: 0s
  retry: {attempts: 1}
stores:
  - name: local
    files:
      dir: secrets
  - name: aws
    awssm:
      region: us-east-1
      endpoint: %s
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}
        role: %s
    publish:
      - store: local
        path: db/postgres.json
      - store: aws
        path: check/db/postgres
    grace: 30s
  - id: tok/admin
    class: admin_token
    rotator: {token: {prefix: t_, length: 32}}
    publish:
      - store: local
        path: tok/admin.json
`

// checkWorld is the CLI against a Postgres target, the files store and
// AWS on moto.
type checkWorld struct {
	*env
	t      *testing.T
	appDSN string
	role   string
	// secrets are every password and token the test saw (and the admin
	// DSN's password), searched for in every output.
	secrets []string
	outputs strings.Builder
}

func newCheckWorld(t *testing.T) *checkWorld {
	t.Helper()
	moto := mototest.New(t)
	w := &checkWorld{t: t, appDSN: pgtest.NewDatabase(t), role: fmt.Sprintf("chk%d", os.Getpid()%100000)}
	w.role += strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]`).ReplaceAllString(t.Name(), ""))
	w.sql(fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'check-initial-password'`, w.role))
	w.secrets = append(w.secrets, "check-initial-password")
	if u, err := url.Parse(w.appDSN); err == nil {
		if pw, ok := u.User.Password(); ok {
			w.secrets = append(w.secrets, pw)
		}
	}
	w.env = newEnv(t, pgtest.NewDatabase(t), fmt.Sprintf(checkPolicy, moto.URL, w.role),
		append([]string{"ROTATOR_PG_ADMIN_DSN=" + w.appDSN}, clitest.AWSEnv...)...)
	w.mustRun("migrate")
	w.mustRun("init", "--secret", "db/postgres")
	return w
}

func (w *checkWorld) sql(q string) {
	w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.appDSN)
	require.NoError(w.t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, q)
	require.NoError(w.t, err, q)
}

func (w *checkWorld) cli(args ...string) result {
	w.t.Helper()
	r := w.env.run(nil, args...)
	w.outputs.WriteString(r.stdout + r.stderr)
	return r
}

func (w *checkWorld) mustRun(args ...string) result {
	w.t.Helper()
	r := w.cli(args...)
	require.Equal(w.t, 0, r.code, "rotator %v:\n%s\n%s", args, r.stdout, r.stderr)
	return r
}

// published reads what the files store holds for path, and remembers the
// secret in it.
func (w *checkWorld) published(path string) map[string]string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, "secrets", path))
	require.NoError(w.t, err)
	var d map[string]string
	require.NoError(w.t, json.Unmarshal(b, &d))
	for _, k := range []string{"password", "token"} {
		if d[k] != "" {
			w.secrets = append(w.secrets, d[k])
		}
	}
	return d
}

// row finds the table row of secret at store.
func row(t *testing.T, table, secret, store string) string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == secret && strings.HasPrefix(f[1], store+":") {
			return l
		}
	}
	require.Failf(t, "no row", "no row for %s at %s in:\n%s", secret, store, table)
	return ""
}

func status(t *testing.T, table, secret, store string) string {
	return strings.Fields(row(t, table, secret, store))[2]
}

// TestCheckCommand: `rotator check` on healthy secrets exits 0; a published
// password changed behind rotator's back exits 7 and the table names the
// secret and both stores; two stores that disagree are reported (exit 7);
// --secret narrows it; -o json carries the same; no secret appears in any
// output.
func TestCheckCommand(t *testing.T) {
	t.Parallel()
	w := newCheckWorld(t)

	// Never rotated: nothing is published, nothing is broken.
	r := w.cli("check")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Equal(t, "unpublished", status(t, r.stdout, "db/postgres", "local"))

	w.mustRun("run", "--secret", "db/postgres")
	w.mustRun("run", "--secret", "tok/admin")
	pg := w.published("db/postgres.json")
	w.published("tok/admin.json")

	r = w.cli("check")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	for _, s := range []struct{ secret, store string }{{"db/postgres", "local"}, {"db/postgres", "aws"}, {"tok/admin", "local"}} {
		require.Equal(t, "ok", status(t, r.stdout, s.secret, s.store), r.stdout)
	}
	require.Contains(t, row(t, r.stdout, "db/postgres", "aws"), pg["username"])

	// Someone changes the published role's password behind rotator's back.
	w.sql(fmt.Sprintf(`ALTER ROLE %s PASSWORD 'changed-behind-rotators-back'`, pg["username"]))
	w.secrets = append(w.secrets, "changed-behind-rotators-back")
	r = w.cli("check")
	require.Equal(t, 7, r.code, r.stdout+r.stderr)
	for _, store := range []string{"local", "aws"} {
		l := row(t, r.stdout, "db/postgres", store)
		require.Contains(t, l, "BROKEN")
		require.Contains(t, l, "password authentication failed")
	}
	require.Equal(t, "ok", status(t, r.stdout, "tok/admin", "local"), "the other secret is fine")
	require.Contains(t, r.stderr, "db/postgres: a published credential does not work")

	r = w.cli("check", "--secret", "tok/admin")
	require.Equal(t, 0, r.code, "--secret checks only that secret: %s", r.stdout+r.stderr)
	require.NotContains(t, r.stdout, "db/postgres")

	r = w.cli("check", "--secret", "db/postgres", "-o", "json")
	require.Equal(t, 7, r.code, r.stderr)
	var reports []struct {
		Secret string `json:"secret"`
		Stores []struct {
			Store, Path, Status, Reason string
			Works                       bool
			Current                     *struct {
				Number   int64  `json:"number"`
				Username string `json:"username"`
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &reports), r.stdout)
	require.Len(t, reports, 1)
	require.Len(t, reports[0].Stores, 2)
	for _, s := range reports[0].Stores {
		require.Equal(t, "broken", s.Status)
		require.False(t, s.Works)
		require.Equal(t, pg["username"], s.Current.Username)
	}

	// A fresh rotation repairs it.
	w.mustRun("run", "--secret", "db/postgres")
	pg = w.published("db/postgres.json")
	w.mustRun("check")

	// The files store is edited by hand: same credential, another version.
	name := filepath.Join(w.dir, "secrets", "db/postgres.json")
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	var d map[string]string
	require.NoError(t, json.Unmarshal(b, &d))
	d["version"], d["run_id"] = "41", "edited-by-hand"
	b, err = json.Marshal(d)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(name, b, 0o600))
	r = w.cli("check")
	require.Equal(t, 7, r.code, r.stdout+r.stderr)
	local, aws := row(t, r.stdout, "db/postgres", "local"), row(t, r.stdout, "db/postgres", "aws")
	require.Contains(t, local, "DISAGREES")
	require.Contains(t, local, "aws:check/db/postgres: version "+pg["version"]+" (here 41)")
	require.Contains(t, aws, "DISAGREES")
	require.Contains(t, aws, "local:db/postgres.json: version 41 (here "+pg["version"]+"), run edited-by-hand")

	for _, s := range w.secrets {
		require.NotContains(t, w.outputs.String(), s, "a secret leaked into the CLI's output")
	}
}

// `rotator check --help` documents the statuses, exit code 7 and has an
// example; the root help lists exit code 7.
func TestCheckHelp(t *testing.T) {
	t.Parallel()
	c := &cli{t: t, dir: t.TempDir(), env: os.Environ()}
	r := c.run("check", "--help")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "Examples:")
	require.Contains(t, r.stdout, "rotator check --secret db/postgres")
	require.Contains(t, r.stdout, "7 a published credential is broken or the stores disagree")
	r = c.run("--help")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "7 check: a published credential does not work")
	r = c.run("check", "-o", "yaml")
	require.Equal(t, 2, r.code)
}
