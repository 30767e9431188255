package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/syncbuf"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is one test's world: a target database with a group role "app" that
// has LOGIN and an initial password (as an application would have before
// rotator), a state database, a files store and an engine whose logs are
// captured.
type env struct {
	t *testing.T
	// role is this test's group role: roles are cluster-wide, and the
	// tests of this package run in parallel on one cluster.
	role     string
	ctx      context.Context
	appDSN   string // superuser DSN of the target database
	stateDSN string
	db       *state.DB
	key      *seal.Key
	logs     *syncBuffer
	engine   *rotation.Engine
	store    *files.Store
	rotator  *postgres.Rotator
	target   rotation.Target
	// seen collects every password the test saw, to search outputs for
	// (saw appends under seenMu: clients of the matrix add to it from
	// their own goroutines).
	seen   []string
	seenMu sync.Mutex
}

// saw adds secrets to seen.
func (e *env) saw(secrets ...string) {
	e.seenMu.Lock()
	e.seen = append(e.seen, secrets...)
	e.seenMu.Unlock()
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

const initialPassword = "initial-app-password-1234"

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, ctx: ctx, logs: &syncBuffer{}, role: fmt.Sprintf("app%d", roleSeq.Add(1))}
	e.appDSN = pgtest.NewDatabase(t)
	e.stateDSN = pgtest.NewDatabase(t)
	e.exec(`CREATE ROLE ` + e.role + ` LOGIN PASSWORD '` + initialPassword + `'`)
	e.exec(`CREATE TABLE orders (id int PRIMARY KEY)`)
	e.exec(`ALTER TABLE orders OWNER TO ` + e.role)
	e.seen = append(e.seen, initialPassword)

	var err error
	e.db, err = state.Open(ctx, e.stateDSN)
	require.NoError(t, err)
	t.Cleanup(e.db.Close)
	_, err = e.db.Migrate(ctx)
	require.NoError(t, err)
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	e.key, err = seal.Parse(keyText)
	require.NoError(t, err)

	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	spec := &policy.PostgresSpec{Role: e.role, Mode: "blue_green", Connection: map[string]string{"database": "app"}}
	e.rotator, err = postgres.New(spec, secret.New(e.appDSN), postgres.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(e.rotator.Close)
	_, err = e.rotator.Init(ctx)
	require.NoError(t, err)

	e.store, err = files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)

	e.engine = &rotation.Engine{DB: e.db, Key: e.key, Logger: logger, Holder: "test-" + t.Name(), LeaseTTL: 10 * time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error { return nil }}
	e.target = rotation.Target{
		ID: "db/postgres", Class: "database", Rotator: e.rotator,
		Publish: []rotation.Publication{{StoreName: "local", Path: "db/postgres.json", Store: e.store}},
		Grace:   time.Minute, OnTimeout: "hold", Monitor: 0,
		Retry: rotation.Retry{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond},
		Poll:  10 * time.Millisecond,
	}
	return e
}

// roleSeq numbers the tests' roles (pid-free: each test binary has its own cluster).
var roleSeq atomic.Int64

func (e *env) blue() string  { return e.role + "_blue" }
func (e *env) green() string { return e.role + "_green" }

func (e *env) exec(sql string) {
	e.t.Helper()
	conn, err := pgx.Connect(e.ctx, e.appDSN)
	require.NoError(e.t, err)
	defer conn.Close(e.ctx)
	_, err = conn.Exec(e.ctx, sql)
	require.NoError(e.t, err, sql)
}

