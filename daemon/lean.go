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
//  1. it takes gate exclusively: ticks, check rounds, metrics refreshes
//     and status page reads that start now wait for it (UseGeneration);
//  2. it waits for those in flight to end (the generation's users), so a
//     run in flight keeps its target until it returns, then closes the
//     old generation and lets go of it: only its compressed text is kept
//     (about 1 MB at 100,000 secrets), and the collector frees the rest;
//  3. it loads the file with nothing to reuse, builds the generation and
//     syncs the due times;
//  4. if the file is refused, or the build or the sync fails, it parses
//     the old text again and builds the old policies back (no sync: they
//     were synced), which is logged as any refused reload is: the old
//     policies stay in force.
//
// /readyz stays 200 throughout (the daemon has had policies since its
// first load). The cost: what waits at the gate waits for the whole load
// and sync (seconds to tens of seconds at 100,000 secrets), and a refused
// file costs one more parse, of the old text. Should even that fail (it
// parsed before; only a bug could make it fail), the daemon has no
// policies and stops (errNoPolicies): Run returns the error.

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
// the old policies in force, but for errNoPolicies.
func (d *Daemon) reloadLean(ctx context.Context, src *policy.Source) error {
	defer reloadGC.release()
	d.gate.Lock()
	defer d.gate.Unlock()
	d.dropGeneration()
	debug.FreeOSMemory()
	g, err := d.cfg.Load(LoadRequest{})
	if err == nil {
		if err = g.Sync(ctx, d.cfg.DB, time.Now()); err != nil {
			g.Close()
			g = nil
		}
	}
	if err != nil {
		back, berr := d.buildAgain(src)
		if berr != nil {
			return fmt.Errorf("%w: the new policies were refused (%w), and the policies in force could not be built again from their text: %w; restart the daemon once the policies file is fixed",
				errNoPolicies, err, berr)
		}
		d.gen.Store(back)
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

// dropGeneration takes the generation in force out of force once nothing
// uses it, and closes it; d.gate is held. Its own frame is where the
// daemon's last reference to it lives.
func (d *Daemon) dropGeneration() {
	old := d.gen.Swap(nil)
	if d.onDrain != nil {
		d.onDrain()
	}
	old.users.Wait()
	old.Close()
}

// buildAgain builds the policies in force again from their text.
func (d *Daemon) buildAgain(src *policy.Source) (*Generation, error) {
	f, err := src.Parse()
	if err != nil {
		return nil, err
	}
	return d.cfg.Load(LoadRequest{File: f})
}
