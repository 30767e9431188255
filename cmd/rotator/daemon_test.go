package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

// tokenPolicy is a files store and one token secret per id, due at once
// (no jitter), finishing in one pass (no monitor window, one try per step).
func tokenPolicy(ids ...string) string {
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
	for _, id := range ids {
		fmt.Fprintf(&b, `  - id: %[1]s
    class: admin_token
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: %[1]s.json}]
`, id)
	}
	return b.String()
}

func succeededRuns(t *testing.T, dsn, id string) int {
	return queryInt(t, dsn, `SELECT count(*) FROM rotator_runs WHERE secret_id = $1 AND status = 'succeeded'`, id)
}

// metricLine finds the first sample of name whose labels contain every
// one of subs, e.g. `secret="tok/a"`.
func metricLine(body, name string, subs ...string) (string, bool) {
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return l, true
		}
	}
	return "", false
}

// TestDaemonHTTPReloadAndStop: the daemon serves /healthz, /readyz (503
// while its state database is down, 200 again when it is back) and
// /metrics; SIGHUP with a broken policies file keeps the old policies and
// says why, a good change is picked up; SIGTERM exits 0 promptly.
func TestDaemonHTTPReloadAndStop(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t) // its own: the test stops it
	stateDSN := cluster.DSN("postgres")
	e := newEnv(t, stateDSN, tokenPolicy("tok/a", "tok/b"))
	e.must("migrate")

	d, base := e.startDaemon("daemon", nil, "--tick", "@every 1s", "--shutdown-timeout", "10s")
	code, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code, body)
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)

	eventually(t, 20*time.Second, "tok/a and tok/b rotated by the daemon", func() bool {
		return succeededRuns(t, stateDSN, "tok/a") == 1 && succeededRuns(t, stateDSN, "tok/b") == 1
	})
	// The per-secret metrics are read from the state database after the
	// tick that ran the rotations ends.
	eventually(t, 20*time.Second, "tok/b's next due time on /metrics after its run", func() bool {
		code, body = get(t, base+"/metrics")
		l, ok := metricLine(body, "rotator_secret_next_due_timestamp_seconds", `secret="tok/b"`)
		var due float64
		if _, err := fmt.Sscanf(l[strings.LastIndex(l, " ")+1:], "%g", &due); !ok || err != nil {
			return false
		}
		return due > float64(time.Now().Add(24*time.Hour).Unix())
	})
	require.Equal(t, http.StatusOK, code)
	for _, m := range []struct {
		name string
		subs []string
	}{
		{"rotator_rotations_total", []string{`secret="tok/a"`, `outcome="succeeded"`}},
		{"rotator_secret_age_seconds", []string{`secret="tok/a"`, `class="admin_token"`}},
		{"rotator_secret_next_due_timestamp_seconds", []string{`secret="tok/b"`}},
		{"rotator_secrets_overdue", nil},
		{"rotator_secrets_quarantined", nil},
		{"rotator_last_tick_timestamp_seconds", nil},
	} {
		l, ok := metricLine(body, m.name, m.subs...)
		require.True(t, ok, "/metrics has no %s %v:\n%s", m.name, m.subs, body)
		t.Log(l)
	}
	l, _ := metricLine(body, "rotator_rotations_total", `secret="tok/a"`, `outcome="succeeded"`)
	require.True(t, strings.HasSuffix(l, " 1"), l)
	l, _ = metricLine(body, "rotator_secrets_quarantined")
	require.Equal(t, "rotator_secrets_quarantined 0", l)
	l, _ = metricLine(body, "rotator_secrets_overdue")
	require.Equal(t, "rotator_secrets_overdue 0", l)
	// Next due is 30 days out (admin_token, no jitter).
	l, _ = metricLine(body, "rotator_secret_next_due_timestamp_seconds", `secret="tok/b"`)
	var due float64
	_, err := fmt.Sscanf(l[strings.LastIndex(l, " ")+1:], "%g", &due)
	require.NoError(t, err, l)
	require.InDelta(t, float64(time.Now().Add(30*24*time.Hour).Unix()), due, 120)

	// A broken file is refused; the old policies stay in force.
	e.writePolicy(tokenPolicy("tok/a", "tok/b") + "  - id: tok/c\n    class: no_such_class\n")
	from := d.lineCount()
	d.signal(syscall.SIGHUP)
	line, _ := d.waitLine(from, 10*time.Second, "policies not reloaded; the old ones stay in force")
	require.Contains(t, line, `"reason":"SIGHUP"`)
	require.Contains(t, line, "no_such_class", "the log line says what is wrong")
	require.Contains(t, line, "policies.yaml:", "with the file position")
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)

	// A "billion laughs" file (a few KB of nested aliases standing for a
	// billion values) is refused too, within the loader's node budget:
	// the daemon keeps its old policies and says why (issue 15, item 1).
	var bomb strings.Builder
	bomb.WriteString("stores: [{name: local, files: {dir: out}}]\nsecrets:\n")
	bomb.WriteString("  - &s {id: a, class: api_key, rotator: {token: {}}, publish: [{store: local, path: a}],\n")
	bomb.WriteString("      checks: [&c {http: {urls: [&u \"http://client.example/v\"" + strings.Repeat(", *u", 999) + "]}}" +
		strings.Repeat(", *c", 999) + "]}\n")
	for range 999 {
		bomb.WriteString("  - *s\n")
	}
	e.writePolicy(bomb.String())
	from = d.lineCount()
	d.signal(syscall.SIGHUP)
	line, _ = d.waitLine(from, 30*time.Second, "policies not reloaded; the old ones stay in force")
	require.Contains(t, line, "aliases expand to more than", "the log line says why")
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, "the daemon is still up")

	// A good change is picked up: the new secret is rotated.
	e.writePolicy(tokenPolicy("tok/a", "tok/b", "tok/c"))
	from = d.lineCount()
	d.signal(syscall.SIGHUP)
	line, _ = d.waitLine(from, 10*time.Second, "policies reloaded")
	require.Contains(t, line, `"secrets":3`)
	eventually(t, 20*time.Second, "tok/c rotated after the reload", func() bool { return succeededRuns(t, stateDSN, "tok/c") == 1 })
	eventually(t, 5*time.Second, "tok/c in /metrics", func() bool {
		_, body := get(t, base+"/metrics")
		_, ok := metricLine(body, "rotator_secret_age_seconds", `secret="tok/c"`)
		return ok
	})

	// The state database goes away: not ready (still alive); it comes back:
	// ready again, without a restart.
	// (The test cluster runs with synchronous_commit off and is stopped in
	// immediate mode: a checkpoint first, so that it loses no commit.)
	execSQL(t, stateDSN, `CHECKPOINT`)
	require.NoError(t, cluster.StopServer())
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "state database unreachable")
	code, _ = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, cluster.StartServer())
	eventually(t, 20*time.Second, "/readyz 200 once the database is back", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK
	})

	start := time.Now()
	d.signal(syscall.SIGTERM)
	require.Equal(t, 0, d.wait(15*time.Second))
	t.Logf("SIGTERM to exit: %s", time.Since(start).Round(time.Millisecond))
	d.waitLine(0, time.Second, "daemon stopped")
	for _, id := range []string{"tok/a", "tok/b", "tok/c"} {
		require.Equal(t, 1, succeededRuns(t, stateDSN, id), id)
	}
}