// login connects as user/password to the target database.
func (e *env) login(user, password string) error {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(e.appDSN, user, password))
	if err != nil {
		return err
	}
	var n, pid int
	err = conn.QueryRow(ctx, `SELECT count(*), pg_backend_pid() FROM orders`).Scan(&n, &pid)
	_ = conn.Close(ctx)
	if err != nil {
		return err
	}
	// A client that has left: its session is gone from pg_stat_activity
	// before the test goes on (the server ends it a moment after the
	// close; meanwhile the next run would see a standby in use).
	admin, err := pgx.Connect(ctx, e.appDSN)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	for {
		var left bool
		if err := admin.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&left); err != nil {
			return err
		}
		if left {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the session of %s did not end: %w", user, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// published reads what the files store holds as current.
func (e *env) published() rotation.Version {
	e.t.Helper()
	v, err := e.store.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json", Which: rotation.Current})
	require.NoError(e.t, err)
	e.seen = append(e.seen, v.Credential.Secret.Reveal())
	return v
}

// publishedWorks says whether what the store holds as current logs in; with
// nothing published yet, the application still uses app's initial password.
func (e *env) publishedWorks() error {
	v, err := e.store.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json", Which: rotation.Current})
	if errors.Is(err, rotation.ErrNotFound) {
		return e.login(e.role, initialPassword)
	}
	if err != nil {
		return err
	}
	e.seen = append(e.seen, v.Credential.Secret.Reveal())
	return e.login(v.Credential.Username, v.Credential.Secret.Reveal())
}

// expireLease ends the secret's lease as its expiry would: what a crashed
// process leaves behind runs out, and another process may take it.
func (e *env) expireLease() {
	e.t.Helper()
	_, err := e.db.Pool().Exec(e.ctx, `UPDATE rotator_leases SET expires_at = now() - interval '1 second'`)
	require.NoError(e.t, err)
}

func (e *env) run(opts rotation.Options) rotation.Result {
	e.t.Helper()
	res, err := e.engine.Run(e.ctx, e.target, opts)
	require.NoError(e.t, err)
	return res
}

// noPlaintext searches logs, the given strings and a dump of the state
// database for every password the test saw.
func (e *env) noPlaintext(extra ...string) {
	e.t.Helper()
	dump, err := exec.Command("pg_dump", "--data-only", e.stateDSN).CombinedOutput()
	require.NoError(e.t, err, string(dump))
	require.Contains(e.t, string(dump), "db/postgres", "the dump should hold the state")
	outputs := map[string]string{"logs": e.logs.String(), "state dump": string(dump)}
	for i, x := range extra {
		outputs[fmt.Sprintf("output %d", i)] = x
	}
	e.seenMu.Lock()
	seen := append([]string(nil), e.seen...)
	e.seenMu.Unlock()
	for _, pw := range seen {
		for name, out := range outputs {
			require.NotContains(e.t, out, pw, "a generated password leaked into %s", name)
		}
	}
}

func TestFullRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.Equal(t, int64(1), res.Version)

	v1 := e.published()
	require.Equal(t, e.blue(), v1.Credential.Username)
	require.Equal(t, int64(1), v1.Number)
	require.Equal(t, res.RunID, v1.RunID)
	require.Equal(t, "app", v1.Credential.Extra["database"])
	require.NoError(t, e.login(e.blue(), v1.Credential.Secret.Reveal()), "the new password logs in")
	require.Error(t, e.login(e.role, initialPassword), "the old credential is retired")

	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status)
	v2 := e.published()
	require.Equal(t, e.green(), v2.Credential.Username)
	require.NoError(t, e.login(e.green(), v2.Credential.Secret.Reveal()))
	require.Error(t, e.login(e.blue(), v1.Credential.Secret.Reveal()), "app_blue is NOLOGIN")
	prev, err := e.store.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json", Which: rotation.Previous})
	require.NoError(t, err)
	require.True(t, prev.Credential.Secret.Equal(v1.Credential.Secret), "the store keeps the previous version")

	sec, err := e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, err)
	require.Equal(t, int64(2), sec.CurrentVersion)
	require.Equal(t, e.green(), sec.Current.Username)
	require.Equal(t, e.blue(), sec.Previous.Username)
	require.NotNil(t, sec.LastSuccessAt)

	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	var steps []string
	for _, s := range runs[0].Steps {
		require.NotNil(t, s.FinishedAt, "every journaled step has an outcome")
		steps = append(steps, string(s.Step)+":"+string(s.Outcome))
	}
	require.Equal(t, []string{"generate:ok", "stage:ok", "publish:ok", "verify:ok", "retire:ok", "monitor:ok"}, steps)
	e.noPlaintext()
}

