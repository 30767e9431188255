package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/state"
)

// Rollback is derived from the stores and checked at the target (DESIGN.md,
// rule 7): the version to make current again is the one the stores publish
// as previous (not the one the journal names), it is re-enabled and must
// log in before any store is changed, and a rollback is idempotent — run
// again after it completed it changes nothing; run again after it stopped
// half way (exit 6) it finishes the same rollback.

// readPublished returns the credential a store holds (current or previous),
// from the first store that can give it back; nil when none can.
func (r *runner) readPublished(ctx context.Context, which Which) *Credential {
	for _, p := range r.t.Publish {
		v, err := p.Store.Read(ctx, ReadRequest{Path: p.Path, Which: which})
		if err == nil && !v.Credential.Secret.IsZero() {
			return &v.Credential
		}
	}
	return nil
}

// RollbackResult says what a rollback restored and what it could not.
type RollbackResult struct {
	SecretID string
	RunID    string
	// From and To are the versions: From was current, To is current now.
	From, To int64
	// Credential that is current again.
	Credential CredentialMeta
	Restored   []string
	Failed     []string
	// Already is set when the rollback had been done before: nothing was
	// changed.
	Already bool
}

// ErrRollbackRefused: the previous version cannot be made current again
// (it does not log in, or the stores do not agree on it). Nothing was
// published.
var ErrRollbackRefused = errors.New("rollback refused")

// rollbackRun undoes the run's own version after its monitor step found the
// new credential broken.
func (r *runner) rollbackRun(ctx context.Context, cause error) error {
	e := r.e
	reason := "monitor: " + r.redact(cause.Error())
	res, err := r.undo(ctx, reason, false)
	if err != nil && r.run.Active() && ctx.Err() == nil && !errors.Is(err, state.ErrLeaseLost) {
		// Refused, or nothing to roll back to: the run fails and people
		// are told; what the stores publish is left as it is.
		if eerr := r.endUndo(ctx, state.RunFailed, r.redact(err.Error()), reason, nil); eerr != nil {
			return eerr
		}
		e.emit(notify.Event{Kind: notify.KindRotationFailed, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: state.StepMonitor,
			Error: r.redact(err.Error()), Channel: r.t.Channel,
			Commands: []string{"rotator check --secret " + r.t.ID, "rotator history --secret " + r.t.ID}})
		return nil
	}
	if err != nil {
		if !r.run.Active() {
			return nil // refused and recorded
		}
		return err
	}
	e.emit(notify.Event{Kind: notify.KindRollback, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: state.StepMonitor,
		Error: r.redact(cause.Error()), Channel: r.t.Channel, Detail: res.summary(),
		Commands: []string{"rotator history --secret " + r.t.ID, "rotator run --secret " + r.t.ID}})
	return nil
}

func (res RollbackResult) summary() string {
	s := fmt.Sprintf("version %d (%s) is current again", res.To, res.Credential)
	if len(res.Restored) > 0 {
		s += "; restored: " + strings.Join(res.Restored, ", ")
	}
	if len(res.Failed) > 0 {
		s += "; NOT restored: " + strings.Join(res.Failed, "; ")
	}
	return s
}

// rollbackTarget decides, from what the stores publish, which version a
// rollback makes current: the previous version every store agrees on, or —
// when an earlier rollback stopped half way — the version that rollback
// was making current. already is true when the stores publish the version
// the last rollback made current and nothing happened since.
func (r *runner) rollbackTarget(ctx context.Context, w World) (target *VersionMeta, from *VersionMeta, already bool, err error) {
	cur, agree, diffs := w.Current()
	last, err := r.e.DB.Runs(ctx, r.t.ID, 1)
	if err != nil {
		return nil, nil, false, err
	}
	var lastRun *state.Run
	if len(last) > 0 && last[0].Trigger == state.TriggerRollback && !last[0].Active() {
		lastRun = last[0]
	}
	if lastRun != nil {
		t := &VersionMeta{Number: lastRun.Version, Username: lastRun.New.Username, KeyID: lastRun.New.KeyID}
		for _, s := range w.Stores {
			if s.Current != nil && s.Current.Number == lastRun.Version {
				t = s.Current
				break
			}
		}
		switch {
		case lastRun.Status == state.RunRolledBack && agree && cur != nil && cur.Number == lastRun.Version:
			return t, cur, true, nil
		case lastRun.Status == state.RunFailed && strings.HasPrefix(lastRun.Error, rollbackIncomplete):
			// Finish the rollback that stopped half way.
			f := &VersionMeta{Number: 0, Username: lastRun.Old.Username, KeyID: lastRun.Old.KeyID}
			for _, s := range w.Stores {
				if s.Current != nil && s.Current.Number != t.Number {
					f = s.Current
				}
			}
			return t, f, false, nil
		}
	}
	if cur == nil {
		return nil, nil, false, fmt.Errorf("nothing to roll back: no store publishes a version of %s", r.t.ID)
	}
	if !agree {
		return nil, nil, false, fmt.Errorf("%w: the stores do not agree on the current version (%s); make them agree (or run `rotator adopt --secret %s`) first",
			ErrRollbackRefused, strings.Join(diffs, "; "), r.t.ID)
	}
	prev, pagree, pdiffs := w.Previous()
	if prev == nil {
		return nil, nil, false, fmt.Errorf("nothing to roll back: no store keeps a previous version of %s (current: %s)", r.t.ID, describeVersion(cur))
	}
	if !pagree {
		return nil, nil, false, fmt.Errorf("%w: the stores do not agree on the previous version (%s)", ErrRollbackRefused, strings.Join(pdiffs, "; "))
	}
	return prev, cur, false, nil
}

