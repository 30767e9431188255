package rotation

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/state"
)

// Compensation is work, not a best effort (DESIGN.md, rule 5). A run that
// failed before its version was published everywhere is put back by
// journaled actions with retries and deadlines, like the five steps:
//
//	compensate  each store that took the version is rolled back and any
//	            staged version removed; then, once no store publishes the
//	            new credential, it is discarded at the target (blue/green:
//	            NOLOGIN on the standby; single-role: the old password is
//	            set back from what the stores publish).
//
// The sealed new credential stays in the run row until compensation is
// complete. When a store cannot be put back the run is needs_attention: the
// new credential stays valid (a store serves it), people are told once,
// and later ticks carry the compensation on. Only then is the run failed.

// failedAtPrefix starts the detail of a failed run; the failed step
// follows it.
const failedAtPrefix = "failed at "

// failedStep is the step a compensating run failed at, from its detail.
func failedStep(detail string) state.Step {
	rest, ok := strings.CutPrefix(detail, failedAtPrefix)
	if !ok {
		return state.StepPublish
	}
	if i := strings.IndexAny(rest, ";:"); i >= 0 {
		rest = rest[:i]
	}
	return state.Step(strings.TrimSpace(rest))
}

// compensate puts every store back and discards the new credential, as
// journaled actions. It ends the run failed when everything is done, and
// needs_attention (to be continued by a later tick) otherwise.
func (r *runner) compensate(ctx context.Context) error {
	step := failedStep(r.run.Detail)
	cause := r.run.Error
	if i := strings.Index(cause, " (compensation: "); i >= 0 {
		cause = cause[:i]
	}
	if where, ok := r.firstVersionStranded(ctx, step); ok {
		return r.rollForward(ctx, step, cause, where)
	}
	var pending []string
	// The version each store must make current again is the one that was
	// current before this run published: a store whose previous version
	// is another one (changed by hand since) refuses, and the new
	// credential stays valid and published there.
	var expect *Expect
	if r.sec.CurrentRunID != "" {
		expect = &Expect{RunID: r.sec.CurrentRunID}
	}
	for _, p := range r.t.Publish {
		p := p
		err := r.action(ctx, state.StepCompensate, "put back "+p.String(), func(ctx context.Context) (string, error) {
			if err := p.Store.Rollback(ctx, RollbackRequest{Path: p.Path, RunID: r.run.ID, Discard: true, Expect: expect}); err != nil {
				return "", fmt.Errorf("roll back: %w", err)
			}
			if err := p.Store.Abort(ctx, AbortRequest{Path: p.Path, RunID: r.run.ID}); err != nil {
				return "", fmt.Errorf("remove the staged version: %w", err)
			}
			return "does not publish this run's version", nil
		})
		if err != nil && !isStepError(err) {
			return err
		}
		if err != nil {
			pending = append(pending, fmt.Sprintf("%s still publishes or stages the new version: %v", p, err))
		}
	}
	if len(pending) == 0 && step == state.StepPublish {
		// Clients may have read the new version while a store published
		// it: it stays valid for as long as the delay check gives clients
		// to pick a version up, counted from the put-back.
		if grace := delayOf(r.t.Checks); grace > 0 {
			now := r.e.now()
			if r.run.Status != state.RunWaiting || r.run.WaitUntil == nil {
				until := now.Add(grace)
				r.run.Status, r.run.WaitUntil = state.RunWaiting, &until
				r.run.Detail = failedAtPrefix + string(step) + "; the stores are put back; the new credential " + toMeta(r.run.New).String() +
					" stays valid until " + until.UTC().Format(time.RFC3339) + " for clients that read it"
				return r.write(ctx, nil)
			}
			if now.Before(*r.run.WaitUntil) {
				return nil
			}
		}
	}
	if len(pending) == 0 {
		if note, err := r.discardUnpublished(ctx); err != nil {
			return err
		} else if note != "" {
			pending = append(pending, note)
		}
	}
	if len(pending) > 0 {
		return r.needsAttention(ctx, step, cause, pending)
	}
	return r.finishFailed(ctx, step, cause)
}