// A crash (the process dies) before or after any step: the next run resumes
// and completes, and at every point the published credential logs in.
func TestCrashAtEveryStepThenResume(t *testing.T) {
	t.Parallel()
	type point struct {
		when string
		step state.Step
	}
	var points []point
	for _, s := range []state.Step{state.StepGenerate, state.StepStage, state.StepPublish, state.StepRetire, state.StepMonitor} {
		points = append(points, point{"before", s}, point{"after", s})
	}
	for _, p := range points {
		t.Run(p.when+" "+string(p.step), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			// A first rotation, so that the crash happens between two real versions.
			require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
			require.NoError(t, e.publishedWorks())

			crashed := false
			hook := func(runID string, step state.Step) error {
				if step == p.step && !crashed {
					crashed = true
					// At the moment of the crash, the published credential works.
					require.NoError(t, e.publishedWorks(), "published credential at crash %s %s", p.when, p.step)
					return rotation.ErrCrash
				}
				return nil
			}
			if p.when == "before" {
				e.engine.Hooks.Before = hook
			} else {
				e.engine.Hooks.After = hook
			}
			_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
			require.ErrorIs(t, err, rotation.ErrCrash)
			require.True(t, crashed)
			require.NoError(t, e.publishedWorks(), "after the crash")

			// A new process (another holder) resumes once the crashed
			// one's lease has run out.
			e.expireLease()
			e.engine.Hooks = rotation.Hooks{}
			res := e.run(rotation.Options{Wait: true})
			require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
			require.True(t, res.Resumed)
			require.Equal(t, int64(2), res.Version)
			v := e.published()
			require.Equal(t, int64(2), v.Number)
			require.NoError(t, e.login(v.Credential.Username, v.Credential.Secret.Reveal()))
			require.Equal(t, e.green(), v.Credential.Username)
			require.Error(t, e.login(e.blue(), "anything"))
			e.noPlaintext()
		})
	}
}

