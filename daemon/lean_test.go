package daemon_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/syncbuf"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// The lean reload (lean.go) is shown with small files: policy.SetPieceSizes
// makes every file large (it keeps its text) and pieces of 2 secrets.
// That setting is the process's, so these tests are not parallel (the
// parallel tests of the package start after them).

// logBuf is a goroutine-safe log sink.
type logBuf = syncbuf.Buffer

// leanWorld is a daemon over a fresh state database and a policies file
// of token secrets, each generation built by a countingBuilder.
type leanWorld struct {
	dir, path string
	db        *state.DB
	d         *daemon.Daemon
	addr      string
	log       *logBuf
	stop      func()
	// exited is closed when Run returned err.
	exited chan struct{}
	err    error

	mu sync.Mutex
	// builders are the generations' builders, in order; rebuilt tells
	// those built from a File parsed again (LoadRequest.File).
	builders []*countingBuilder
	rebuilt  []bool
}

type leanOpts struct {
	n int
	// rotated: every secret rotated a day ago (nothing due at start).
	rotated bool
	// gate holds the first generation's Generates (countingBuilder.gate).
	gate    chan struct{}
	entered chan string
	// failRebuild: building the policies in force again fails.
	failRebuild bool
	tick        string
	onDrain     func()
	// loadGate holds the loads of a changed file (not the first load,
	// nor a build of the policies in force again) until it is closed;
	// loading is told when one is held.
	loadGate chan struct{}
	loading  chan struct{}
}

func newLeanWorld(t *testing.T, o leanOpts) *leanWorld {
	t.Helper()
	t.Cleanup(policy.SetPieceSizes(0, 2)) // runs last: after the daemon stopped
	ctx := context.Background()
	w := &leanWorld{dir: t.TempDir(), log: &logBuf{}, exited: make(chan struct{})}
	w.path = filepath.Join(w.dir, "policies.yaml")
	require.NoError(t, os.WriteFile(w.path, []byte(tokenPolicies(o.n, "")), 0o600))
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	w.db = db
	if o.rotated {
		_, err = db.Pool().Exec(ctx, `INSERT INTO rotator_secrets (id, class, current_version, last_success_at, last_outcome)
			SELECT 'tok/t' || lpad(g::text, 3, '0'), 'admin_token', 1, now() - interval '1 day', 'succeeded'
			FROM generate_series(0, $1 - 1) g`, o.n)
		require.NoError(t, err)
	}
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	key, err := seal.Parse(keyText)
	require.NoError(t, err)
	load := func(req daemon.LoadRequest) (*daemon.Generation, error) {
		f := req.File
		w.mu.Lock()
		first := len(w.builders) == 0
		w.mu.Unlock()
		if f == nil && !first && o.loadGate != nil {
			o.loading <- struct{}{}
			<-o.loadGate
		}
		if f == nil {
			var err error
			if f, err = policy.LoadReusing(w.path, req.Prev); err != nil {
				return nil, err
			}
		} else if o.failRebuild {
			return nil, errors.New("test: the builder refuses")
		}
		b := newCountingBuilder(t, f, filepath.Join(w.dir, "s"))
		w.mu.Lock()
		if len(w.builders) == 0 && o.gate != nil {
			b.gate, b.entered = o.gate, o.entered
		}
		w.builders = append(w.builders, b)
		w.rebuilt = append(w.rebuilt, req.File != nil)
		w.mu.Unlock()
		return daemon.NewGeneration(f, b)
	}
	if o.tick == "" {
		o.tick = "@every 1h"
	}
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	logger := slog.New(slog.NewJSONHandler(w.log, nil))
	d, err := daemon.New(runCtx, daemon.Config{
		DB: db, Engine: &rotation.Engine{DB: db, Key: key, Logger: logger, Holder: "lean-test", LeaseTTL: time.Minute},
		Logger: logger, Load: load, PoliciesPath: w.path,
		Listen: "127.0.0.1:0", Tick: o.tick, Shutdown: 10 * time.Second,
		Registry: prometheus.NewRegistry(), Ready: func(a string) { ready <- a },
	})
	require.NoError(t, err)
	// A status page of its own: the check loop keeps each secret's last
	// report (LastCheck).
	d.SetPage(http.NotFoundHandler(), "127.0.0.1:0")
	if o.onDrain != nil {
		d.OnDrain(o.onDrain)
	}
	w.d = d
	go func() {
		w.err = d.Run(runCtx)
		close(w.exited)
	}()
	w.stop = stop
	t.Cleanup(func() {
		stop()
		<-w.exited
	})
	select {
	case w.addr = <-ready:
	case <-w.exited:
		t.Fatalf("daemon stopped: %v", w.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not listen within 30s")
	}
	return w
}

// write replaces the policies file and asks for a reload (SIGHUP: the
// daemon has taken it over before it listens; no other daemon of the
// process runs beside these tests).
func (w *leanWorld) write(t *testing.T, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(w.path, []byte(text), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
}

// waitLog waits for the n-th line with msg in the log (n from 1).
func (w *leanWorld) waitLog(t *testing.T, msg string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		return strings.Count(w.log.String(), `"msg":"`+msg+`"`) >= n
	}, 60*time.Second, 10*time.Millisecond, "no %q (%d) in the log:\n%s", msg, n, w.log.String())
}

