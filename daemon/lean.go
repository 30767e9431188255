package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/rotator/rotator/policy"
)

// A lean reload drops the policies in force before it loads the new ones.
//
// A reload holds the generation in force while it loads the next one, so
// that ticks and checks go on meanwhile and a refused file changes
// nothing. When the load reuses most of the File in force (the edit of a
// few secrets: policy.LoadReusing shares the unchanged pieces), the two
// cost little more than one. When it reuses little (the header changed,
// or every line moved), they are two decoded Files, ~50 MB each at
// 100,000 secrets, and that was the daemon's peak memory.
//
// So when the File in force keeps its text (policy.Source: a large file)
// and a load of the file would reuse less than half of its secrets
// (policy.File.Reusable, which reads the text only), the reload is lean:
//
//  1. it takes gate exclusively: check rounds, metrics refreshes and
//     status page reads that start now wait for it (UseGeneration);
//     ticks are deferred (below);
//  2. it waits for those in flight to end (the generation's users), so a
//     run in flight keeps its target until it returns, then closes the
//     old generation and lets go of it: only its compressed text is kept
//     (about 1 MB at 100,000 secrets), and the collector frees the rest;
//  3. it loads the file with nothing to reuse, builds the generation and
//     syncs the due times;
//  4. if the file is refused, or the build or the sync fails, it parses
//     the old text again and builds the old policies back (synced again
//     only when the new file's sync failed, which may have written rows:
//     Daemon.syncAgain), which is logged as any refused reload is: the
//     old policies stay in force.
//
// /readyz stays 200 throughout (the daemon has had policies since its
// first load). The cost: what waits at the gate waits for the whole load
// and sync (seconds to tens of seconds at 100,000 secrets), and a refused
// file costs one more parse, of the old text. Should even that fail (it
// parsed before; only a bug could make it fail), the daemon has no
// policies and stops (errNoPolicies): Run returns the error.
//
// # Ticks during a lean reload
//
// A tick (cron or wake-up) does not wait at the gate: it would hold the
// cron ticker for the whole reload, and the ticker's next firing would be
// skipped as "the previous tick is still running", which was not true.
// It is deferred instead ("tick deferred: a policies reload is in
// progress"), and when the reload ends, whether the new policies or the
// old ones are then in force, one tick runs at once through the wake-up
// loop (after a tick in progress, never skipped), however many were
// deferred: what became due meanwhile is rotated then, not at the next
// firing. useForTick and setLeaning make sure a deferral and the reload's
// end cannot miss each other.
//
// # SIGTERM during a lean reload
//
// The reload runs in Run's loop, which handles SIGTERM only after it; a
// Kubernetes pod is killed at the end of its grace period. So the
// reload's context is Run's, which SIGTERM ends, and the reload stops
// where it is (a *stoppedError, logged as "policies reload stopped: the
// daemon is shutting down" with the stage and the policies in force, and
// again on the shutdown's "stopping" line); the drain then goes as on any
// SIGTERM:
//
//   - waiting for the users of the old generation: the generation, not
//     yet closed, is put back in force; the drain waits for the runs in
//     flight, which keep their targets;
//   - loading the new file: Run stops waiting for the load (Daemon.load;
//     it only reads and builds, and what it returns later is closed);
//   - syncing the due times: the daemon stops waiting for the statement in
//     progress and asks Postgres to cancel it (a cancel is asynchronous:
//     the statement may still finish). Each statement of the sync is atomic and idempotent
//     (an upsert of the secrets' rows, an update of due times computed
//     from the rows' history); the sync clears its mark's key before its
//     first write and records it only at its end, so a stopped sync
//     leaves rows that the next sync writes again, whatever policies it
//     syncs, as after a crash.
//
// After the load began the old generation is gone; it is not built again
// for a shutdown: no run is in flight (the reload waited for them), and
// the ticks deferred meanwhile do not run (what is due stays due in the
// state database, for the next start).

// leanShare: a reload is lean when a load would reuse less than this
// share of the secrets in force.
const leanShare = 0.5

// errNoPolicies: a lean reload failed and the old policies could not be
// built again.
var errNoPolicies = errors.New("no policies in force")

// leanSource tells whether a reload is lean (see above), and returns the
// text of the File in force when it is.
func (d *Daemon) leanSource(f *policy.File) (*policy.Source, bool) {
	src := f.Source()
	if src == nil || d.cfg.PoliciesPath == "" || len(f.Secrets) == 0 {
		return nil, false
	}
	data, err := os.ReadFile(d.cfg.PoliciesPath)
	if err != nil {
		return nil, false // the load says what is wrong
	}
	reused := f.Reusable(data)
	if float64(reused) >= leanShare*float64(len(f.Secrets)) {
		return nil, false
	}
	d.cfg.Logger.Info("reloading without the policies in force: the new file reuses little of them; ticks, checks and the status page wait for the reload",
		"secrets", len(f.Secrets), "reused", reused, "kept_text_bytes", src.Size())
	return src, true
}