// Clients still connected on the old role hold the run in verify until they
// leave; with on_timeout hold, the run is held past the grace and both
// credentials stay valid.
func TestVerifyWaitsForClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()

	// An application still connected as app_blue.
	conn, err := pgx.Connect(e.ctx, pgtest.UserDSN(e.appDSN, e.blue(), v1.Credential.Secret.Reveal()))
	require.NoError(t, err)

	now := time.Now()
	clock := &fakeClock{t: now}
	e.engine.Now = clock.Now
	e.target.Grace = time.Hour

	res := e.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status)
	require.Equal(t, state.StepVerify, res.Step)
	require.Contains(t, res.Detail, e.blue())
	v2 := e.published()
	require.NoError(t, e.login(e.blue(), v1.Credential.Secret.Reveal()), "the old credential stays valid while clients use it")
	require.NoError(t, e.login(e.green(), v2.Credential.Secret.Reveal()))

	// Still there on the next tick.
	clock.Add(time.Minute)
	res = e.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status)
	require.True(t, res.Resumed)

	// The client leaves: the run retires app_blue and completes.
	require.NoError(t, conn.Close(e.ctx))
	require.Eventually(t, func() bool {
		clock.Add(time.Second)
		res = e.run(rotation.Options{})
		return res.Status == state.RunSucceeded
	}, 10*time.Second, 50*time.Millisecond)
	require.Error(t, e.login(e.blue(), v1.Credential.Secret.Reveal()))

	// Hold: a client that never leaves, and the grace ends.
	conn, err = pgx.Connect(e.ctx, pgtest.UserDSN(e.appDSN, e.green(), v2.Credential.Secret.Reveal()))
	require.NoError(t, err)
	defer conn.Close(e.ctx)
	var events []notify.Event
	var mu sync.Mutex
	e.engine.Events = func(ev notify.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }
	res = e.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status)
	clock.Add(2 * time.Hour)
	res = e.run(rotation.Options{})
	require.True(t, res.Held, "%+v", res)
	require.Contains(t, res.Detail, "held")
	res = e.run(rotation.Options{})
	require.True(t, res.Held)
	mu.Lock()
	require.Len(t, events, 1, "a held run alerts once")
	require.Equal(t, notify.KindRotationFailed, events[0].Kind)
	mu.Unlock()
	v3 := e.published()
	require.NoError(t, e.login(e.green(), v2.Credential.Secret.Reveal()), "held: the old credential stays valid")
	require.NoError(t, e.login(v3.Credential.Username, v3.Credential.Secret.Reveal()))

	// With on_timeout proceed, the next look retires it anyway.
	e.target.OnTimeout = "proceed"
	e.target.Terminate = true
	res = e.run(rotation.Options{})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.Error(t, e.login(e.green(), v2.Credential.Secret.Reveal()))
	e.noPlaintext()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v2 := e.published()
	require.Error(t, e.login(e.blue(), v1.Credential.Secret.Reveal()))

	res, err := e.engine.Rollback(e.ctx, e.target)
	require.NoError(t, err)
	require.Empty(t, res.Failed)
	require.Equal(t, int64(1), res.To)
	cur := e.published()
	require.True(t, cur.Credential.Secret.Equal(v1.Credential.Secret), "the previous version is current again")
	require.NoError(t, e.login(e.blue(), v1.Credential.Secret.Reveal()), "the previous credential is re-enabled")
	require.NoError(t, e.login(e.green(), v2.Credential.Secret.Reveal()), "the rolled-back one is left valid for clients that still hold it")

	sec, err := e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, err)
	require.Equal(t, e.blue(), sec.Current.Username)
	require.Equal(t, state.RunRolledBack, sec.LastOutcome)

	// The next rotation starts from the restored version: it re-keys
	// app_green and retires app_blue.
	res2 := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res2.Status, "%+v", res2)
	v3 := e.published()
	require.Equal(t, e.green(), v3.Credential.Username)
	require.NoError(t, e.login(e.green(), v3.Credential.Secret.Reveal()))
	require.Error(t, e.login(e.green(), v2.Credential.Secret.Reveal()))
	require.Error(t, e.login(e.blue(), v1.Credential.Secret.Reveal()))
	e.noPlaintext()
}

// failingStore wraps a real store and fails its publishes, as an
// unreachable store would.
type failingStore struct {
	rotation.Store
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) Publish(ctx context.Context, req rotation.PublishRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	}
	return f.Store.Publish(ctx, req)
}