const rollbackIncomplete = "rollback incomplete: "

// readVersion reads the credential of version v back from a store that
// holds it as current or previous.
func (r *runner) readVersion(ctx context.Context, w World, v *VersionMeta) (*Credential, error) {
	var lastErr error = errors.New("no store holds it")
	for _, s := range w.Stores {
		var which Which
		switch {
		case isVersion(s.Current, v):
			which = Current
		case isVersion(s.Previous, v):
			which = Previous
		default:
			continue
		}
		actx, cancel := context.WithTimeout(ctx, r.e.actionTimeout())
		ver, err := s.Publication.Store.Read(actx, ReadRequest{Path: s.Publication.Path, Which: which})
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("read %s: %w", s.Publication, err)
			continue
		}
		return &ver.Credential, nil
	}
	return nil, lastErr
}

// undo makes the previous version current again. The target comes first:
// the previous credential is re-enabled and must log in, or nothing is
// published (ErrRollbackRefused) and it is disabled again. Then every store
// that does not publish it yet is rolled back, and the outcome recorded on
// r.run. With newRun, r.run is a fresh rollback run inserted here.
func (r *runner) undo(ctx context.Context, reason string, newRun bool) (RollbackResult, error) {
	e := r.e
	res := RollbackResult{SecretID: r.t.ID}
	w, err := e.observe(ctx, r.t)
	if err != nil {
		return res, err
	}
	target, from, already, err := r.rollbackTarget(ctx, w)
	if err != nil {
		return res, err
	}
	res.To, res.Credential = target.Number, CredentialMeta{Username: target.Username, KeyID: target.KeyID}
	if from != nil {
		res.From = from.Number
	}
	if already {
		res.Already = true
		if r.run != nil {
			res.RunID = r.run.ID
		}
		return res, nil
	}
	if newRun {
		old := state.Meta{}
		if from != nil {
			old.Username, old.KeyID = from.Username, from.KeyID
		}
		r.run = &state.Run{ID: newRunID(), SecretID: r.t.ID, Trigger: state.TriggerRollback, Attempt: 1, Status: state.RunRunning,
			Step: state.StepRollback, Version: target.Number, Old: old, New: state.Meta{Username: target.Username, KeyID: target.KeyID}}
		if err := r.send(ctx, func(b *state.Batch) {
			b.InsertRun(r.run)
			b.Audit(r.t.ID, r.run.ID, "rollback_started", fmt.Sprintf("from %s to %s", describeVersion(from), describeVersion(target)))
		}); err != nil {
			return res, err
		}
	}
	res.RunID = r.run.ID
	prevCred, err := r.readVersion(ctx, w, target)
	if err != nil {
		msg := fmt.Sprintf("%s: version %d cannot be read back from any store (%v); nothing was changed", ErrRollbackRefused, target.Number, r.redact(err.Error()))
		return res, r.refuse(ctx, reason, msg)
	}
	// The key id tells apart two credentials of one username (a Redis
	// user's passwords); the version read back has it.
	prevMeta := CredentialMeta{Username: target.Username, KeyID: prevCred.KeyID}
	err = r.action(ctx, state.StepRollback, "re-enable "+prevMeta.String(), func(ctx context.Context) (string, error) {
		return "", r.t.Rotator.Restore(ctx, RestoreRequest{SecretID: r.t.ID, Old: prevMeta, Previous: prevCred, Fence: r.fence()})
	})
	if err != nil && !isStepError(err) {
		return res, err
	}
	if err == nil {
		err = r.action(ctx, state.StepRollback, "test "+prevMeta.String(), func(ctx context.Context) (string, error) {
			return "logs in", r.t.Rotator.Test(ctx, TestRequest{SecretID: r.t.ID, Credential: *prevCred})
		})
		if err != nil && !isStepError(err) {
			return res, err
		}
		switch {
		case err == nil:
		case from != nil && from.Username != "" && (from.Username != target.Username || from.KeyID != prevMeta.KeyID):
			// Re-enabled but it does not log in (a failed run re-keyed
			// it): disable it again, so nothing enabled is unknown.
			_ = r.action(ctx, state.StepRollback, "disable "+prevMeta.String()+" again", func(ctx context.Context) (string, error) {
				return "disabled", r.t.Rotator.Retire(ctx, RetireRequest{SecretID: r.t.ID, Old: prevMeta, New: CredentialMeta{Username: from.Username, KeyID: from.KeyID}, Fence: r.fence()})
			})
		case from != nil:
			// One credential name for both versions (single-role): the
			// re-enable replaced the current secret; put it back, so what
			// the stores publish keeps working.
			if curCred, rerr := r.readVersion(ctx, w, from); rerr == nil {
				_ = r.action(ctx, state.StepRollback, "put "+describeVersion(from)+" back", func(ctx context.Context) (string, error) {
					return "current again", r.t.Rotator.Restore(ctx, RestoreRequest{SecretID: r.t.ID, Old: CredentialMeta{Username: from.Username}, Previous: curCred, Fence: r.fence()})
				})
			}
		}
	}
	if err != nil {
		res.Failed = append(res.Failed, fmt.Sprintf("credential %s: %v", prevMeta, err))
		msg := fmt.Sprintf("%s: version %d (%s) does not work after re-enabling it (%v); the stores were left unchanged, so clients keep %s",
			ErrRollbackRefused, target.Number, prevMeta, err, describeVersion(from))
		return res, r.refuse(ctx, reason, msg)
	}
	res.Restored = append(res.Restored, "credential "+prevMeta.String()+" (it logs in)")
	for _, s := range w.Stores {
		p := s.Publication
		if isVersion(s.Current, target) {
			res.Restored = append(res.Restored, "store "+p.String()+" (already)")
			continue
		}
		runID := ""
		if s.Current != nil {
			runID = s.Current.RunID
		}
		err := r.action(ctx, state.StepRollback, p.String(), func(ctx context.Context) (string, error) {
			if err := p.Store.Rollback(ctx, RollbackRequest{Path: p.Path, RunID: runID, Number: target.Number}); err != nil {
				return "", err
			}
			// A store's rollback does nothing when its current version is
			// no longer the one observed (changed meanwhile): say
			// "restored" only for a store that publishes the target now.
			d, err := p.Store.Describe(ctx, DescribeRequest{Path: p.Path})
			if err != nil {
				return "", fmt.Errorf("rolled back, but could not be read again: %w", err)
			}
			if !isVersion(d.Current, target) {
				return "", Permanent(fmt.Errorf("publishes %s, not version %d, after the rollback: it was changed since it was observed (by hand?)",
					describeVersion(d.Current), target.Number))
			}
			return "previous version is current", nil
		})
		if err != nil && !isStepError(err) {
			return res, err
		}
		if err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("store %s: %v", p, err))
		} else {
			res.Restored = append(res.Restored, "store "+p.String())
		}
	}
	status := state.RunRolledBack
	errText := ""
	if len(res.Failed) > 0 {
		status = state.RunFailed
		errText = rollbackIncomplete + strings.Join(res.Failed, "; ") + "; run `rotator rollback --secret " + r.t.ID + "` again once the store works"
	}
	var cur *VersionMeta
	if len(res.Failed) == 0 {
		cur = target
	}
	return res, r.endUndo(ctx, status, errText, reason+"; "+res.summary(), &undone{to: cur, from: from})
}

