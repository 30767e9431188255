package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rotator/rotator/state"
)

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
}

// rollbackRun undoes the run's own version after its monitor step found the
// new credential broken.
func (r *runner) rollbackRun(ctx context.Context, cause error) error {
	e := r.e
	sec, err := e.DB.Secret(ctx, r.t.ID)
	if err != nil {
		return err
	}
	r.sec = sec
	res, err := r.undo(ctx, "monitor: "+r.redact(cause.Error()))
	if err != nil {
		return err
	}
	e.emit(Event{Kind: "rollback", SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: StepMonitor,
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

// undo makes the previous version current again: re-enables the previous
// credential at the target first (if that is impossible, the stores are left
// alone, since publishing a credential that does not work would break
// clients), then rolls each store back, then records it. r.run is the run
// whose record carries the outcome.
func (r *runner) undo(ctx context.Context, reason string) (RollbackResult, error) {
	e := r.e
	sec := r.sec
	res := RollbackResult{SecretID: r.t.ID, RunID: r.run.ID, From: sec.CurrentVersion, To: sec.PreviousVersion, Credential: toMeta(sec.Previous)}
	prevMeta := toMeta(sec.Previous)
	if sec.CurrentRunID == "" || prevMeta.IsZero() {
		return res, fmt.Errorf("nothing to roll back: %s has no previous version on record (current version %d)", r.t.ID, sec.CurrentVersion)
	}
	prevCred := r.readPublished(ctx, Previous)
	err := r.action(ctx, StepRollback, "re-enable "+prevMeta.String(), func(ctx context.Context) (string, error) {
		return "", r.t.Rotator.Restore(ctx, RestoreRequest{SecretID: r.t.ID, Old: prevMeta, Previous: prevCred})
	})
	if err != nil && !isStepError(err) {
		return res, err
	}
	if err != nil {
		res.Failed = append(res.Failed, fmt.Sprintf("credential %s: %v", prevMeta, err))
		{ // whatever the reason (ErrNotRestorable or a failure), stop here
			msg := fmt.Sprintf("rollback stopped: could not re-enable %s (%v); the stores were left unchanged so clients keep a working credential", prevMeta, err)
			now := e.now()
			r.run.Status, r.run.Error, r.run.FinishedAt, r.run.WaitUntil, r.run.Sealed = state.RunFailed, msg, &now, nil, nil
			r.run.Detail = reason
			return res, r.save(ctx, func(tx *state.Tx) error {
				if err := tx.RecordOutcome(ctx, r.t.ID, state.RunFailed, msg, nil); err != nil {
					return err
				}
				return tx.Audit(ctx, r.t.ID, r.run.ID, "rollback_failed", msg)
			})
		}
	}
	res.Restored = append(res.Restored, "credential "+prevMeta.String())
	for _, p := range r.t.Publish {
		p := p
		err := r.action(ctx, StepRollback, p.String(), func(ctx context.Context) (string, error) {
			return "previous version is current", p.Store.Rollback(ctx, RollbackRequest{Path: p.Path, RunID: sec.CurrentRunID, Number: sec.PreviousVersion})
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
	now := e.now()
	status := state.RunRolledBack
	r.run.Error = ""
	if len(res.Failed) > 0 {
		r.run.Error = "rollback incomplete: " + strings.Join(res.Failed, "; ")
	}
	r.run.Status, r.run.FinishedAt, r.run.WaitUntil, r.run.Sealed = status, &now, nil, nil
	r.run.Detail = reason + "; " + res.summary()
	err = r.save(ctx, func(tx *state.Tx) error {
		if err := tx.SetCurrent(ctx, r.t.ID, sec.PreviousVersion, sec.PreviousRunID, sec.Previous, sec.CurrentVersion, sec.CurrentRunID, sec.Current); err != nil {
			return err
		}
		if err := tx.RecordOutcome(ctx, r.t.ID, state.RunRolledBack, r.run.Error, nil); err != nil {
			return err
		}
		return tx.Audit(ctx, r.t.ID, r.run.ID, "rolled_back", r.run.Detail)
	})
	e.observeRun(r.t, r.run)
	e.log().Warn("rolled back", "secret", r.t.ID, "run_id", r.run.ID, "detail", r.run.Detail)
	return res, err
}

// Rollback makes the previous version of t current again everywhere it was
// published and re-enables the previous credential where the target allows.
// An unfinished run of the secret is ended first (before publish: its new
// credential is discarded; after publish: its version is the one undone).
func (e *Engine) Rollback(ctx context.Context, t Target) (RollbackResult, error) {
	lease, err := e.DB.AcquireLease(ctx, t.ID, e.Holder, e.ttl())
	if errors.Is(err, state.ErrLeaseHeld) {
		return RollbackResult{}, fmt.Errorf("%w: %s is held by %s; try again when it is released", ErrBusy, t.ID, lease.Holder)
	}
	if err != nil {
		return RollbackResult{}, err
	}
	lctx, keep := e.keepLease(ctx, &lease)
	defer func() { keep(); _ = e.DB.ReleaseLease(context.WithoutCancel(ctx), lease) }()
	ctx = lctx

	r := &runner{e: e, t: t, lease: lease}
	active, err := e.DB.ActiveRun(ctx, t.ID)
	if err != nil {
		return RollbackResult{}, err
	}
	if active != nil {
		r.run = active
		// The sealed credential only helps redact errors: a rollback needs
		// role names and the stores' previous versions, not the new
		// secret. So it works without the state key, or with a lost one.
		if active.Sealed != nil && e.Key != nil {
			if err := r.unseal(); err != nil {
				e.log().Warn("could not unseal the unfinished run's credential; rolling back without it", "secret", t.ID, "run_id", active.ID, "err", err.Error())
			}
		}
		if active.PublishedAt == nil {
			// The run's version was never recorded as current: ending the
			// run puts back any store that took it and disables the new
			// credential. What was current before the run is current
			// again; that is the rollback asked for.
			sec, err := e.DB.Secret(ctx, t.ID)
			if err != nil {
				return RollbackResult{}, err
			}
			r.sec = sec
			if err := r.fail(ctx, active.Step, errors.New("cancelled by rollback")); err != nil {
				return RollbackResult{}, err
			}
			res := RollbackResult{SecretID: t.ID, RunID: active.ID, From: active.Version, To: sec.CurrentVersion, Credential: toMeta(sec.Current)}
			for _, p := range t.Publish {
				res.Restored = append(res.Restored, "store "+p.String())
			}
			if r.run.Error != "" && strings.Contains(r.run.Error, "could not") {
				res.Failed = append(res.Failed, r.run.Error)
			}
			e.emit(Event{Kind: "rollback", SecretID: t.ID, Class: t.Class, RunID: active.ID, Channel: t.Channel,
				Detail: fmt.Sprintf("unfinished run %s cancelled; version %d is current", active.ID, sec.CurrentVersion)})
			return res, nil
		} else {
			sec, err := e.DB.Secret(ctx, t.ID)
			if err != nil {
				return RollbackResult{}, err
			}
			r.sec = sec
			res, err := r.undo(ctx, "rollback requested during the run")
			if err == nil {
				e.emit(Event{Kind: "rollback", SecretID: t.ID, Class: t.Class, RunID: r.run.ID, Channel: t.Channel, Detail: res.summary()})
			}
			return res, err
		}
	}
	sec, err := e.DB.Secret(ctx, t.ID)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return RollbackResult{}, fmt.Errorf("nothing to roll back: %s has never been rotated", t.ID)
		}
		return RollbackResult{}, err
	}
	if sec.CurrentRunID == "" || toMeta(sec.Previous).IsZero() {
		return RollbackResult{}, fmt.Errorf("nothing to roll back: %s has no previous version on record (current version %d)", t.ID, sec.CurrentVersion)
	}
	r.sec = sec
	r.run = &state.Run{ID: newRunID(), SecretID: t.ID, Trigger: TriggerRollback, Attempt: 1, Status: state.RunRunning,
		Step: StepRollback, Version: sec.PreviousVersion, Old: sec.Current, New: sec.Previous}
	if err := e.DB.InTx(ctx, lease, func(tx *state.Tx) error {
		if err := tx.InsertRun(ctx, r.run); err != nil {
			return err
		}
		return tx.Audit(ctx, t.ID, r.run.ID, "rollback_started", fmt.Sprintf("from version %d to %d", sec.CurrentVersion, sec.PreviousVersion))
	}); err != nil {
		return RollbackResult{}, err
	}
	res, err := r.undo(ctx, "rollback by "+e.Holder)
	if err == nil {
		e.emit(Event{Kind: "rollback", SecretID: t.ID, Class: t.Class, RunID: r.run.ID, Channel: t.Channel, Detail: res.summary(),
			Commands: []string{"rotator history --secret " + t.ID}})
	}
	return res, err
}
