package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/schedule"
)

// dueCol reads a secret's stored next_due_at (zero when NULL).
func dueCol(t *testing.T, dsn, id string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var at *time.Time
	require.NoError(t, conn.QueryRow(ctx, `SELECT next_due_at FROM rotator_secrets WHERE id = $1`, id).Scan(&at))
	if at == nil {
		return time.Time{}
	}
	return *at
}

// attemptCol reads a secret's last_attempt_at.
func attemptCol(t *testing.T, dsn, id string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var at time.Time
	require.NoError(t, conn.QueryRow(ctx, `SELECT last_attempt_at FROM rotator_secrets WHERE id = $1`, id).Scan(&at))
	return at
}

// block makes every publish under secrets/<dir>/ fail: the directory is
// replaced by a file (even root cannot write into it).
func block(t *testing.T, e *env, dir string) {
	t.Helper()
	p := filepath.Join(e.dir, "secrets", dir)
	require.NoError(t, os.RemoveAll(p))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
	require.NoError(t, os.WriteFile(p, []byte("in the way\n"), 0o600))
}

// TestRetryNextRunHoldsInCronJobModeAndOnReload: a secret that rotated
// before (long enough ago to be due) and then failed is tried again
// retry.next_run after the failed attempt, not at the next `run --due`
// (whose schedule sync used to recompute its due time from the last
// success), and a daemon reload keeps that time too.
func TestRetryNextRunHoldsInCronJobModeAndOnReload(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	policy := strings.Replace(tokenPolicy("blocked/bad"), "retry: {attempts: 1}", "retry: {attempts: 1, next_run: 2h}", 1)
	e := newEnv(t, stateDSN, policy)
	e.must("migrate")
	r := e.must("run", "--due")
	require.Contains(t, r.stdout, "blocked/bad: rotated")

	// Its last success is 40 days old (interval 30d): due by its schedule.
	// (Time passes: every recorded instant moves back, the due time the
	// run recorded too; the policies are unchanged, so no sync recomputes
	// it.)
	execSQL(t, stateDSN, `UPDATE rotator_secrets SET last_success_at = now() - interval '40 days',
		next_due_at = next_due_at - interval '40 days' WHERE id = 'blocked/bad'`)
	block(t, e, "blocked")
	r = e.run(nil, "run", "--due")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "blocked/bad: FAILED")
	failedAt := attemptCol(t, stateDSN, "blocked/bad")
	want := failedAt.Add(2 * time.Hour)
	require.WithinDuration(t, want, dueCol(t, stateDSN, "blocked/bad"), 0, "the engine records the retry time")

	// The next CronJob tick leaves it alone and keeps the retry time.
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due", "a failed secret is not tried at the next tick")
	require.Equal(t, 2, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'blocked/bad'`))
	require.WithinDuration(t, want, dueCol(t, stateDSN, "blocked/bad"), 0)

	// A daemon start and a reload (both sync the schedule) keep it too.
	d, base := e.startDaemon("daemon", nil, "--tick", "@every 1s")
	from := d.lineCount()
	d.signal(syscall.SIGHUP)
	d.waitLine(from, 20*time.Second, `"policies reloaded"`)
	require.WithinDuration(t, want, dueCol(t, stateDSN, "blocked/bad"), 0, "a reload keeps the retry time")
	// A tick after the reload finishes (the metric moves) and starts nothing.
	reloaded := time.Now().Unix()
	eventually(t, 20*time.Second, "a tick after the reload", func() bool {
		_, body := get(t, base+"/metrics")
		l, ok := metricLine(body, "rotator_last_tick_timestamp_seconds")
		var ts float64
		if ok {
			_, _ = fmt.Sscanf(strings.Fields(l)[1], "%g", &ts)
		}
		return int64(ts) > reloaded
	})
	require.Equal(t, 2, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'blocked/bad'`))
	d.signal(syscall.SIGTERM)
	require.Equal(t, 0, d.wait(30*time.Second))

	// Its retry time come, the next tick tries it.
	execSQL(t, stateDSN, `UPDATE rotator_secrets SET last_attempt_at = last_attempt_at - interval '2 hours',
		next_due_at = next_due_at - interval '2 hours' WHERE id = 'blocked/bad'`)
	r = e.run(nil, "run", "--due")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "blocked/bad: FAILED")
}