// firstVersionStranded reports a store that publishes this run's version
// with nothing before it: on a first rotation (nothing rotator published
// before) that failed at publish, such a store cannot be put back — there
// is no previous version to make current, and clients may already read the
// new one. Stores that cannot be read are passed over (the put-back path
// reports them).
func (r *runner) firstVersionStranded(ctx context.Context, step state.Step) (string, bool) {
	if step != state.StepPublish || r.sec.CurrentRunID != "" {
		return "", false
	}
	for _, p := range r.t.Publish {
		actx, cancel := context.WithTimeout(ctx, r.e.actionTimeout())
		d, err := p.Store.Describe(actx, DescribeRequest{Path: p.Path})
		cancel()
		if err == nil && d.Current != nil && d.Current.RunID == r.run.ID && d.Previous == nil {
			return p.String(), true
		}
	}
	return "", false
}

// rollForward finishes a first rotation that a store cannot be put back
// from (firstVersionStranded): the new credential is the only one any
// store has published, so the way back to stores that agree is forward —
// publish the version to the stores that lack it, then go on to verify as
// if the publish had succeeded at once. Right after the failure the run is
// left needs_attention (people are told once) without trying again — the
// publish has just used its retries; each later tick tries the remaining
// stores, each publish fenced by the expectation that the store holds
// nothing, a version without a run id, or this run's version.
func (r *runner) rollForward(ctx context.Context, step state.Step, cause, where string) error {
	note := fmt.Sprintf("first rotation: %s publishes version %d with nothing before it to put back; later ticks publish it to the other stores (roll forward)", where, r.run.Version)
	if r.run.Status != state.RunNeedsAttention {
		return r.needsAttention(ctx, step, cause, []string{note})
	}
	var pending []string
	for _, p := range r.t.Publish {
		p := p
		err := r.action(ctx, state.StepCompensate, "roll forward: publish to "+p.String(), func(ctx context.Context) (string, error) {
			if err := p.Store.Publish(ctx, PublishRequest{Path: p.Path, Version: r.version(), Expect: &Expect{}, RollForward: true}); err != nil {
				return "", err
			}
			return fmt.Sprintf("version %d is current", r.run.Version), nil
		})
		if err != nil && !isStepError(err) {
			return err
		}
		if err != nil {
			pending = append(pending, fmt.Sprintf("%s: %v", p, err))
		}
	}
	if len(pending) > 0 {
		return r.needsAttention(ctx, step, cause, append([]string{note}, pending...))
	}
	now := r.e.now()
	deadline := now.Add(r.t.Grace)
	r.run.Status, r.run.Step, r.run.WaitUntil, r.run.Error = state.RunRunning, state.StepVerify, nil, ""
	r.run.PublishedAt, r.run.VerifyDeadline = &now, &deadline
	r.run.Detail = fmt.Sprintf("rolled forward: version %d is published by every store after %s", r.run.Version, cause)
	return r.write(ctx, func(b *state.Batch) {
		b.SetCurrent(r.t.ID, r.run.Version, r.run.ID, r.run.New, r.sec.CurrentVersion, r.sec.CurrentRunID, r.run.Old)
		b.Audit(r.t.ID, r.run.ID, "published", fmt.Sprintf("version %d (%s) to %s, rolled forward after a failed publish", r.run.Version, toMeta(r.run.New), r.storeList()))
	})
}