func (w *leanWorld) builder(i int) (*countingBuilder, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.builders[i], w.rebuilt[i]
}

// builderState is what a countingBuilder saw, read under its lock (an
// assertion that fails must not leave the lock held).
type builderState struct {
	closed, closedWhileHeld, releasedWhileGenerating bool
	held                                             int
	usedAfterRelease                                 []string
}

func (b *countingBuilder) state() builderState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return builderState{closed: b.closed, closedWhileHeld: b.closedWhileHeld, releasedWhileGenerating: b.releasedWhileGenerating,
		held: b.held, usedAfterRelease: append([]string(nil), b.usedAfterRelease...)}
}

func ids(g *daemon.Generation) []string {
	var out []string
	for _, s := range g.File.Secrets {
		out = append(out, s.ID)
	}
	return out
}

const (
	msgLean     = "reloading without the policies in force: the new file reuses little of them; ticks, checks and the status page wait for the reload"
	msgReloaded = "policies reloaded"
	msgRefused  = "policies not reloaded; the old ones stay in force"
)

// A reload that reuses most of the policies in force (a secret appended)
// is not lean; one that moves every line (a comment as the first line)
// is: the old generation is dropped and closed before the load, /readyz
// answers 200 while no generation is in force, and the new policies are
// loaded, synced and in force.
func TestLeanReloadLoadsTheNewPolicies(t *testing.T) {
	drained, resume := make(chan struct{}, 8), make(chan struct{})
	w := newLeanWorld(t, leanOpts{n: 6, rotated: true, onDrain: func() {
		drained <- struct{}{}
		<-resume
	}})
	ctx := context.Background()
	var once sync.Once
	proceed := func() { once.Do(func() { close(resume) }) }
	t.Cleanup(proceed) // before the daemon stops: a failed test does not hang

	w.write(t, tokenPolicies(7, ""))
	w.waitLog(t, msgReloaded, 1)
	require.NotContains(t, w.log.String(), msgLean, "a reload that reuses 6 secrets of 6 is not lean")
	require.Len(t, w.d.Generation().File.Secrets, 7)

	w.write(t, "# every line moves\n"+tokenPolicies(8, ""))
	select {
	case <-drained:
	case <-time.After(60 * time.Second):
		t.Fatalf("no lean reload:\n%s", w.log.String())
	}
	// The reload holds no generation now; the probe does not care.
	code, body := getAt(t, w.addr, "/readyz")
	require.Equal(t, http.StatusOK, code, "/readyz during a lean reload: %s", body)
	proceed()
	w.waitLog(t, msgReloaded, 2)
	require.Contains(t, w.log.String(), `"reused":0`)

	g := w.d.Generation()
	require.Len(t, g.File.Secrets, 8)
	require.NotNil(t, g.File.Source())
	s, err := w.db.Secret(ctx, "tok/t007")
	require.NoError(t, err, "the new secret is synced")
	require.NotNil(t, s.NextDueAt)
	prev, _ := w.builder(1)
	require.True(t, prev.state().closed, "the generation in force before the lean reload is closed")
	cur, rebuilt := w.builder(2)
	require.False(t, rebuilt)
	require.False(t, cur.state().closed)
}

