package main_test

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

const (
	replicaTokens   = 195
	replicaPostgres = 5
)

func tokenID(i int) string { return fmt.Sprintf("tok/t%03d", i) }
func pgID(i int) string    { return fmt.Sprintf("db/pg%d", i) }

// replicaPolicy: 195 self-issued tokens and 5 Postgres blue/green secrets on
// one server (the same admin DSN reference, so one server key), all
// published to a files store. No jitter: never-rotated secrets are due now.
func replicaPolicy() string {
	var b strings.Builder
	b.WriteString(`version: 1
defaults:
  grace: 30s
  monitor: 0s
  jitter: 0s
  retry: {attempts: 3, initial: 1s, max: 2s}
stores:
  - name: local
    files:
      dir: secrets
secrets:
`)
	for i := range replicaTokens {
		fmt.Fprintf(&b, `  - id: %[1]s
    class: admin_token
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: %[1]s.json}]
`, tokenID(i))
	}
	for i := 1; i <= replicaPostgres; i++ {
		fmt.Fprintf(&b, `  - id: %[1]s
    class: database
    rotator: {postgres: {admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}, role: app%[2]d}}
    publish: [{store: local, path: %[1]s.json}]
`, pgID(i), i)
	}
	return b.String()
}

// TestReplicas is the proof of issue #4: three daemons, a loop of
// `run --due` processes and manual `run --secret` runs work on 200 due
// secrets at once; one daemon is SIGKILLed in the middle of a run (after
// publish) and another process finishes that run once its 2s lease has
// expired. Every secret ends rotated exactly once: one succeeded run, store
// version 1, nothing lost, nothing failed, no run left unfinished.
func TestReplicas(t *testing.T) {
	t.Parallel()
	stateDSN := pgtest.NewDatabase(t)
	appDSN := pgtest.NewDatabase(t)
	e := newEnv(t, stateDSN, replicaPolicy(), "ROTATOR_PG_ADMIN_DSN="+appDSN)

	// The Postgres secrets' roles, turned into blue/green pairs.
	for i := 1; i <= replicaPostgres; i++ {
		execSQL(t, appDSN, fmt.Sprintf(`CREATE ROLE app%d LOGIN PASSWORD 'initial-%d'`, i, i))
	}
	e.must("migrate")
	for i := 1; i <= replicaPostgres; i++ {
		e.must("init", "--secret", pgID(i))
	}

	// Every secret is due, in a known order: the one the first daemon will
	// pause on first, the Postgres secrets among the first ten (so several
	// processes reach them at once), the manual targets last.
	const victim = "tok/t000"
	order := []string{victim}
	for i := 1; i < replicaTokens; i++ {
		order = append(order, tokenID(i))
		if i <= 2*replicaPostgres && i%2 == 0 {
			order = append(order, pgID(i/2))
		}
	}
	require.Len(t, order, replicaTokens+replicaPostgres)
	manual := order[len(order)-8:]
	ids, classes := make([]string, len(order)), make([]string, len(order))
	for i, id := range order {
		ids[i], classes[i] = id, "admin_token"
		if strings.HasPrefix(id, "db/") {
			classes[i] = "database"
		}
	}
	execSQL(t, stateDSN, `INSERT INTO rotator_secrets (id, class, next_due_at)
		SELECT id, class, now() - interval '1 hour' + n * interval '1 second'
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(id, class, n)`, ids, classes)

	slow := "ROTATOR_TEST_SLOW=10ms" // spreads the runs out so the processes overlap
	daemonArgs := []string{"--tick", "@every 1s", "--concurrency", "4", "--shutdown-timeout", "20s"}

	// Daemon K pauses right after it published the victim's new version.
	k, _ := e.startDaemon("daemon-K", []string{slow, "ROTATOR_TEST_FAULT=pause:after:publish", "ROTATOR_TEST_FAULT_SECRET=" + victim}, daemonArgs...)
	faultLine, _ := k.waitLine(0, 30*time.Second, "ROTATOR_TEST_FAULT")
	t.Logf("daemon K (%s): %s", k.holder(), faultLine)

	d1, _ := e.startDaemon("daemon-1", []string{slow}, daemonArgs...)
	d2, _ := e.startDaemon("daemon-2", []string{slow}, daemonArgs...)

	ctx, stopLoops := context.WithCancel(context.Background())
	defer stopLoops()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var dueCodes []int
	var dueOut []string
	wg.Add(1)
	go func() { // a CronJob firing back to back
		defer wg.Done()
		for ctx.Err() == nil {
			r := e.run([]string{slow}, "run", "--due", "--no-wait")
			mu.Lock()
			dueCodes = append(dueCodes, r.code)
			if r.code != 0 {
				dueOut = append(dueOut, r.stdout+r.stderr)
			}
			mu.Unlock()
		}
	}()

	// The victim's lease is K's while K lives (K keeps renewing it): a
	// person's `run --secret` is told it is busy.
	r := e.run(nil, "run", "--secret", victim)
	require.Equal(t, 5, r.code, "manual run on the secret K holds: %s%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "busy")

	k.kill()
	killedAt := time.Now()

	// People rotating by hand while the daemons work: busy (5) or rotated (0).
	manualCodes := map[string][]int{}
	var manualMu sync.Mutex
	for _, id := range append([]string{victim}, manual...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.run([]string{slow}, "run", "--secret", id)
			manualMu.Lock()
			manualCodes[id] = append(manualCodes[id], r.code)
			manualMu.Unlock()
			if r.code != 0 && r.code != 5 {
				t.Errorf("manual run --secret %s: exit %d, want 0 or 5:\n%s%s", id, r.code, r.stdout, r.stderr)
			}
		}()
	}

	eventually(t, 60*time.Second, "every secret to have a succeeded run and none unfinished", func() bool {
		return queryInt(t, stateDSN, `SELECT count(DISTINCT secret_id) FROM rotator_runs WHERE status = 'succeeded'`) == len(order) &&
			queryInt(t, stateDSN, `SELECT count(*) FROM rotator_runs WHERE status IN ('running','waiting')`) == 0
	})
	stopLoops()
	wg.Wait()
	d1.signal(syscall.SIGTERM)
	d2.signal(syscall.SIGTERM)
	require.Equal(t, 0, d1.wait(30*time.Second))
	require.Equal(t, 0, d2.wait(30*time.Second))
	t.Logf("all rotated %s after K was killed; %d `run --due` processes ran; manual exit codes %v",
		time.Since(killedAt).Round(time.Millisecond), len(dueCodes), manualCodes)
	for i, c := range dueCodes {
		require.Equal(t, 0, c, "run --due #%d: %v", i, dueOut)
	}

	// The verdict, from the state database and the store.
	conn, err := pgx.Connect(context.Background(), stateDSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	type run struct {
		id, secret, trigger, status, holder, starter string
		started, finished                            time.Time
		version                                      int64
	}
	rows, err := conn.Query(context.Background(), `SELECT r.id, r.secret_id, r.trigger, r.status, coalesce(r.holder,''),
		coalesce((SELECT actor FROM rotator_audit a WHERE a.run_id = r.id AND a.action = 'run_started'), ''),
		r.started_at, coalesce(r.finished_at, now()), r.version FROM rotator_runs r ORDER BY r.started_at`)
	require.NoError(t, err)
	bySecret := map[string][]run{}
	for rows.Next() {
		var x run
		require.NoError(t, rows.Scan(&x.id, &x.secret, &x.trigger, &x.status, &x.holder, &x.starter, &x.started, &x.finished, &x.version))
		bySecret[x.secret] = append(bySecret[x.secret], x)
	}
	require.NoError(t, rows.Err())
	rows.Close()

	isManual := map[string]bool{}
	for _, id := range manual {
		isManual[id] = true
	}
	extraManual := 0
	for _, id := range order {
		runs := bySecret[id]
		require.NotEmpty(t, runs, "%s was never rotated", id)
		for _, x := range runs {
			require.Equal(t, "succeeded", x.status, "%s: run %s", id, x.id)
		}
		var version int64
		require.NoError(t, conn.QueryRow(context.Background(), `SELECT current_version FROM rotator_secrets WHERE id = $1`, id).Scan(&version))
		pub := published(t, e.dir, id+".json")
		require.Equal(t, fmt.Sprint(version), pub["version"], "%s: the store and the state database disagree", id)
		require.EqualValues(t, len(runs), version, "%s: every succeeded run is one version", id)
		if !isManual[id] {
			require.Len(t, runs, 1, "%s was rotated more than once: %+v", id, runs)
			require.EqualValues(t, 1, version)
			continue
		}
		// A manual target may be rotated again by a person who asked after
		// the scheduler had rotated it: that is a second, requested
		// rotation, never a second scheduled one, and never overlapping.
		sched := 0
		for i, x := range runs {
			if x.trigger == "schedule" {
				sched++
				require.Zero(t, i, "%s: a scheduled run started after the secret had been rotated (not due any more): %+v", id, runs)
			}
			if i > 0 {
				require.False(t, x.started.Before(runs[i-1].finished), "%s: runs overlap: %+v", id, runs)
			}
		}
		require.LessOrEqual(t, sched, 1, id)
		extraManual += len(runs) - 1
	}
	t.Logf("manual targets rotated again on request after the scheduler: %d", extraManual)

	// The victim: one run, started by K, finished by another process after
	// K's lease expired, resumed from its journal (not generated anew).
	vr := bySecret[victim]
	require.Len(t, vr, 1)
	require.Equal(t, k.holder(), procOf(vr[0].starter), "K started the victim's run")
	require.NotEqual(t, k.holder(), procOf(vr[0].holder), "another process finished it")
	require.Greater(t, vr[0].finished.Sub(killedAt), time.Duration(0))
	require.Equal(t, 1, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_steps WHERE run_id = $1 AND step = 'generate'`, vr[0].id),
		"the resumed run did not generate a second credential")
	// K had published before it died (its publish step is journaled ok);
	// the process that resumed the run re-published the same version
	// (idempotent per run id) and recorded it once.
	require.GreaterOrEqual(t, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_steps WHERE run_id = $1 AND step = 'publish'
		AND outcome = 'ok' AND finished_at < $2`, vr[0].id, killedAt), 1)
	require.Equal(t, 1, queryInt(t, stateDSN, `SELECT count(*) FROM rotator_audit WHERE run_id = $1 AND action = 'published'`, vr[0].id))

	// No run made a second credential: one generate step per run (a run
	// taken over from a live process at generate would show two). Runs K
	// started may have been cut off inside generate by the SIGKILL; their
	// resumption generating again is what the journal is for.
	require.Zero(t, queryInt(t, stateDSN, `SELECT count(*) FROM (SELECT s.run_id FROM rotator_steps s
		JOIN rotator_audit a ON a.run_id = s.run_id AND a.action = 'run_started'
		WHERE s.step = 'generate' AND a.actor NOT LIKE $1 || ':%'
		GROUP BY s.run_id HAVING count(*) > 1) x`, k.holder()), "runs that generated twice")

	// Per-server limit: within one process, the Postgres secrets (one
	// server) never rotate at the same time. Runs started and finished by
	// the same process are compared.
	holders := map[string][]run{}
	for i := 1; i <= replicaPostgres; i++ {
		for _, x := range bySecret[pgID(i)] {
			if p := procOf(x.holder); p == procOf(x.starter) {
				holders[p] = append(holders[p], x)
			}
		}
	}
	overlapAcross := false
	var all []run
	for h, rs := range holders {
		sort.Slice(rs, func(i, j int) bool { return rs[i].started.Before(rs[j].started) })
		for i := 1; i < len(rs); i++ {
			require.False(t, rs[i].started.Before(rs[i-1].finished), "%s ran two rotations on one Postgres server at once: %+v", h, rs)
		}
		all = append(all, rs...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].started.Before(all[j].started) })
	for i := 1; i < len(all); i++ {
		overlapAcross = overlapAcross || all[i].started.Before(all[i-1].finished)
	}
	t.Logf("Postgres runs by %d processes; overlapping across processes: %v", len(holders), overlapAcross)

	// The published Postgres credentials work.
	for i := 1; i <= replicaPostgres; i++ {
		pub := published(t, e.dir, pgID(i)+".json")
		c, err := pgx.Connect(context.Background(), pgtest.UserDSN(appDSN, pub["username"], pub["password"]))
		require.NoError(t, err, "log in with what the store holds for %s", pgID(i))
		_ = c.Close(context.Background())
	}

	// No run lost its lease to a live process, and no process logged a
	// duplicate rotation.
	for _, p := range []*proc{d1, d2} {
		out := p.output()
		require.NotContains(t, out, "lease lost", p.name)
		require.NotRegexp(t, regexp.MustCompile(`"level":"ERROR"`), out, p.name)
	}
}

// procOf is the process part (host:pid) of a lease holder
// (host:pid:nonce/run).
func procOf(holder string) string {
	if i := strings.Index(holder, ":"); i >= 0 {
		if j := strings.Index(holder[i+1:], ":"); j >= 0 {
			return holder[:i+1+j]
		}
	}
	return holder
}
