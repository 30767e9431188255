package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/pgtest"
)

// The CLI is built once and run as a process, like a user and a CronJob.
var binary string

func TestMain(m *testing.M) { os.Exit(clitest.Main(m, ".", &binary)) }

type cli struct {
	t   *testing.T
	dir string
	env []string
	all bytes.Buffer // every byte the CLI printed
}

type result struct {
	code           int
	stdout, stderr string
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(c.t, err)
	}
	c.all.Write(stdout.Bytes())
	c.all.Write(stderr.Bytes())
	return result{code, stdout.String(), stderr.String()}
}

const policyYAML = `version: 1
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}
        role: app
    publish:
      - store: local
        path: db/postgres.json
    grace: 30s
    monitor: 0s
`

func newCLI(t *testing.T) *cli {
	t.Helper()
	dir := t.TempDir()
	appDSN := pgtest.NewDatabase(t)
	stateDSN := pgtest.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, appDSN)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='app') THEN CREATE ROLE app; END IF; END $$;
		ALTER ROLE app LOGIN PASSWORD 'cli-initial-password'`)
	require.NoError(t, err)
	return &cli{t: t, dir: dir, env: clitest.Setup(t, binary, dir, stateDSN, policyYAML, "ROTATOR_PG_ADMIN_DSN="+appDSN)}
}

func (c *cli) withoutEnv(name string) []string {
	var out []string
	for _, kv := range c.env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func TestCLIEndToEnd(t *testing.T) {
	c := newCLI(t)

	r := c.run("validate")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "policies.yaml: ok")

	// Before migrate, commands say what to do.
	r = c.run("status")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "rotator migrate")

	r = c.run("migrate")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "applied migrations [1 2 3 4]")
	r = c.run("migrate")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "up to date")

	r = c.run("init", "--secret", "db/postgres")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "app_blue")

	r = c.run("run", "--secret", "db/postgres", "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "dry run")
	require.Contains(t, r.stdout, "1. generate:")

	// A missing state key is refused with how to make one.
	saved := c.env
	c.env = c.withoutEnv("ROTATOR_STATE_KEY")
	r = c.run("run", "--secret", "db/postgres")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "rotator keygen")
	c.env = saved

	for i := 0; i < 2; i++ {
		r = c.run("run", "--secret", "db/postgres")
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		require.Contains(t, r.stdout, "db/postgres: rotated")
	}
	var published map[string]string
	b, err := os.ReadFile(filepath.Join(c.dir, "secrets/db/postgres.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &published))
	require.Equal(t, "app_green", published["username"])
	require.Equal(t, "2", published["version"])

	r = c.run("status", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var status []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &status))
	require.Len(t, status, 1)
	require.Equal(t, "db/postgres", status[0]["id"])
	require.Equal(t, "succeeded", status[0]["last_outcome"])
	require.EqualValues(t, 2, status[0]["current_version"])

	r = c.run("status")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "SECRET")
	require.Contains(t, r.stdout, "app_green")

	// A secret older than 1.1 × its interval is shown overdue.
	stateConn, err := pgx.Connect(context.Background(), c.envValue("DATABASE_URL"))
	require.NoError(t, err)
	_, err = stateConn.Exec(context.Background(), `UPDATE rotator_secrets SET last_success_at = now() - interval '100 days'`)
	require.NoError(t, err)
	stateConn.Close(context.Background())
	r = c.run("status")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "OVERDUE")
	r = c.run("status", "-o", "json")
	require.Contains(t, r.stdout, `"overdue": true`)

	r = c.run("history", "--secret", "db/postgres", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var runs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &runs))
	require.Len(t, runs, 2)
	require.Equal(t, "succeeded", runs[0]["status"])
	require.NotEmpty(t, runs[0]["steps"])

	r = c.run("history", "--secret", "db/postgres")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "SUCCEEDED")
	require.Contains(t, r.stdout, "publish")

	r = c.run("rollback", "--secret", "db/postgres")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "is current again")
	b, err = os.ReadFile(filepath.Join(c.dir, "secrets/db/postgres.json"))
	require.NoError(t, err)
	var after map[string]string
	require.NoError(t, json.Unmarshal(b, &after))
	require.Equal(t, "app_blue", after["username"])

	// Nothing the CLI printed holds a password it published.
	for _, pw := range []string{published["password"], after["password"], "cli-initial-password"} {
		require.NotContains(t, c.all.String(), pw)
	}
}

func TestCLIUsageAndBadPolicy(t *testing.T) {
	c := &cli{t: t, dir: t.TempDir(), env: append(os.Environ(), "ROTATOR_POLICIES=", "DATABASE_URL=", "ROTATOR_STATE_KEY=", "ROTATOR_STATE_KEY_FILE=")}
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(`version: 1
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: "postgres://admin:hunter2@db/app"
        role: app
        colour: blue
    publish:
      - store: nowhere
        path: x.json
`), 0o600))
	r := c.run("validate")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "policies.yaml:7:20")
	require.Contains(t, r.stderr, "inline")
	require.Contains(t, r.stderr, "policies.yaml:9:9")
	require.Contains(t, r.stderr, "colour")
	require.Contains(t, r.stderr, "nowhere")
	require.NotContains(t, r.stderr, "hunter2")

	r = c.run("run")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--secret")

	r = c.run("frobnicate")
	require.Equal(t, 2, r.code)

	for _, sub := range []string{"migrate", "keygen", "validate", "init", "run", "status", "history", "rollback"} {
		r = c.run(sub, "--help")
		require.Equal(t, 0, r.code, sub)
		require.Contains(t, r.stdout, "Examples:", sub)
	}

	// A dry run needs no database and no state key.
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(policyYAML), 0o600))
	r = c.run("run", "--secret", "db/postgres", "--dry-run")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "1. generate: create version 1")

	c.env = append(c.env, "DATABASE_URL=postgres://rotator:pw-never-shown@127.0.0.1:1/rotator?connect_timeout=2")
	r = c.run("history", "--secret", "db/postgres")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "127.0.0.1:1/rotator")
	require.Contains(t, r.stderr, "unreachable")
	require.NotContains(t, r.stderr, "pw-never-shown")
}

// TestValidateFilesStorePaths: a publish path the files store would refuse
// at publish (a name it keeps beside published files, or one that leaves
// its directory) is reported by validate, with file:line:column and the
// field, before anything runs.
func TestValidateFilesStorePaths(t *testing.T) {
	c := &cli{t: t, dir: t.TempDir(), env: append(os.Environ(), "ROTATOR_POLICIES=", "DATABASE_URL=", "ROTATOR_STATE_KEY=", "ROTATOR_STATE_KEY_FILE=")}
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(`version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: app/a
    class: api_key
    rotator: {token: {length: 32}}
    publish:
      - store: local
        path: app/a.prior
  - id: app/b
    class: api_key
    rotator: {token: {length: 32}}
    publish:
      - store: local
        path: app/b.json.previous
  - id: app/c
    class: api_key
    rotator: {token: {length: 32}}
    publish:
      - store: local
        path: app/c.json
`), 0o600))
	r := c.run("validate")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "policies.yaml:10:9")
	require.Contains(t, r.stderr, "secrets[0].publish[0].path")
	require.Contains(t, r.stderr, `"app/a.prior"`)
	require.Contains(t, r.stderr, "policies.yaml:16:9")
	require.Contains(t, r.stderr, "secrets[1].publish[0].path")
	require.NotContains(t, r.stderr, "app/c.json", "a good path is not reported")
}