// undone is what a completed rollback records as current and previous.
type undone struct{ to, from *VersionMeta }

// refuse ends the rollback without having published anything.
func (r *runner) refuse(ctx context.Context, reason, msg string) error {
	if err := r.endUndo(ctx, state.RunFailed, msg, reason, nil); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", ErrRollbackRefused, strings.TrimPrefix(msg, ErrRollbackRefused.Error()+": "))
}

// endUndo records the rollback's outcome on r.run.
func (r *runner) endUndo(ctx context.Context, status state.RunStatus, errText, detail string, u *undone) error {
	e := r.e
	now := e.now()
	r.run.Status, r.run.Error, r.run.FinishedAt, r.run.WaitUntil, r.run.Sealed = status, errText, &now, nil, nil
	r.run.Detail = detail
	action := "rolled_back"
	if status != state.RunRolledBack {
		action = "rollback_failed"
	}
	msg := detail
	if errText != "" {
		msg = errText
	}
	err := r.write(ctx, func(b *state.Batch) {
		if u != nil && u.to != nil {
			var fromNum int64
			var fromRun string
			var fromMeta state.Meta
			if u.from != nil {
				fromNum, fromRun, fromMeta = u.from.Number, u.from.RunID, state.Meta{Username: u.from.Username, KeyID: u.from.KeyID}
			}
			b.SetCurrent(r.t.ID, u.to.Number, u.to.RunID, state.Meta{Username: u.to.Username, KeyID: u.to.KeyID}, fromNum, fromRun, fromMeta)
		}
		b.RecordFailure(r.t.ID, status, errText, nil)
		b.Audit(r.t.ID, r.run.ID, action, msg)
	})
	e.observeRun(r.t, r.run)
	e.log().Warn("rollback ended", "secret", r.t.ID, "run_id", r.run.ID, "status", status, "detail", detail, "err", errText)
	return err
}