// TestDryRunDueShowsWhatRunDueDoes: `run --due --dry-run` prints a plan
// only for what `run --due` would start now.
func TestDryRunDueShowsWhatRunDueDoes(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	e := newEnv(t, stateDSN, tokenPolicy("tok/a"))
	e.must("migrate")

	r := e.must("run", "--due", "--dry-run")
	require.Contains(t, r.stdout, "tok/a: would rotate")
	require.Contains(t, r.stdout, "1. generate")
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tok/a: rotated")

	r = e.must("run", "--due", "--dry-run")
	require.Contains(t, r.stdout, "tok/a: nothing: not due until")
	require.NotContains(t, r.stdout, "generate", "no plan for a secret that is not due")
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due")
}

// TestPlanKeepsANeverRotatedSecretsDueTime: once recorded, a never-rotated
// secret's due time is what plan shows, call after call, and what the
// state holds; plan no longer recomputes it from "now".
func TestPlanKeepsANeverRotatedSecretsDueTime(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	id := jitteredID(t, 6*time.Hour)
	e := newEnv(t, stateDSN, strings.Replace(tokenPolicy(id), "jitter: 0s", "jitter: 6h", 1))
	e.must("migrate")
	r := e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due")
	stored := dueCol(t, stateDSN, id)
	require.False(t, stored.IsZero())

	first := planDue(t, e)[id]
	time.Sleep(1100 * time.Millisecond) // "now" moves on between the two calls
	second := planDue(t, e)[id]
	require.NotNil(t, first)
	require.True(t, first.Equal(*second), "plan moved: %s then %s", first, second)
	require.True(t, first.Equal(stored), "plan %s, state %s", first, stored)
}

// jitteredID finds a token id whose jitter within span is at least a
// quarter of it, so a secret never rotated is not due at once.
func jitteredID(t *testing.T, span time.Duration) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("tok/j%d", i)
		if schedule.Jitter(id, span) > span/4 {
			return id
		}
	}
}

