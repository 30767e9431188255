package proof_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

// restorePolicy is crashPolicy with a verify delay that covers a client
// between reading the published file and logging in with it.
var restorePolicy = strings.Replace(crashPolicy, "    grace: 30s\n", "    checks:\n      - delay: 1s\n    grace: 30s\n", 1)

// restoreWorld is crashWorld whose state database can be backed up and
// restored the way an operator does it: the database is replaced whole by
// a copy taken earlier (CREATE DATABASE ... TEMPLATE, which is what a
// pg_dump/pg_restore round trip gives back, without the tools).
type restoreWorld struct {
	*crashWorld
	admin   string // superuser DSN of the state database's cluster
	stateDB string // its name
	snaps   int
}

func newRestoreWorld(t *testing.T) *restoreWorld {
	w := &restoreWorld{crashWorld: newCrashWorld(t, false), admin: pgtest.AdminDSN(t)}
	w.stateDB = dbName(w.stateDSN)
	return w
}

func (w *restoreWorld) adminExec(sql string) {
	w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.admin)
	require.NoError(w.t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	require.NoError(w.t, err, sql)
}

// backup copies the state database and returns the copy's name.
func (w *restoreWorld) backup() string {
	w.t.Helper()
	w.snaps++
	name := fmt.Sprintf("%s_snap%d", w.stateDB, w.snaps)
	w.adminExec(`CREATE DATABASE ` + pgx.Identifier{name}.Sanitize() + ` TEMPLATE ` + pgx.Identifier{w.stateDB}.Sanitize())
	w.t.Cleanup(func() {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, w.admin); err == nil {
			_, _ = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
			_ = conn.Close(ctx)
		}
	})
	return name
}

// restore replaces the state database by the backup, then follows the
// runbook: `rotator migrate`.
func (w *restoreWorld) restore(snap string) {
	w.t.Helper()
	w.adminExec(`DROP DATABASE ` + pgx.Identifier{w.stateDB}.Sanitize() + ` WITH (FORCE)`)
	w.adminExec(`CREATE DATABASE ` + pgx.Identifier{w.stateDB}.Sanitize() + ` TEMPLATE ` + pgx.Identifier{snap}.Sanitize())
	out, code := w.cli(nil, "migrate")
	require.Equal(w.t, 0, code, out)
}

// publishedVersion is the version number the files store publishes.
func (w *restoreWorld) publishedVersion() int64 {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, "secrets", "db/postgres.json"))
	require.NoError(w.t, err)
	var d map[string]string
	require.NoError(w.t, json.Unmarshal(b, &d))
	n, err := strconv.ParseInt(d["version"], 10, 64)
	require.NoError(w.t, err)
	return n
}

// clients log in every 50ms with what the files store publishes, read
// afresh before each login, until stop is called; they return the number
// of logins and the failures.
func (w *restoreWorld) clients(n int) (stop func() (int64, []string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var logins atomic.Int64
	var mu sync.Mutex
	var failures []string
	path := filepath.Join(w.dir, "secrets", "db/postgres.json")
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				user, pw := w.tg.role, w.tg.initial
				if b, err := os.ReadFile(path); err == nil {
					var d map[string]string
					if json.Unmarshal(b, &d) == nil {
						user, pw = d["username"], d["password"]
					}
				}
				err := w.tg.login(user, pw)
				logins.Add(1)
				if err != nil {
					mu.Lock()
					failures = append(failures, time.Now().Format("15:04:05.000")+" "+user+": "+err.Error())
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	return func() (int64, []string) {
		cancel()
		wg.Wait()
		return logins.Load(), failures
	}
}

// TestRestoreStateDatabase is the runbook's "restoring the state database"
// under live clients: backups taken 1, 2 and 3 rotations back and one taken
// while a run waited in verify are restored, and the next `rotator run`
// must leave every client able to log in: rotator adopts what the stores
// consistently publish (and says so in history) instead of trusting the
// restored journal, and never reuses a version number.
func TestRestoreStateDatabase(t *testing.T) {
	t.Parallel()
	w := newRestoreWorld(t)
	require.NoError(t, os.WriteFile(filepath.Join(w.dir, "policies.yaml"),
		[]byte(fmt.Sprintf(restorePolicy, w.motoURL, w.tg.role)), 0o600))

	stop := w.clients(4)
	defer func() { stop() }()

	seen := map[int64]bool{}
	rotate := func(what string) {
		t.Helper()
		out, code := w.cli(nil, "run", "--secret", "db/postgres")
		require.Equal(t, 0, code, "%s:\n%s", what, out)
		v := w.publishedVersion()
		require.False(t, seen[v], "%s: version %d was published before: versions are never reused\n%s", what, v, out)
		seen[v] = true
		w.checkSettled(what)
	}

	// snaps[i] is a backup taken after the i-th rotation.
	snaps := []string{w.backup()}
	for i := 1; i <= 3; i++ {
		rotate(fmt.Sprintf("rotation %d", i))
		snaps = append(snaps, w.backup())
	}
	for back := 1; back <= 3; back++ {
		what := fmt.Sprintf("restore of a backup %d rotation(s) back", back)
		w.restore(snaps[len(snaps)-1-back])
		rotate(what)
		hist, code := w.cli(nil, "history", "--secret", "db/postgres")
		require.Equal(t, 0, code, hist)
		require.Contains(t, hist, "adopted", "%s: history says what was adopted from the stores", what)
		snaps = append(snaps, w.backup())
	}

	// A backup taken while a run waits in verify; that run then finishes
	// and another rotation follows before the backup is restored.
	out, code := w.cli(nil, "run", "--secret", "db/postgres", "--no-wait")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "waiting", out)
	midVerify := w.backup()
	out, code = w.cli(nil, "run", "--secret", "db/postgres")
	require.Equal(t, 0, code, out)
	seen[w.publishedVersion()] = true
	rotate("rotation after the mid-verify backup")
	w.restore(midVerify)
	rotate("restore of a backup taken mid-verify")
	hist, code := w.cli(nil, "history", "--secret", "db/postgres")
	require.Equal(t, 0, code, hist)
	require.Contains(t, hist, "superseded", "the stale run from the backup is ended without touching the target")

	logins, failures := stop()
	stop = func() (int64, []string) { return 0, nil }
	t.Logf("restores: %d client logins, %d failed", logins, len(failures))
	require.Empty(t, failures, "no client may fail a login with the published credential")
	require.Greater(t, logins, int64(100), "the clients kept logging in")
}
