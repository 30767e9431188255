package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
)

// Builder builds what a policies file names: the engine's target of a
// secret and, for adopt_age, the creation time of the version the stores
// hold. The command's wiring implements it. It is safe for concurrent use.
//
// What secrets share (the stores, one admin pool per server) is built once
// and lives until Close. What one target alone holds (its rotator, with
// any connections of its own) is built at each call to Target and freed
// by the release it returns, so memory follows the targets in use, not
// the secrets of the file; Close frees what was not released.
type Builder interface {
	Target(ctx context.Context, s *policy.SecretSpec) (t rotation.Target, release func(), err error)
	// AdoptedAge is when the version the stores hold was made; zero when
	// no store knows.
	AdoptedAge(ctx context.Context, s *policy.SecretSpec) time.Time
	Close()
}

// Generation is one loaded policies file and what is built from it: the
// compiled schedules and the secrets indexed by id (once per load: lookups
// at every tick, scrape and announcement are map reads). It keeps no
// target: each tick, run and check builds the targets it works on and
// releases them when it ends (Acquire, Lookup), so an idle daemon holds
// the file, not a rotator per secret. A reload makes a new one; the old
// one is closed once the ticks and checks using it (users) end, so a run
// in flight keeps its rotator and stores until it returns.
type Generation struct {
	File *policy.File
	// Rules are shared among secrets with the same schedule: read-only.
	Rules map[string]*schedule.Rule
	specs map[string]*policy.SecretSpec

	build Builder
	users userCount
}

// userCount counts a generation's users (UseGeneration). Unlike a
// sync.WaitGroup, a wait for it may be given up (waitCtx) and the count
// used again: a lean reload stopped by a SIGTERM puts the generation back
// in force, whose users then come and go while a WaitGroup's abandoned
// Wait would still be pending (a new user once the count reached zero
// made that Wait panic: "WaitGroup is reused before previous Wait has
// returned").
type userCount struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n reaches 0; nil: nobody waits
}

// Add counts delta more users.
func (u *userCount) Add(delta int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n += delta
	if u.n < 0 {
		panic("daemon: negative generation user count")
	}
	if u.n == 0 && u.idle != nil {
		close(u.idle)
		u.idle = nil
	}
}

// Done is Add(-1).
func (u *userCount) Done() { u.Add(-1) }

// idleC is closed once nothing uses the generation.
func (u *userCount) idleC() <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if u.idle == nil {
		u.idle = make(chan struct{})
	}
	return u.idle
}

// Wait waits until nothing uses the generation.
func (u *userCount) Wait() { <-u.idleC() }

// waitCtx is Wait, given up when ctx ends (its error).
func (u *userCount) waitCtx(ctx context.Context) error {
	select {
	case <-u.idleC():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewGeneration compiles the schedules of f and indexes its secrets.
// build may be nil for read-only use (plan, status, a dry run).
func NewGeneration(f *policy.File, build Builder) (*Generation, error) {
	rs, err := schedule.Rules(f)
	if err != nil {
		return nil, err
	}
	g := &Generation{File: f, Rules: rs, build: build, specs: make(map[string]*policy.SecretSpec, len(f.Secrets))}
	for _, s := range f.Secrets {
		g.specs[s.ID] = s
	}
	return g, nil
}

// Spec finds a secret of the policies by id.
func (g *Generation) Spec(id string) (*policy.SecretSpec, bool) {
	s, ok := g.specs[id]
	return s, ok
}

// Settings are a secret's effective settings; false when the policies do
// not name it.
func (g *Generation) Settings(id string) (policy.Settings, bool) {
	s, ok := g.specs[id]
	if !ok {
		return policy.Settings{}, false
	}
	return g.File.Settings(s), true
}

// RemindBefore is notify.remind_before (0: no upcoming reminders).
func (g *Generation) RemindBefore() time.Duration {
	if g.File.Notify.RemindBefore == nil {
		return 0
	}
	return g.File.Notify.RemindBefore.D()
}

// Acquire builds the target of a secret, with its schedule attached; ok
// is false when the policies do not name it. The target is not kept:
// release (never nil) frees what it alone holds, once the caller is done
// with it (a run returned, a check ended).
func (g *Generation) Acquire(ctx context.Context, id string) (t rotation.Target, release func(), ok bool, err error) {
	release = func() {}
	s, ok := g.specs[id]
	if !ok {
		return rotation.Target{}, release, false, nil
	}
	if g.build == nil {
		return rotation.Target{}, release, true, fmt.Errorf("%s: the policies were loaded read-only (no builder)", id)
	}
	t, rel, err := g.build.Target(ctx, s)
	if err != nil {
		if rel != nil {
			rel()
		}
		return t, release, true, err
	}
	if rel != nil {
		release = rel
	}
	Schedule(&t, *g.Rules[id], g.File.Settings(s).Retry)
	return t, release, true, nil
}

// Lookup is a rotation.Lookup for one tick (rotation.Engine.Tick), which
// builds each target it is asked for, and release, which frees them all.
// Call release after Tick returned: Tick waits for the runs it started,
// so no run still holds a target then.
func (g *Generation) Lookup() (lookup rotation.Lookup, release func()) {
	var mu sync.Mutex
	var rels []func()
	lookup = func(ctx context.Context, id string) (rotation.Target, bool, error) {
		t, rel, ok, err := g.Acquire(ctx, id)
		mu.Lock()
		rels = append(rels, rel)
		mu.Unlock()
		return t, ok, err
	}
	release = func() {
		mu.Lock()
		all := rels
		rels = nil
		mu.Unlock()
		for _, rel := range all {
			rel()
		}
	}
	return lookup, release
}

// Close releases what the builder built.
func (g *Generation) Close() {
	if g.build != nil {
		g.build.Close()
	}
}

// Schedule attaches a secret's schedule to its target: the engine records
// the due time that Rule.Due computes after a success and after a failure
// (from the start of the failed attempt, as the schedule sync reads it
// back from last_attempt_at), checks the window before it starts a run,
// and quarantines after retry.quarantine_after failed runs.
func Schedule(t *rotation.Target, r schedule.Rule, retry policy.Retry) {
	id := t.ID
	t.NextDue = func(last time.Time) time.Time {
		d, err := r.Due(id, schedule.History{LastSuccess: last}, last)
		if err != nil {
			return last.Add(r.Interval)
		}
		return d.At
	}
	t.RetryAt = func(failedAttempt time.Time) time.Time {
		d, err := r.Due(id, schedule.History{LastFailure: failedAttempt}, failedAttempt)
		if err != nil {
			return failedAttempt.Add(r.RetryAfter)
		}
		return d.At
	}
	t.Allowed = r.Allows
	t.QuarantineAfter = retry.QuarantineAfter
}