func planDue(t *testing.T, e *env) map[string]*time.Time {
	t.Helper()
	r := e.must("plan", "-o", "json")
	var rows []struct {
		Secret string     `json:"secret"`
		Due    *time.Time `json:"due"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows), r.stdout)
	out := map[string]*time.Time{}
	for _, row := range rows {
		out[row.Secret] = row.Due
	}
	return out
}

// TestPlanStatusAndDryRunAgree: for every kind of secret (never rotated
// with a 6h jitter, rotated a minute ago, failed with retry.next_run,
// quarantined, due but outside its window), plan -o json, status -o json,
// run --due --dry-run and the state's next_due_at say the same.
func TestPlanStatusAndDryRunAgree(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	never := jitteredID(t, 6*time.Hour)
	// A window that is closed now: two hours from now, for an hour (UTC).
	h := (time.Now().UTC().Hour() + 2) % 24
	hours := fmt.Sprintf("%02d:00-%02d:00", h, (h+1)%24)
	policy := tokenPolicy("tok/recent") + fmt.Sprintf(`  - id: %[1]s
    class: admin_token
    jitter: 6h
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: %[1]s.json}]
  - id: failed/a
    class: admin_token
    retry: {attempts: 1, next_run: 3h}
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: failed/a.json}]
  - id: quarantined/a
    class: admin_token
    retry: {attempts: 1, quarantine_after: 1}
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: quarantined/a.json}]
  - id: tok/window
    class: admin_token
    window: {hours: "%[2]s", time_zone: UTC}
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: tok/window.json}]
`, never, hours)
	e := newEnv(t, stateDSN, policy)
	e.must("migrate")
	// tok/window rotated 40 days ago (interval 30d): due, but its window is
	// closed now.
	execSQL(t, stateDSN, `INSERT INTO rotator_secrets (id, class, last_success_at, last_outcome, current_version)
		VALUES ('tok/window', 'admin_token', now() - interval '40 days', 'succeeded', 1)`)
	e.must("run", "--secret", "tok/recent")
	block(t, e, "failed")
	block(t, e, "quarantined")
	r := e.run(nil, "run", "--secret", "failed/a")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	r = e.run(nil, "run", "--secret", "quarantined/a")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)

	// What run --due --dry-run says it would do, run --due does.
	dry := e.must("run", "--due", "--dry-run")
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "0 rotated, 0 failed", r.stdout)
	require.NotContains(t, dry.stdout, "would rotate", dry.stdout)

	plan := planDue(t, e)
	st := e.must("status", "-o", "json")
	var rows []struct {
		ID        string     `json:"id"`
		Status    string     `json:"status"`
		Due       *time.Time `json:"due"`
		NextDueAt *time.Time `json:"next_due_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(st.stdout), &rows))
	require.Len(t, rows, 5)
	dryAfter := e.must("run", "--due", "--dry-run").stdout
	for _, row := range rows {
		t.Run(row.ID, func(t *testing.T) {
			line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(row.ID) + `: (.*)$`).FindStringSubmatch(dryAfter)
			require.NotNil(t, line, dryAfter)
			if row.ID == "quarantined/a" {
				require.Equal(t, "quarantined", row.Status)
				require.Nil(t, row.Due)
				require.Nil(t, plan[row.ID])
				require.Contains(t, line[1], "nothing: quarantined")
				return
			}
			require.NotNil(t, row.Due)
			require.NotNil(t, plan[row.ID])
			require.True(t, row.Due.Equal(*plan[row.ID]), "status %s, plan %s", row.Due, plan[row.ID])
			require.True(t, row.Due.Equal(dueCol(t, stateDSN, row.ID)), "status %s, state %s", row.Due, dueCol(t, stateDSN, row.ID))
			at := row.Due.UTC().Format(time.RFC3339)
			if row.ID == "tok/window" {
				require.True(t, row.Due.Before(time.Now()))
				require.Contains(t, line[1], "nothing: due since "+at+" but outside its window")
				return
			}
			require.Contains(t, line[1], "nothing: not due until "+at)
			switch row.ID {
			case "tok/recent":
				require.WithinDuration(t, time.Now().Add(30*24*time.Hour), *row.Due, 5*time.Minute)
			case "failed/a":
				require.True(t, row.Due.Equal(attemptCol(t, stateDSN, row.ID).Add(3*time.Hour)), "due %s", row.Due)
			case never:
				require.True(t, row.Due.After(time.Now().Add(time.Hour)), "due %s", row.Due)
			}
		})
	}
}

// TestRunDueSkipsOnlyUnchangedPolicies: a tick with nothing due and the
// policies last synced leaves every due time as it is (no schedule sync);
// any change of the file is loaded, validated and synced at the next
// tick, and a broken file is reported with its file:line:column.
func TestRunDueSkipsOnlyUnchangedPolicies(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	e := newEnv(t, stateDSN, tokenPolicy("tok/a"))
	e.must("migrate")
	r := e.must("run", "--due")
	require.Contains(t, r.stdout, "tok/a: rotated")
	rotated := dueCol(t, stateDSN, "tok/a")

	// A due time no sync would record: the unchanged tick keeps it.
	execSQL(t, stateDSN, `UPDATE rotator_secrets SET next_due_at = '2099-01-01Z' WHERE id = 'tok/a'`)
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due, 0 rotated")
	require.True(t, dueCol(t, stateDSN, "tok/a").Equal(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)), "the sync was skipped")

	// A changed file (a new secret) is synced: tok/b gets its row and
	// rotates, tok/a's due time is recomputed from its last success.
	e.writePolicy(tokenPolicy("tok/a", "tok/b"))
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tok/b: rotated")
	require.NotContains(t, r.stdout, "tok/a: rotated")
	require.WithinDuration(t, rotated, dueCol(t, stateDSN, "tok/a"), time.Second, "tok/a resynced")

	// A broken file is never skipped: it is an error with its position,
	// however unchanged the state database is.
	e.writePolicy(strings.Replace(tokenPolicy("tok/a", "tok/b"), "length: 32", "length: many", 1))
	r = e.run(nil, "run", "--due")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Regexp(t, `policies\.yaml:\d+:\d+: secrets\[0\]\.rotator\.token\.length`, r.stderr)

	// Back to the synced file: the tick is cheap again and rotates nothing.
	e.writePolicy(tokenPolicy("tok/a", "tok/b"))
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due, 0 rotated")
}
