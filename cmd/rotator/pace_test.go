package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

// oldPoll is the fixed verify poll every rotation waited before issue 20,
// whatever its checks said: a run that waited for it shows a gap of at
// least this much between publish and the end of verify.
const oldPoll = 5 * time.Second

// verifyGaps reads, from the journal in the state database, how long
// after its publish each succeeded run's verify step passed (oldest
// first).
func verifyGaps(t *testing.T, stateDSN, id string) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, stateDSN)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT extract(epoch FROM v.finished_at - r.published_at)::float8
		FROM rotator_runs r JOIN rotator_steps v ON v.run_id = r.id AND v.step = 'verify' AND v.outcome = 'ok'
		WHERE r.secret_id = $1 AND r.status = 'succeeded' ORDER BY r.started_at`, id)
	require.NoError(t, err)
	var gaps []time.Duration
	for rows.Next() {
		var s float64
		require.NoError(t, rows.Scan(&s))
		gaps = append(gaps, time.Duration(s*float64(time.Second)))
	}
	require.NoError(t, rows.Err())
	return gaps
}

// With checks: [{delay: 1s}], `rotator run --secret` passes verify when
// the delay ends, not at a fixed poll: the journal shows verify ending no
// earlier than 1s after publish and well before the old 5s poll would
// have looked again.
func TestRunVerifiesAtThePaceOfItsChecks(t *testing.T) {
	c := newCLI(t)
	pol := strings.Replace(policyYAML, "    grace: 30s\n", "    checks:\n      - delay: 1s\n    grace: 30s\n", 1)
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(pol), 0o600))
	for _, args := range [][]string{{"migrate"}, {"init", "--secret", "db/postgres"}} {
		r := c.run(args...)
		require.Equal(t, 0, r.code, r.stderr)
	}
	for i := 0; i < 2; i++ {
		r := c.run("run", "--secret", "db/postgres")
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		require.Contains(t, r.stdout, "db/postgres: rotated")
	}
	gaps := verifyGaps(t, c.envValue("DATABASE_URL"), "db/postgres")
	require.Len(t, gaps, 2)
	for i, g := range gaps {
		t.Logf("rotation %d: verify passed %s after publish", i+1, g.Round(time.Millisecond))
		require.GreaterOrEqual(t, g, time.Second, "verify may not pass before the delay ends")
		require.Less(t, g, oldPoll, "verify looked again when the delay ended, not at the old fixed poll")
	}
}

// The daemon continues a waiting run at its wait_until, not at its next
// cron tick: with a tick once an hour and checks: [{delay: 1s}], the
// rotation its first tick starts completes, verify passing about 1s after
// publish.
func TestDaemonWakesAWaitingRunAtItsWaitUntil(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	pol := strings.Replace(tokenPolicy("tok/a"), "    publish: [{store: local, path: tok/a.json}]\n",
		"    publish: [{store: local, path: tok/a.json}]\n    checks: [{delay: 1s}]\n", 1)
	e := newEnv(t, stateDSN, pol)
	e.must("migrate")
	d, _ := e.startDaemon("daemon", nil, "--tick", "@every 1h", "--shutdown-timeout", "10s")
	eventually(t, 60*time.Second, "the rotation completes without a second cron tick", func() bool {
		return succeededRuns(t, stateDSN, "tok/a") == 1
	})
	gaps := verifyGaps(t, stateDSN, "tok/a")
	require.Len(t, gaps, 1)
	t.Logf("verify passed %s after publish", gaps[0].Round(time.Millisecond))
	require.GreaterOrEqual(t, gaps[0], time.Second)
	require.Less(t, gaps[0], oldPoll, "woken at the delay's end")
	d.signal(syscall.SIGTERM)
	require.Equal(t, 0, d.wait(20*time.Second), d.output())
}

// pgPolicy is n blue/green secrets on one Postgres server (one admin DSN),
// due at once, finishing in one pass.
func pgPolicy(roles []string) string {
	var b strings.Builder
	b.WriteString(`version: 1
defaults:
  grace: 30s
  monitor: 0s
  jitter: 0s
  retry: {attempts: 1}
stores:
  - name: local
    files:
      dir: secrets
secrets:
`)
	for _, r := range roles {
		fmt.Fprintf(&b, `  - id: db/%[1]s
    class: database
    rotator: {postgres: {admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}, role: %[1]s}}
    publish: [{store: local, path: db/%[1]s.json}]
`, r)
	}
	return b.String()
}

// overlappingRuns counts the pairs of succeeded runs that were in flight
// at the same time.
func overlappingRuns(t *testing.T, stateDSN string) int {
	return queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs a JOIN rotator_runs b ON a.id < b.id
		WHERE a.status = 'succeeded' AND b.status = 'succeeded'
		  AND a.started_at < b.finished_at AND b.started_at < a.finished_at`)
}

// `run --due` takes the daemon's --concurrency and --per-server: with the
// defaults (4, 1) the secrets of one Postgres server rotate one at a time;
// with --per-server 3 they overlap. The flags bound a tick, so --secret
// refuses them.
func TestRunDueTakesTheDaemonsConcurrency(t *testing.T) {
	t.Parallel()
	targetDSN := pgtest.NewDatabase(t)
	var roles []string
	for i := 0; i < 3; i++ {
		roles = append(roles, fmt.Sprintf("conc%d_%d", i, time.Now().UnixNano()%1_000_000))
	}
	for _, r := range roles {
		execSQL(t, targetDSN, `CREATE ROLE `+r+` LOGIN PASSWORD 'initial-`+r+`'`)
	}
	slow := []string{"ROTATOR_TEST_SLOW=200ms"} // each rotator and store call takes longer, so runs in flight meet
	for _, tc := range []struct {
		name    string
		args    []string
		overlap bool
	}{
		{"defaults: one at a time per server", nil, false},
		{"per-server 3", []string{"--concurrency", "8", "--per-server", "3"}, true},
	} {
		stateDSN := pgtest.NewDatabase(t)
		e := newEnv(t, stateDSN, pgPolicy(roles), "ROTATOR_PG_ADMIN_DSN="+targetDSN)
		e.must("migrate")
		for _, r := range roles {
			if tc.overlap { // the roles became pairs in the first case
				break
			}
			e.must("init", "--secret", "db/"+r)
		}
		res := e.run(slow, append([]string{"run", "--due", "--no-wait"}, tc.args...)...)
		require.Equal(t, 0, res.code, "%s:\n%s\n%s", tc.name, res.stdout, res.stderr)
		require.Contains(t, res.stdout, "tick: 3 due, 3 rotated", tc.name)
		n := overlappingRuns(t, stateDSN)
		t.Logf("%s: %d pairs of runs overlapped", tc.name, n)
		if tc.overlap {
			require.Positive(t, n, tc.name)
		} else {
			require.Zero(t, n, tc.name)
		}
	}
	e := newEnv(t, pgtest.NewDatabase(t), pgPolicy(roles), "ROTATOR_PG_ADMIN_DSN="+targetDSN)
	res := e.run(nil, "run", "--secret", "db/"+roles[0], "--concurrency", "2")
	require.Equal(t, 2, res.code, res.stderr)
	require.Contains(t, res.stderr, "use them with --due")
}
