package daemon_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/state"
)

// What a lean reload does to ticks and to a SIGTERM (lean.go). These use
// newLeanWorld, so they are not parallel either.

const (
	msgDeferred    = "tick deferred: a policies reload is in progress; a tick runs as soon as it ends"
	msgRunDeferred = "running the tick deferred by the policies reload"
	msgStillRuns   = "tick skipped: the previous tick is still running"
	msgStopped     = "policies reload stopped: the daemon is shutting down"
	msgStopping    = "stopping: no new work; waiting for running steps"
)

// A cron tick that fires during a lean reload does not wait at the
// reload's gate (it would hold the ticker, whose next firing was skipped
// as "the previous tick is still running"): it is deferred, says so, and
// one tick runs as soon as the reload ends, which rotates a secret that
// the new policies make due, with no cron tick for an hour.
func TestLeanReloadDefersATickAndRunsItAfter(t *testing.T) {
	drained, resume := make(chan struct{}, 8), make(chan struct{})
	w := newLeanWorld(t, leanOpts{n: 4, rotated: true, onDrain: func() {
		drained <- struct{}{}
		<-resume
	}})
	ctx := context.Background()
	var once sync.Once
	proceed := func() { once.Do(func() { close(resume) }) }
	t.Cleanup(proceed) // before the daemon stops: a failed test does not hang
	require.Eventually(t, w.d.Ticked, 60*time.Second, 10*time.Millisecond, "no first tick:\n%s", w.log.String())
	// Due by its history: the reload's sync makes it due now.
	_, err := w.db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = now() - interval '40 days' WHERE id = 'tok/t001'`)
	require.NoError(t, err)

	w.write(t, "# every line moves\n"+tokenPolicies(4, ""))
	select {
	case <-drained:
	case <-time.After(60 * time.Second):
		t.Fatalf("no lean reload:\n%s", w.log.String())
	}
	// Two firings of the cron ticker while the reload holds the gate.
	returned := make(chan struct{})
	go func() {
		w.d.Tick(ctx)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatalf("the tick waits at the gate of the lean reload:\n%s", w.log.String())
	}
	w.d.Tick(ctx)
	require.Equal(t, 2, strings.Count(w.log.String(), `"msg":"`+msgDeferred+`"`), w.log.String())
	require.NotContains(t, w.log.String(), msgStillRuns)
	s, err := w.db.Secret(ctx, "tok/t001")
	require.NoError(t, err)
	require.EqualValues(t, 1, s.CurrentVersion, "nothing ran during the reload")

	proceed()
	w.waitLog(t, msgReloaded, 1)
	w.waitLog(t, msgRunDeferred, 1)
	require.Eventually(t, func() bool {
		s, err := w.db.Secret(ctx, "tok/t001")
		return err == nil && s.CurrentVersion == 2 && s.LastOutcome == state.RunSucceeded
	}, 60*time.Second, 20*time.Millisecond, "the deferred tick did not rotate the due secret:\n%s", w.log.String())
	require.Equal(t, 1, strings.Count(w.log.String(), `"msg":"`+msgRunDeferred+`"`), "one tick for both deferred")
}

// A SIGTERM while a lean reload waits for a run in flight stops the
// reload at once: the old policies stay in force (the run keeps its
// target), the drain begins and waits for the run as a SIGTERM does, and
// nothing of the new file is loaded.
func TestSIGTERMStopsALeanReloadWaitingForARun(t *testing.T) {
	gate, entered := make(chan struct{}), make(chan string, 4)
	drained := make(chan struct{}, 8)
	w := newLeanWorld(t, leanOpts{n: 1, gate: gate, entered: entered, onDrain: func() { drained <- struct{}{} }})
	ctx := context.Background()
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the daemon stops: a failed test does not hang
	select {
	case <-entered: // the first tick's run waits in Generate
	case <-time.After(60 * time.Second):
		t.Fatal("no run started within 60s")
	}
	w.write(t, "# every line moves\n"+tokenPolicies(2, ""))
	select {
	case <-drained:
	case <-time.After(60 * time.Second):
		t.Fatalf("no lean reload:\n%s", w.log.String())
	}

	w.stop() // SIGTERM
	w.waitLog(t, msgStopping, 1)
	logs := w.log.String()
	require.Contains(t, logs, msgStopped)
	require.Contains(t, logs, `"while":"waiting for the runs in flight","policies_in_force":"the old ones"`)
	require.Contains(t, logs, `"reload":"stopped waiting for the runs in flight"`)
	old, _ := w.builder(0)
	require.False(t, old.state().closed, "the run in flight keeps its generation")

	open()
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not stop:\n%s", w.log.String())
	}
	require.NoError(t, w.err)
	s, err := w.db.Secret(ctx, "tok/t000")
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, s.LastOutcome, "the run in flight ended")
	st := old.state()
	require.True(t, st.closed)
	require.False(t, st.closedWhileHeld)
	w.mu.Lock()
	require.Len(t, w.builders, 1, "the new file was not loaded")
	w.mu.Unlock()
	_, err = w.db.Secret(ctx, "tok/t001")
	require.ErrorIs(t, err, state.ErrNotFound)
}

// A SIGTERM while a lean reload loads the new file (the old policies
// dropped) stops waiting for the load: the daemon stops at once, without
// building the old policies again; the load, which writes nothing, is
// closed when it returns.
func TestSIGTERMStopsALeanReloadsLoad(t *testing.T) {
	loadGate, loading := make(chan struct{}), make(chan struct{}, 1)
	w := newLeanWorld(t, leanOpts{n: 4, rotated: true, loadGate: loadGate, loading: loading})
	var once sync.Once
	release := func() { once.Do(func() { close(loadGate) }) }
	t.Cleanup(release)
	w.write(t, "# every line moves\n"+tokenPolicies(5, ""))
	select {
	case <-loading:
	case <-time.After(60 * time.Second):
		t.Fatalf("no load of the new file:\n%s", w.log.String())
	}

	w.stop() // SIGTERM
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not stop while the load ran:\n%s", w.log.String())
	}
	require.NoError(t, w.err)
	logs := w.log.String()
	require.Contains(t, logs, `"while":"loading the new policies","policies_in_force":"none: the old ones were dropped`)
	require.Contains(t, logs, `"reload":"stopped loading the new policies"`)
	require.Contains(t, logs, `"msg":"daemon stopped"`)
	first, _ := w.builder(0)
	require.True(t, first.state().closed)

	release()
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.builders) == 2 && w.builders[1].state().closed
	}, 60*time.Second, 10*time.Millisecond, "the stopped load's generation was not closed")
	_, rebuilt := w.builder(1)
	require.False(t, rebuilt, "the old policies were not built again")
}