// A store that fails mid-run: the stores that already took the new version
// are put back, the old credential stays valid and published, the run fails
// with an error naming the store, and the next run completes.
func TestStoreFailureLeavesOldCredential(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	second, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	broken := &failingStore{Store: second}
	e.target.Publish = append(e.target.Publish, rotation.Publication{StoreName: "mirror", Path: "db/postgres.json", Store: broken})
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()

	broken.fail = true
	var events []notify.Event
	e.engine.Events = func(ev notify.Event) { events = append(events, ev) }
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status)
	failure := res.Err.Error()
	require.ErrorContains(t, res.Err, "mirror:db/postgres.json")
	require.ErrorContains(t, res.Err, "connection refused")
	cur := e.published()
	require.True(t, cur.Credential.Secret.Equal(v1.Credential.Secret), "the first store was put back")
	require.NoError(t, e.login(e.blue(), v1.Credential.Secret.Reveal()), "the old credential still logs in")
	require.Error(t, e.login(e.green(), "x"))
	var green bool
	conn, err := pgx.Connect(e.ctx, e.appDSN)
	require.NoError(t, err)
	require.NoError(t, conn.QueryRow(e.ctx, `SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, e.green()).Scan(&green))
	conn.Close(e.ctx)
	require.False(t, green, "the unpublished credential was discarded")
	require.Len(t, events, 1)
	require.Equal(t, notify.KindRotationFailed, events[0].Kind)
	sec, err := e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, err)
	require.Equal(t, 1, sec.ConsecutiveFailures)
	require.Equal(t, int64(1), sec.CurrentVersion)

	broken.fail = false
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v2 := e.published()
	require.Equal(t, int64(3), v2.Number, "version 2 named the failed run's credential: numbers are never reused")
	require.NoError(t, e.login(v2.Credential.Username, v2.Credential.Secret.Reveal()))
	e.noPlaintext(failure)
}

func TestBusyAndDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lease, err := e.db.AcquireLease(e.ctx, "db/postgres", "someone-else", time.Minute)
	require.NoError(t, err)
	_, err = e.engine.Run(e.ctx, e.target, rotation.Options{})
	require.ErrorIs(t, err, rotation.ErrBusy)
	require.ErrorContains(t, err, "someone-else")
	require.NoError(t, e.db.ReleaseLease(e.ctx, lease))

	lines, err := e.engine.Plan(e.ctx, e.target)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(lines[0], "generate:"), lines[0])
	require.Contains(t, strings.Join(lines, "\n"), "local:db/postgres.json")
	_, err = e.store.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json"})
	require.ErrorIs(t, err, rotation.ErrNotFound, "a dry run publishes nothing")
	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	require.Empty(t, runs)
	require.NoError(t, e.login(e.role, initialPassword))
}

func TestRedact(t *testing.T) {
	t.Parallel()
	v := secret.New("s3cr3t-value")
	require.Equal(t, "x REDACTED y REDACTED", rotation.Redact("x s3cr3t-value y s3cr3t-value", v))
	require.Equal(t, "abc", rotation.Redact("abc", secret.New("")))
}

// Losing the state key must not prevent a rollback: an unfinished run
// crashed after publish is rolled back with another key (or none).
func TestRollbackUnfinishedRunWithLostKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()
	e.engine.Hooks.After = func(_ string, step state.Step) error {
		if step == state.StepPublish {
			return rotation.ErrCrash
		}
		return nil
	}
	_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.ErrorIs(t, err, rotation.ErrCrash)
	require.Equal(t, e.green(), e.published().Credential.Username)
	e.expireLease()

	other, err := seal.Generate(nil)
	require.NoError(t, err)
	lost, err := seal.Parse(other)
	require.NoError(t, err)
	for _, key := range []*seal.Key{lost, nil} {
		eng := *e.engine
		eng.Hooks, eng.Key = rotation.Hooks{}, key
		res, err := eng.Rollback(e.ctx, e.target)
		if key == nil {
			// The second time there is nothing to roll back to: version
			// 1 is current and no store keeps a version before it.
			require.ErrorContains(t, err, "nothing to roll back")
			require.True(t, e.published().Credential.Secret.Equal(v1.Credential.Secret))
			continue
		}
		require.NoError(t, err)
		require.Empty(t, res.Failed)
		cur := e.published()
		require.True(t, cur.Credential.Secret.Equal(v1.Credential.Secret))
		require.NoError(t, e.login(e.blue(), v1.Credential.Secret.Reveal()))
		active, err := e.db.ActiveRun(e.ctx, "db/postgres")
		require.NoError(t, err)
		require.Nil(t, active, "the unfinished run is ended")
	}
}

// hang is a rotator whose Generate never answers (until its context ends).
type hang struct{ rotation.Rotator }

func (hang) Generate(ctx context.Context, _ rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	<-ctx.Done()
	return rotation.GenerateResponse{}, ctx.Err()
}

// A target that never answers costs a bounded try, not a worker forever.
func TestActionTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.engine.ActionTimeout = 50 * time.Millisecond
	e.target.Rotator = hang{e.rotator}
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status)
	require.ErrorContains(t, res.Err, "no answer within 50ms")
	runs, err := e.db.Runs(e.ctx, "db/postgres", 1)
	require.NoError(t, err)
	var generate int
	for _, s := range runs[0].Steps {
		if s.Step == state.StepGenerate {
			generate++
		}
	}
	require.Equal(t, 2, generate, "each try is journaled")
	require.NoError(t, e.login(e.role, initialPassword), "the old credential is untouched")
}