func getAt(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A lean reload of a file that is refused puts the old policies back,
// parsed again from their text, and says the old ones stay in force;
// the daemon goes on ticking (a secret made due is rotated) and checking
// (the rotated secret is checked) with them.
func TestLeanReloadOfABadFileKeepsTheOldPolicies(t *testing.T) {
	w := newLeanWorld(t, leanOpts{n: 4, tick: "@every 1s"})
	ctx := context.Background()
	before := ids(w.d.Generation())
	// The first tick rotates every secret (never rotated).
	require.Eventually(t, func() bool {
		s, err := w.db.Secret(ctx, "tok/t002")
		return err == nil && s.CurrentVersion == 1 && s.LastOutcome == state.RunSucceeded
	}, 60*time.Second, 20*time.Millisecond, "the first rotation did not end:\n%s", w.log.String())

	w.write(t, "# every line moves\n"+strings.Replace(tokenPolicies(5, ""), "class: admin_token", "class: no_such_class", 1))
	w.waitLog(t, msgRefused, 1)
	require.Contains(t, w.log.String(), msgLean)
	g := w.d.Generation()
	require.Equal(t, before, ids(g), "the old policies are in force")
	require.NotNil(t, g.File.Source(), "and keep their text for the next lean reload")
	back, rebuilt := w.builder(1)
	require.True(t, rebuilt, "built again from the old text")
	first, _ := w.builder(0)
	require.True(t, first.state().closed)

	reloaded := time.Now()
	_, err := w.db.Pool().Exec(ctx, `UPDATE rotator_secrets SET next_due_at = now() - interval '1 second' WHERE id = 'tok/t002'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		s, err := w.db.Secret(ctx, "tok/t002")
		return err == nil && s.CurrentVersion == 2 && s.LastOutcome == state.RunSucceeded
	}, 60*time.Second, 20*time.Millisecond, "no tick rotated the due secret after the refused reload:\n%s", w.log.String())
	require.Eventually(t, func() bool {
		rep, ok := w.d.LastCheck("tok/t002")
		return ok && rep.Time().After(reloaded)
	}, 60*time.Second, 20*time.Millisecond, "the rotated secret was not checked")
	built, _, _ := back.counts()
	require.GreaterOrEqual(t, built, 2, "the tick and the check used the policies built again")

	// The file fixed, the next lean reload loads it.
	w.write(t, "# fixed\n"+tokenPolicies(5, ""))
	w.waitLog(t, msgReloaded, 1)
	require.Len(t, w.d.Generation().File.Secrets, 5)
}

// A lean reload whose schedule sync fails (the state database refuses)
// puts the old policies back too.
func TestLeanReloadWhoseSyncFailsKeepsTheOldPolicies(t *testing.T) {
	w := newLeanWorld(t, leanOpts{n: 4, rotated: true})
	ctx := context.Background()
	before := ids(w.d.Generation())

	_, err := w.db.Pool().Exec(ctx, `ALTER TABLE rotator_schedule_sync RENAME TO rotator_schedule_sync_away`)
	require.NoError(t, err)
	w.write(t, "# every line moves\n"+tokenPolicies(6, ""))
	w.waitLog(t, msgRefused, 1)
	require.Contains(t, w.log.String(), "schedule sync mark", "the sync failed, not the load")
	require.Equal(t, before, ids(w.d.Generation()))
	_, rebuilt := w.builder(2) // the new file's, then the old one's again
	require.True(t, rebuilt)
	_, err = w.db.Secret(ctx, "tok/t005")
	require.ErrorIs(t, err, state.ErrNotFound, "nothing of the new file was synced")

	_, err = w.db.Pool().Exec(ctx, `ALTER TABLE rotator_schedule_sync_away RENAME TO rotator_schedule_sync`)
	require.NoError(t, err)
	w.write(t, "# again\n"+tokenPolicies(6, ""))
	w.waitLog(t, msgReloaded, 1)
	require.Len(t, w.d.Generation().File.Secrets, 6)
}

// A lean reload waits for the tick in flight: its run keeps the rotator
// and stores it was built with until it returns (and succeeds); only then
// is the old generation closed and the new one loaded.
func TestLeanReloadWaitsForTheTickInFlight(t *testing.T) {
	gate, entered := make(chan struct{}), make(chan string, 4)
	drained := make(chan struct{}, 8)
	w := newLeanWorld(t, leanOpts{n: 1, gate: gate, entered: entered, onDrain: func() { drained <- struct{}{} }})
	ctx := context.Background()
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the daemon stops: a failed test does not hang
	select {
	case id := <-entered: // the first tick's run waits in Generate
		require.Equal(t, "tok/t000", id)
	case <-time.After(60 * time.Second):
		t.Fatal("no run started within 60s")
	}

	w.write(t, "# every line moves\n"+tokenPolicies(1, ""))
	select {
	case <-drained:
	case <-time.After(60 * time.Second):
		t.Fatalf("no lean reload:\n%s", w.log.String())
	}
	old, _ := w.builder(0)
	st := old.state()
	require.False(t, st.closed, "the old generation was closed under the tick in flight")
	require.False(t, st.releasedWhileGenerating)

	open()
	w.waitLog(t, msgReloaded, 1)
	s, err := w.db.Secret(ctx, "tok/t000")
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, s.LastOutcome, "the run in flight used its target to the end")
	st = old.state()
	require.True(t, st.closed)
	require.Empty(t, st.usedAfterRelease)
	require.False(t, st.closedWhileHeld)
	require.Zero(t, st.held)
}

// Should the old policies fail to build again after a refused lean
// reload, the daemon has none and stops with an error that says so.
func TestLeanReloadThatCannotPutTheOldPoliciesBackStops(t *testing.T) {
	w := newLeanWorld(t, leanOpts{n: 2, rotated: true, failRebuild: true})
	w.write(t, "# every line moves\n"+strings.Replace(tokenPolicies(2, ""), "class: admin_token", "class: no_such_class", 1))
	select {
	case <-w.exited:
		require.ErrorContains(t, w.err, "no policies in force")
		require.ErrorContains(t, w.err, "test: the builder refuses")
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not stop:\n%s", w.log.String())
	}
}