// A SIGTERM while a lean reload syncs the new file's due times (here, its
// write waits for a lock on the secrets) stops the sync: the daemon stops
// at once and the sync is not marked as done, so the next start's sync
// does it all. (The statement's cancel is asynchronous: once the lock is
// released the write may or may not have landed; both are fine, every
// write of a sync being idempotent.)
func TestSIGTERMStopsALeanReloadsSync(t *testing.T) {
	w := newLeanWorld(t, leanOpts{n: 4, rotated: true})
	ctx := context.Background()
	before, err := w.db.ScheduleSync(ctx)
	require.NoError(t, err)
	tx, err := w.db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `LOCK TABLE rotator_secrets IN SHARE MODE`)
	require.NoError(t, err)

	text := "# every line moves\n" + tokenPolicies(5, "")
	w.write(t, text)
	require.Eventually(t, func() bool {
		var n int
		err := w.db.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'rotator_secrets'::regclass`).Scan(&n)
		return err == nil && n > 0
	}, 60*time.Second, 10*time.Millisecond, "the sync does not wait for the lock:\n%s", w.log.String())

	w.stop() // SIGTERM
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not stop while the sync waited:\n%s", w.log.String())
	}
	require.NoError(t, w.err)
	require.Contains(t, w.log.String(), `"while":"syncing the new policies' due times","policies_in_force":"none: the old ones were dropped`)
	require.NoError(t, tx.Rollback(ctx))

	after, err := w.db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, before.Gen, after.Gen, "the stopped sync is not marked as done")
	require.NotEqual(t, daemon.SyncKey(policy.Hash([]byte(text))), after.Key)
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Len(t, w.builders, 2, "the old policies were not built again")
	require.True(t, w.builders[1].state().closed, "the new generation, not synced, is closed")
}

// A SIGTERM stops an ordinary reload's load as well: the old policies
// stay in force, and the daemon stops at once.
func TestSIGTERMStopsAReloadsLoad(t *testing.T) {
	loadGate, loading := make(chan struct{}), make(chan struct{}, 1)
	w := newLeanWorld(t, leanOpts{n: 4, rotated: true, loadGate: loadGate, loading: loading})
	var once sync.Once
	release := func() { once.Do(func() { close(loadGate) }) }
	t.Cleanup(release)
	w.write(t, tokenPolicies(5, "")) // reuses every secret in force: not lean
	select {
	case <-loading:
	case <-time.After(60 * time.Second):
		t.Fatalf("no load of the new file:\n%s", w.log.String())
	}

	w.stop() // SIGTERM
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not stop while the load ran:\n%s", w.log.String())
	}
	require.NoError(t, w.err)
	require.NotContains(t, w.log.String(), msgLean)
	require.Contains(t, w.log.String(), `"while":"loading the policies","policies_in_force":"the old ones"`)
	first, _ := w.builder(0)
	require.True(t, first.state().closed, "closed at the end of the drain")
}