// reloadLean is the lean reload (see above), with reloadGC held, which it
// releases; src is the text of the generation in force. An error leaves
// the old policies in force, but for errNoPolicies and a *stoppedError
// that says it did not (kept false).
func (d *Daemon) reloadLean(ctx context.Context, src *policy.Source) error {
	defer reloadGC.release()
	d.setLeaning(true)
	err := d.reloadLeanGated(ctx, src)
	if d.setLeaning(false) {
		d.runDeferredTick(ctx)
	}
	return err
}

// reloadLeanGated is reloadLean's work, which holds gate.
func (d *Daemon) reloadLeanGated(ctx context.Context, src *policy.Source) error {
	d.gate.Lock()
	defer d.gate.Unlock()
	if err := d.dropGeneration(ctx); err != nil {
		return &stoppedError{stage: "waiting for the runs in flight", kept: true, err: err}
	}
	debug.FreeOSMemory()
	stage := "loading the new policies"
	g, err := d.load(ctx, LoadRequest{})
	syncFailed := false
	if err == nil {
		stage = "syncing the new policies' due times"
		if err = g.Sync(ctx, d.cfg.DB, time.Now()); err != nil {
			g.Close()
			g, syncFailed = nil, true
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			// A shutdown: the old policies are not built again (the
			// drain needs none: the runs in flight have ended, and the
			// ticks that came meanwhile were deferred), and a stopped
			// sync leaves nothing half-done that the next start's sync
			// does not redo (Generation.Sync).
			return &stoppedError{stage: stage, kept: false, err: err}
		}
		back, berr := d.buildAgain(src)
		if berr != nil {
			return fmt.Errorf("%w: the new policies were refused (%w), and the policies in force could not be built again from their text: %w; restart the daemon once the policies file is fixed",
				errNoPolicies, err, berr)
		}
		d.gen.Store(back)
		if syncFailed {
			d.syncAgain(ctx, back) // it may have written rows
		}
		debug.FreeOSMemory()
		return err
	}
	d.gen.Store(g)
	if m := d.cfg.Engine.Metrics; m != nil {
		m.SetPerSecret(d.perSecret(g))
	}
	if d.checks != nil {
		d.checks.poke()
	}
	d.metrics.poke()
	debug.FreeOSMemory()
	return nil
}

// setLeaning marks a lean reload as begun (on) or ended; at the end it
// tells whether a tick was deferred meanwhile (useForTick), and clears
// that.
func (d *Daemon) setLeaning(on bool) (tickDeferred bool) {
	d.leanMu.Lock()
	defer d.leanMu.Unlock()
	d.leaning = on
	tickDeferred, d.tickDeferred = d.tickDeferred, false
	return tickDeferred
}

// useForTick is UseGeneration for a tick, which does not wait at the gate
// of a lean reload: deferred is true when one holds it (or is taking it),
// and the reload runs a tick when it ends. Otherwise it waits as
// UseGeneration does (the gate of an ordinary reload is held for a swap).
//
// The gate is tried first (TryRLock), so that the check of leaning and
// the reload's end cannot miss each other: the reload clears leaning, and
// reads tickDeferred, after it has released the gate, under leanMu.
func (d *Daemon) useForTick() (g *Generation, done func(), deferred bool) {
	if d.gate.TryRLock() {
		g = d.gen.Load()
		if g != nil {
			g.users.Add(1)
		}
		d.gate.RUnlock()
		if g == nil {
			return nil, func() {}, false
		}
		return g, g.users.Done, false
	}
	d.leanMu.Lock()
	if d.leaning {
		d.tickDeferred = true
		d.leanMu.Unlock()
		return nil, func() {}, true
	}
	d.leanMu.Unlock()
	g, done = d.UseGeneration()
	return g, done, false
}

// runDeferredTick runs the tick that a lean reload deferred (a cron or
// wake-up tick that came during it), through the wake-up loop: after a
// tick in progress, never skipped. After a shutdown stopped the reload,
// or with no policies in force, it does not run: what is due stays due in
// the state database, for the next start.
func (d *Daemon) runDeferredTick(ctx context.Context) {
	if ctx.Err() != nil || d.gen.Load() == nil {
		d.cfg.Logger.Info("the tick deferred by the policies reload does not run: the daemon is stopping; what is due stays due for the next start")
		return
	}
	d.cfg.Logger.Info("running the tick deferred by the policies reload")
	d.wake.now()
}

// dropGeneration takes the generation in force out of force once nothing
// uses it, and closes it; d.gate is held. Should ctx end first (a
// shutdown), it puts the generation back in force, unclosed, and returns
// ctx's error: the drain waits for its users as a SIGTERM does. Its own
// frame is where the daemon's last reference to it lives.
func (d *Daemon) dropGeneration(ctx context.Context) error {
	old := d.gen.Swap(nil)
	if d.onDrain != nil {
		d.onDrain()
	}
	if err := old.users.waitCtx(ctx); err != nil {
		d.gen.Store(old)
		return err
	}
	old.Close()
	return nil
}

// buildAgain builds the policies in force again from their text.
func (d *Daemon) buildAgain(src *policy.Source) (*Generation, error) {
	f, err := src.Parse()
	if err != nil {
		return nil, err
	}
	return d.cfg.Load(LoadRequest{File: f})
}