// TestDaemonRestartResumes: a daemon SIGKILLed after it published a new
// version leaves the run unfinished; the next daemon resumes it once the
// lease expired (same run, no new credential), and later restarts never
// rotate the secret again.
func TestDaemonRestartResumes(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	e := newEnv(t, stateDSN, tokenPolicy("tok/r"))
	e.must("migrate")

	d, _ := e.startDaemon("daemon-1", []string{"ROTATOR_TEST_FAULT=pause:after:publish", "ROTATOR_TEST_FAULT_SECRET=tok/r"}, "--tick", "@every 1s")
	d.waitLine(0, 20*time.Second, "ROTATOR_TEST_FAULT")
	d.kill()
	require.Equal(t, 1, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'tok/r' AND status = 'running'`))
	pub := published(t, e.dir, "tok/r.json")
	require.Equal(t, "1", pub["version"], "the killed daemon had published version 1")

	d2, _ := e.startDaemon("daemon-2", nil, "--tick", "@every 1s")
	d2.waitLine(0, 20*time.Second, `"msg":"rotation succeeded"`, `"secret":"tok/r"`)
	d2.waitLine(0, time.Second, `"msg":"resuming run"`, `"secret":"tok/r"`)
	require.Equal(t, 1, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'tok/r'`))
	require.Equal(t, 1, succeededRuns(t, stateDSN, "tok/r"))
	require.Equal(t, 1, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_steps s JOIN rotator_runs r ON r.id = s.run_id
		WHERE r.secret_id = 'tok/r' AND s.step = 'generate'`), "resumed, not generated anew")
	after := published(t, e.dir, "tok/r.json")
	require.Equal(t, pub, after, "the version published before the crash is the one that stays")

	// Restart again: nothing is due, nothing is rotated.
	d2.signal(syscall.SIGTERM)
	require.Equal(t, 0, d2.wait(15*time.Second))
	d3, _ := e.startDaemon("daemon-3", nil, "--tick", "@every 1s")
	d3.waitLine(0, 10*time.Second, `"msg":"daemon started"`)
	time.Sleep(2500 * time.Millisecond) // the first tick and two more
	d3.signal(syscall.SIGTERM)
	require.Equal(t, 0, d3.wait(15*time.Second))
	require.Equal(t, 1, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'tok/r'`))
	require.NotContains(t, d3.output(), `"msg":"rotation started"`)
}