// Rollback makes the previous version of t current again everywhere it was
// published, after re-enabling it at the target and checking that it logs
// in. An unfinished run of the secret is ended first (before publish: its
// compensation runs; after publish: its version is the one undone).
func (e *Engine) Rollback(ctx context.Context, t Target) (_ RollbackResult, err error) {
	sent := time.Now()
	lease, err := e.DB.AcquireLease(ctx, t.ID, e.runHolder(), e.ttl())
	if errors.Is(err, state.ErrLeaseHeld) {
		return RollbackResult{}, fmt.Errorf("%w: %s is held by %s; try again when it is released", ErrBusy, t.ID, lease.Holder)
	}
	if err != nil {
		return RollbackResult{}, err
	}
	lctx, keep := e.keepLease(ctx, &lease, sent)
	r := &runner{e: e, t: t, lease: lease}
	defer func() {
		if !errors.Is(err, ErrCrash) && lctx.Err() == nil {
			// What is still carried (an action's outcome) is written
			// before the lease goes.
			if ferr := r.flush(lctx); ferr != nil && err == nil {
				err = ferr
			}
		}
		keep()
		_ = e.DB.ReleaseLease(context.WithoutCancel(ctx), lease)
	}()
	ctx = lctx

	sec, active, err := e.DB.SecretAndActiveRun(ctx, t.ID)
	if errors.Is(err, state.ErrNotFound) {
		return RollbackResult{}, fmt.Errorf("nothing to roll back: %s has never been rotated", t.ID)
	}
	if err != nil {
		return RollbackResult{}, err
	}
	r.sec = sec
	if active != nil {
		r.run = active
		// The sealed credential only helps redact errors: a rollback needs
		// role names and the stores' versions, not the new secret. So it
		// works without the state key, or with a lost one.
		if active.Sealed != nil && e.Key != nil {
			if err := r.unseal(); err != nil {
				e.log().Warn("could not unseal the unfinished run's credential; rolling back without it", "secret", t.ID, "run_id", active.ID, "err", err.Error())
			}
		}
		if active.PublishedAt == nil || active.Step == state.StepCompensate {
			// The run's version was never published everywhere: its
			// compensation puts back any store that took it and disables
			// the new credential once no store publishes it.
			if active.Step == state.StepCompensate {
				err = r.compensate(ctx)
			} else {
				err = r.fail(ctx, active.Step, errors.New("cancelled by rollback"))
			}
			if err != nil {
				return RollbackResult{}, err
			}
			res := RollbackResult{SecretID: t.ID, RunID: active.ID, From: active.Version, To: sec.CurrentVersion, Credential: toMeta(sec.Current)}
			if r.run.Status == state.RunNeedsAttention {
				res.Failed = append(res.Failed, r.run.Error)
			} else {
				for _, p := range t.Publish {
					res.Restored = append(res.Restored, "store "+p.String())
				}
			}
			e.emit(notify.Event{Kind: notify.KindRollback, SecretID: t.ID, Class: t.Class, RunID: active.ID, Channel: t.Channel,
				Detail: fmt.Sprintf("unfinished run %s cancelled; version %d is current", active.ID, sec.CurrentVersion)})
			return res, nil
		}
		res, err := r.undo(ctx, "rollback requested during the run", false)
		if err == nil {
			e.emit(notify.Event{Kind: notify.KindRollback, SecretID: t.ID, Class: t.Class, RunID: r.run.ID, Channel: t.Channel, Detail: res.summary()})
		}
		return res, err
	}
	res, err := r.undo(ctx, "rollback by "+e.Holder, true)
	if err == nil && !res.Already {
		e.emit(notify.Event{Kind: notify.KindRollback, SecretID: t.ID, Class: t.Class, RunID: r.run.ID, Channel: t.Channel, Detail: res.summary(),
			Commands: []string{"rotator history --secret " + t.ID}})
	}
	return res, err
}

// isVersion reports whether m is version v (v's run id, when known, must
// match too).
func isVersion(m, v *VersionMeta) bool {
	return m != nil && v != nil && m.Number == v.Number && (v.RunID == "" || m.RunID == v.RunID)
}