// discardUnpublished disables the run's new credential at the target, but
// only once no store publishes it as current: a store that could not be
// put back keeps serving it, so it must keep working. It returns a note
// when the discard is still to be done.
func (r *runner) discardUnpublished(ctx context.Context) (string, error) {
	n := toMeta(r.run.New)
	if n.IsZero() {
		if failedStep(r.run.Detail) != state.StepGenerate {
			return "", nil
		}
		// Generate failed: the target may have changed anyway (single-role
		// re-keys the one role before it tests the password). Discarding
		// with no new credential named sets back what the stores publish
		// where that applies (single-role), and is a no-op elsewhere.
		prev := r.readPublished(ctx, Current)
		if prev == nil {
			return "", nil
		}
		err := r.action(ctx, state.StepCompensate, "put back what the stores publish", func(ctx context.Context) (string, error) {
			return "done", r.t.Rotator.Discard(ctx, DiscardRequest{SecretID: r.t.ID, Current: toMeta(r.run.Old), Previous: prev, Fence: r.fence()})
		})
		if err != nil && !isStepError(err) {
			return "", err
		}
		if err != nil {
			return fmt.Sprintf("could not set back what the stores publish: %v", err), nil
		}
		return "", nil
	}
	if failedStep(r.run.Detail) == state.StepGenerate && r.readPublished(ctx, Current) == nil {
		// Setting a prepared credential in place (single-role, just
		// before publish) failed on a first rotation: as when Generate
		// itself fails then, no store holds a password to set back.
		return "", nil
	}
	w, err := r.e.observe(ctx, r.t)
	if err != nil {
		return fmt.Sprintf("the new credential %s is left valid until the stores can be read: %s", n, r.redact(err.Error())), nil
	}
	for _, s := range w.Stores {
		if s.Current != nil && s.Current.RunID == r.run.ID {
			return fmt.Sprintf("the new credential %s is left valid: %s still publishes it", n, s.Publication), nil
		}
	}
	err = r.action(ctx, state.StepCompensate, "discard "+n.String(), func(ctx context.Context) (string, error) {
		prev := r.readPublished(ctx, Current)
		return "disabled", r.t.Rotator.Discard(ctx, DiscardRequest{SecretID: r.t.ID, New: n, Current: toMeta(r.run.Old), Previous: prev, Fence: r.fence()})
	})
	if err != nil && !isStepError(err) {
		return "", err
	}
	if err != nil {
		return fmt.Sprintf("could not disable the unpublished credential %s: %v", n, err), nil
	}
	return "", nil
}

// needsAttention leaves the run active with its sealed credential, to be
// continued by a later tick, and tells people once.
func (r *runner) needsAttention(ctx context.Context, step state.Step, cause string, pending []string) error {
	e := r.e
	first := r.run.Status != state.RunNeedsAttention
	next := e.now().Add(max(r.t.Retry.normalized().Max, time.Minute))
	r.run.Status, r.run.WaitUntil = state.RunNeedsAttention, &next
	r.run.Error = cause + " (compensation: " + strings.Join(pending, "; ") + ")"
	r.run.Detail = failedAtPrefix + string(step) + "; needs attention: compensation incomplete, the new credential " +
		toMeta(r.run.New).String() + " stays valid while a store may serve it; retrying at " + next.UTC().Format(time.RFC3339)
	err := r.write(ctx, func(b *state.Batch) {
		if first {
			b.Audit(r.t.ID, r.run.ID, "needs_attention", r.run.Error)
		}
	})
	if err != nil {
		return err
	}
	if first {
		e.log().Error("compensation incomplete", "secret", r.t.ID, "run_id", r.run.ID, "err", r.run.Error)
		e.emit(notify.Event{Kind: notify.KindNeedsAttention, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: state.StepCompensate,
			Error: r.run.Error, Channel: r.t.Channel, NextAttempt: next,
			Commands: []string{"rotator history --secret " + r.t.ID, "rotator run --secret " + r.t.ID}})
	}
	return nil
}

// delayOf is the longest delay check: how long clients are given to pick
// up a version.
func delayOf(checks []Check) time.Duration {
	var d time.Duration
	for _, c := range checks {
		if dc, ok := c.(Delay); ok && dc.D > d {
			d = dc.D
		}
	}
	return d
}