// TestRunDueExitCodesAndQuarantine: `run --due` exits 0 when everything due
// rotated and 3 when a secret failed; three failed runs in a row quarantine
// the secret (status shows it, nothing tries it), `resume` lifts it.
func TestRunDueExitCodesAndQuarantine(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	e := newEnv(t, stateDSN, tokenPolicy("tok/ok"))
	e.must("migrate")

	r := e.must("run", "--due")
	require.Contains(t, r.stdout, "tok/ok: rotated")
	require.Contains(t, r.stdout, "tick: 1 due, 1 rotated, 0 failed")
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due")

	// tok/bad publishes under secrets/blocked/, and secrets/blocked is a
	// file: every publish fails (even as root, unlike a read-only dir).
	e.writePolicy(tokenPolicy("tok/ok", "blocked/bad"))
	blocked := filepath.Join(e.dir, "secrets", "blocked")
	require.NoError(t, os.WriteFile(blocked, []byte("in the way\n"), 0o600))

	r = e.run(nil, "run", "--due")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "blocked/bad: FAILED")
	require.Contains(t, r.stdout, "1 failed")
	require.Equal(t, 1, succeededRuns(t, stateDSN, "tok/ok"), "the good secret is not rotated again")

	// The failed secret retries an hour later, not at the next tick.
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due")

	for i := 2; i <= 3; i++ {
		r = e.run(nil, "run", "--secret", "blocked/bad")
		require.Equal(t, 3, r.code, "failed run %d: %s%s", i, r.stdout, r.stderr)
	}
	r = e.must("status", "-o", "json")
	var rows []struct {
		ID                  string `json:"id"`
		Status              string `json:"status"`
		ConsecutiveFailures int    `json:"consecutive_failures"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows))
	st := map[string]string{}
	for _, row := range rows {
		st[row.ID] = row.Status
		if row.ID == "blocked/bad" {
			require.Equal(t, 3, row.ConsecutiveFailures)
		}
	}
	require.Equal(t, "quarantined", st["blocked/bad"])
	require.Equal(t, "active", st["tok/ok"])
	r = e.must("status")
	require.Regexp(t, regexp.MustCompile(`blocked/bad\s.*quarantined`), r.stdout)
	r = e.must("plan", "--secret", "blocked/bad")
	require.Contains(t, r.stdout, "QUARANTINED")

	// Even when its time comes, a quarantined secret is left alone.
	execSQL(t, stateDSN, `UPDATE rotator_secrets SET next_due_at = now() - interval '1 minute' WHERE id = 'blocked/bad'`)
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "tick: 0 due")
	require.Equal(t, 3, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'blocked/bad'`))

	// Fixed and resumed: due at once, rotated by the next tick.
	require.NoError(t, os.Remove(blocked))
	r = e.must("resume", "--secret", "blocked/bad")
	require.Contains(t, r.stdout, "quarantine lifted")
	r = e.must("run", "--due")
	require.Contains(t, r.stdout, "blocked/bad: rotated")
	require.Equal(t, 1, succeededRuns(t, stateDSN, "blocked/bad"))
	// Versions are never reused: the three failed runs recorded 1, 2 and 3.
	require.Equal(t, "4", published(t, e.dir, "blocked/bad.json")["version"])
	r = e.must("resume", "--secret", "blocked/bad")
	require.Contains(t, r.stdout, "was not quarantined")
}
