package rotation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/state"
)

// Step names, in order.
const (
	StepGenerate = "generate"
	StepPublish  = "publish"
	StepVerify   = "verify"
	StepRetire   = "retire"
	StepMonitor  = "monitor"
	StepDone     = "done"
	StepRollback = "rollback"
)

// Triggers record why a run started.
const (
	TriggerManual   = "manual"
	TriggerSchedule = "schedule"
	TriggerRollback = "rollback"
)

// Errors of the engine.
var (
	// ErrBusy: another process holds the secret's lease.
	ErrBusy = errors.New("secret is being worked on elsewhere")
	// ErrCrash is returned by a Hooks function to simulate the process
	// dying at that point: the engine returns at once, cleaning nothing up.
	ErrCrash = errors.New("simulated crash")
)

// Event is something people may want to hear about; the caller wires it to
// notify.
type Event struct {
	Kind        string // one of the policy.Event* names
	SecretID    string
	Class       string
	RunID       string
	Step        string
	Error       string // redacted
	Attempt     int
	MaxAttempts int
	NextAttempt time.Time
	Channel     string
	Commands    []string
	Detail      string
	At          time.Time
}

// Hooks let tests stop the engine at chosen points. A hook that returns an
// error (ErrCrash) makes the engine return it at once without cleaning up,
// as if the process had died there.
type Hooks struct {
	// Before runs after a step's intent is journaled, before its external
	// action; After runs after its outcome is journaled.
	Before func(runID, step string) error
	After  func(runID, step string) error
}

// Engine runs rotations. One Engine serves many secrets and may run them
// concurrently; all state is in the database.
type Engine struct {
	DB     *state.DB
	Key    *seal.Key
	Logger *slog.Logger
	// Holder names this process in leases and the audit log (host:pid).
	Holder string
	// LeaseTTL is how long a lease lasts without renewal (default 30s).
	LeaseTTL time.Duration
	Now      func() time.Time
	Sleep    func(ctx context.Context, d time.Duration) error
	// Events receives notifications (optional). It must not block.
	Events func(Event)
	Hooks  Hooks
	// Metrics records outcomes and durations (optional).
	Metrics *Metrics
	// ActionTimeout bounds each external action (one try of a rotator or
	// store call; default 2m), so a target or store that never answers
	// costs a retry, not a worker forever.
	ActionTimeout time.Duration
}

func (e *Engine) actionTimeout() time.Duration {
	if e.ActionTimeout > 0 {
		return e.ActionTimeout
	}
	return 2 * time.Minute
}

func (e *Engine) observeRun(t Target, run *state.Run) {
	if e.Metrics == nil || run == nil {
		return
	}
	e.Metrics.Rotations.WithLabelValues(t.ID, t.Class, run.Status).Inc()
	if run.FinishedAt != nil {
		e.Metrics.RotationDuration.WithLabelValues(t.Class, run.Status).Observe(run.FinishedAt.Sub(run.StartedAt).Seconds())
	}
}

// DefaultHolder names this process: host:pid.
func DefaultHolder() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", h, os.Getpid())
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) sleep(ctx context.Context, d time.Duration) error {
	if e.Sleep != nil {
		return e.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (e *Engine) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Engine) ttl() time.Duration {
	if e.LeaseTTL > 0 {
		return e.LeaseTTL
	}
	return 30 * time.Second
}

func (e *Engine) emit(ev Event) {
	if e.Events == nil {
		return
	}
	if ev.At.IsZero() {
		ev.At = e.now()
	}
	e.Events(ev)
}

// Options for Run.
type Options struct {
	// Trigger is recorded on a new run (default manual).
	Trigger string
	// Wait keeps going through verify and monitor, sleeping between polls,
	// until the run ends or is held. Without it Run returns as soon as a
	// step must wait, and a later Run continues it.
	Wait bool
	// IfDue starts a new run only when the secret is due (NextDue, or the
	// secret's recorded next_due_at), inside its window and not
	// quarantined; unfinished runs are always advanced.
	IfDue   bool
	NextDue func(state.Secret) time.Time
}

// Result says where a run stands after Run returns.
type Result struct {
	SecretID  string
	RunID     string
	Status    string // running, waiting, succeeded, failed, rolled_back, not_due, quarantined
	Step      string
	Version   int64
	Resumed   bool
	Held      bool
	WaitUntil time.Time
	Detail    string
	// Err is the run's (redacted) error when it failed.
	Err error
}

// Run rotates t now, or continues its unfinished run: it takes the secret's
// lease, re-reads the state and advances the run step by step. It returns
// an error only when it could not do its work (lease held, database
// unreachable); a rotation that failed is a Result with Status failed.
func (e *Engine) Run(ctx context.Context, t Target, opts Options) (Result, error) {
	res := Result{SecretID: t.ID}
	lease, err := e.DB.AcquireLease(ctx, t.ID, e.Holder, e.ttl())
	if errors.Is(err, state.ErrLeaseHeld) {
		return res, fmt.Errorf("%w: %s is held by %s until %s; try again later",
			ErrBusy, t.ID, lease.Holder, lease.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if err != nil {
		return res, err
	}
	lctx, keep := e.keepLease(ctx, &lease)
	crashed := false
	defer func() {
		keep()
		if !crashed {
			_ = e.DB.ReleaseLease(context.WithoutCancel(ctx), lease)
		}
	}()
	r := &runner{e: e, t: t, lease: lease}
	res, err = r.advance(lctx, opts)
	if errors.Is(err, ErrCrash) {
		crashed = true
	}
	if err == nil && lctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%s: %w", t.ID, state.ErrLeaseLost)
	}
	return res, err
}

// keepLease renews the lease in the background; the returned context is
// cancelled if the lease is lost.
func (e *Engine) keepLease(ctx context.Context, l *state.Lease) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(e.ttl() / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				cp := *l
				if err := e.DB.RenewLease(ctx, &cp, e.ttl()); err != nil {
					if errors.Is(err, state.ErrLeaseLost) {
						e.log().Error("lease lost", "secret", l.SecretID, "holder", l.Holder)
						cancel(state.ErrLeaseLost)
						return
					}
					e.log().Warn("lease renewal failed", "secret", l.SecretID, "err", err)
				}
			}
		}
	}()
	return ctx, func() { close(done); <-stopped; cancel(nil) }
}

// runner advances one run of one target under a lease.
type runner struct {
	e     *Engine
	t     Target
	lease state.Lease
	run   *state.Run
	sec   state.Secret
	cred  *Credential // the new credential, unsealed
}

func newRunID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func toMeta(m state.Meta) CredentialMeta   { return CredentialMeta{Username: m.Username, KeyID: m.KeyID} }
func fromMeta(m CredentialMeta) state.Meta { return state.Meta{Username: m.Username, KeyID: m.KeyID} }

func (r *runner) result() Result {
	res := Result{SecretID: r.t.ID}
	if r.run != nil {
		res.RunID, res.Status, res.Step, res.Version, res.Detail = r.run.ID, r.run.Status, r.run.Step, r.run.Version, r.run.Detail
		if r.run.WaitUntil != nil {
			res.WaitUntil = *r.run.WaitUntil
		}
		if r.run.Error != "" {
			res.Err = errors.New(r.run.Error)
		}
	}
	return res
}

func (r *runner) advance(ctx context.Context, opts Options) (Result, error) {
	e := r.e
	// The secret and its unfinished run, in one round trip.
	sec, run, err := e.DB.SecretAndActiveRun(ctx, r.t.ID)
	if errors.Is(err, state.ErrNotFound) {
		if err := e.DB.SyncSecrets(ctx, []state.SecretDef{{ID: r.t.ID, Class: r.t.Class}}); err != nil {
			return r.result(), err
		}
		sec, run, err = e.DB.SecretAndActiveRun(ctx, r.t.ID)
	}
	if err != nil {
		return r.result(), err
	}
	r.sec = sec
	resumed := run != nil
	if run == nil {
		if opts.IfDue {
			if sec.Status == "quarantined" {
				return Result{SecretID: r.t.ID, Status: "quarantined", Detail: "quarantined after repeated failures: `rotator resume --secret " + r.t.ID + "` lifts it"}, nil
			}
			var due time.Time
			if opts.NextDue != nil {
				due = opts.NextDue(sec)
			} else if sec.NextDueAt != nil {
				due = *sec.NextDueAt
			}
			if e.now().Before(due) {
				return Result{SecretID: r.t.ID, Status: "not_due", WaitUntil: due}, nil
			}
			if r.t.Allowed != nil && !r.t.Allowed(e.now()) {
				return Result{SecretID: r.t.ID, Status: "not_due", WaitUntil: due, Detail: "outside its window"}, nil
			}
		}
		trigger := opts.Trigger
		if trigger == "" {
			trigger = TriggerManual
		}
		run = &state.Run{ID: newRunID(), SecretID: r.t.ID, Trigger: trigger, Attempt: sec.ConsecutiveFailures + 1,
			Status: state.RunRunning, Step: StepGenerate, Version: sec.CurrentVersion + 1, Old: sec.Current}
		err := e.DB.InBatch(ctx, r.lease, func(b *state.Batch) error {
			b.InsertRun(run)
			b.Audit(r.t.ID, run.ID, "run_started", fmt.Sprintf("trigger %s, version %d, replacing %s", trigger, run.Version, toMeta(run.Old)))
			return nil
		})
		if err != nil {
			return r.result(), err
		}
		e.log().Info("rotation started", "secret", r.t.ID, "run_id", run.ID, "version", run.Version, "trigger", trigger)
	} else {
		e.log().Info("resuming run", "secret", r.t.ID, "run_id", run.ID, "step", run.Step, "status", run.Status)
	}
	r.run = run
	if run.Sealed != nil {
		if err := r.unseal(); err != nil {
			return r.result(), err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return r.result(), err
		}
		var wait bool
		var err error
		switch run.Step {
		case StepGenerate:
			err = r.generate(ctx)
		case StepPublish:
			err = r.publish(ctx)
		case StepVerify:
			wait, err = r.verify(ctx)
		case StepRetire:
			wait, err = r.retire(ctx)
		case StepMonitor:
			wait, err = r.monitor(ctx)
		default:
			res := r.result()
			res.Resumed = resumed
			return res, nil
		}
		if err != nil {
			res := r.result()
			res.Resumed = resumed
			return res, err
		}
		if !run.Active() {
			res := r.result()
			res.Resumed = resumed
			return res, nil
		}
		if wait {
			res := r.result()
			res.Resumed = resumed
			held := run.Step == StepVerify && run.VerifyDeadline != nil && !e.now().Before(*run.VerifyDeadline)
			res.Held = held
			if !opts.Wait || held || run.WaitUntil == nil {
				return res, nil
			}
			d := run.WaitUntil.Sub(e.now())
			if d > 0 {
				if err := e.sleep(ctx, d); err != nil {
					return res, err
				}
			}
		}
	}
}

func (r *runner) unseal() error {
	pt, err := r.e.Key.Open(r.run.Sealed, r.run.ID)
	if err != nil {
		return fmt.Errorf("run %s of %s: unseal the new credential: %w (is ROTATOR_STATE_KEY the key this run was started with?)", r.run.ID, r.t.ID, err)
	}
	var sc sealedCred
	if err := json.Unmarshal(pt, &sc); err != nil {
		return fmt.Errorf("run %s: sealed credential is corrupt: %w", r.run.ID, err)
	}
	c := Credential{Username: r.run.New.Username, KeyID: r.run.New.KeyID, Secret: secret.New(sc.Secret), Field: sc.Field, Extra: sc.Extra}
	r.cred = &c
	return nil
}

// sealedCred is what is sealed into rotator_runs.sealed.
type sealedCred struct {
	Secret string            `json:"s"`
	Field  string            `json:"f,omitempty"`
	Extra  map[string]string `json:"x,omitempty"`
}

func (r *runner) version() Version {
	return Version{Number: r.run.Version, RunID: r.run.ID, RotatedAt: r.run.StartedAt.UTC(), Credential: *r.cred}
}

func (r *runner) redact(s string) string {
	if r.cred != nil {
		return Redact(s, r.cred.Secret)
	}
	return s
}

// action runs one external action with bounded retries, journaling each
// try: intent before, outcome after. fn returns a detail for the journal.
// It returns the last error (redacted) once the tries are spent or the
// error is Permanent.
func (r *runner) action(ctx context.Context, step, what string, fn func(ctx context.Context) (string, error)) error {
	e := r.e
	pol := r.t.Retry.normalized()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier, b.RandomizationFactor = pol.Initial, pol.Max, 2, 0
	b.MaxElapsedTime = 0
	b.Reset()
	var last error
	for attempt := 1; attempt <= pol.Attempts; attempt++ {
		var id int64
		// Intent, before the external action: one pipelined round trip.
		err := e.DB.InBatch(ctx, r.lease, func(b *state.Batch) error {
			b.StartStep(r.run.ID, step, attempt, &id)
			return nil
		})
		if err != nil {
			return err
		}
		if h := e.Hooks.Before; h != nil {
			if err := h(r.run.ID, step); err != nil {
				return err
			}
		}
		start := e.now()
		actx, cancel := context.WithTimeout(ctx, e.actionTimeout())
		detail, err := fn(actx)
		if err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", e.actionTimeout(), err)
		}
		cancel()
		outcome := "ok"
		if err != nil {
			outcome = "failed"
			last = err
		}
		errText := ""
		if err != nil {
			errText = r.redact(err.Error())
		}
		if what != "" {
			detail = strings.TrimSpace(what + " " + detail)
		}
		if ferr := e.DB.InBatch(ctx, r.lease, func(b *state.Batch) error {
			b.FinishStep(id, outcome, errText, r.redact(detail))
			return nil
		}); ferr != nil {
			return ferr
		}
		if e.Metrics != nil {
			e.Metrics.StepDuration.WithLabelValues(step, outcome).Observe(e.now().Sub(start).Seconds())
		}
		e.log().Info("step", "secret", r.t.ID, "run_id", r.run.ID, "step", step, "attempt", attempt,
			"outcome", outcome, "duration_ms", e.now().Sub(start).Milliseconds(), "detail", r.redact(detail), "err", errText)
		if err == nil {
			if h := e.Hooks.After; h != nil {
				if err := h(r.run.ID, step); err != nil {
					return err
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			// Shutting down (or the lease was lost): the step stays where
			// it is, journaled as interrupted, and resumes later. It is not
			// a failure of the rotation.
			return fmt.Errorf("%s %s interrupted: %w", step, what, context.Cause(ctx))
		}
		if IsPermanent(err) || attempt == pol.Attempts {
			break
		}
		if err := e.sleep(ctx, b.NextBackOff()); err != nil {
			return err
		}
	}
	return &stepError{step: step, what: what, err: errors.New(r.redact(last.Error())), attempts: pol.Attempts}
}

// stepError is a step that failed after its tries.
type stepError struct {
	step, what string
	err        error
	attempts   int
}

func (s *stepError) Error() string {
	w := s.step
	if s.what != "" {
		w += " " + s.what
	}
	return fmt.Sprintf("%s failed: %v", w, s.err)
}

func (s *stepError) Unwrap() error { return s.err }

func isStepError(err error) bool {
	var se *stepError
	return errors.As(err, &se)
}

// write writes the run (and whatever else fn queues) in one fenced,
// pipelined transaction: one round trip.
func (r *runner) write(ctx context.Context, fn func(b *state.Batch)) error {
	return r.e.DB.InBatch(ctx, r.lease, func(b *state.Batch) error {
		b.UpdateRun(r.run)
		if fn != nil {
			fn(b)
		}
		return nil
	})
}

// save writes the run (and whatever else fn adds) in one fenced transaction.
func (r *runner) save(ctx context.Context, fn func(tx *state.Tx) error) error {
	return r.e.DB.InTx(ctx, r.lease, func(tx *state.Tx) error {
		if err := tx.UpdateRun(ctx, r.run); err != nil {
			return err
		}
		if fn != nil {
			return fn(tx)
		}
		return nil
	})
}

func (r *runner) generate(ctx context.Context) error {
	e := r.e
	var cred Credential
	err := r.action(ctx, StepGenerate, "", func(ctx context.Context) (string, error) {
		resp, err := r.t.Rotator.Generate(ctx, GenerateRequest{SecretID: r.t.ID, RunID: r.run.ID, Current: toMeta(r.run.Old)})
		if err != nil {
			return "", err
		}
		cred = resp.Credential
		if toMeta(r.run.Old).IsZero() && !resp.Replaces.IsZero() {
			r.run.Old = fromMeta(resp.Replaces)
		}
		if cred.Secret.IsZero() {
			return "", Permanent(errors.New("rotator returned an empty secret"))
		}
		return fmt.Sprintf("new credential %s created and tested", cred.Meta()), nil
	})
	if err != nil {
		if isStepError(err) {
			return r.fail(ctx, StepGenerate, err)
		}
		return err
	}
	r.cred = &cred
	pt, _ := json.Marshal(sealedCred{Secret: cred.Secret.Reveal(), Field: cred.Field, Extra: cred.Extra})
	r.run.Sealed = e.Key.Seal(pt, r.run.ID)
	r.run.New = fromMeta(cred.Meta())
	r.run.Step = StepPublish
	// Stage where the stores stage (AWS: AWSPENDING) before anything is
	// made current.
	r.run.Detail = "staging"
	if err := r.write(ctx, nil); err != nil {
		return err
	}
	for _, p := range r.t.Publish {
		p := p
		err := r.action(ctx, "stage", p.String(), func(ctx context.Context) (string, error) {
			return "", p.Store.Stage(ctx, StageRequest{Path: p.Path, Version: r.version()})
		})
		if err != nil {
			if isStepError(err) {
				return r.fail(ctx, StepPublish, err)
			}
			return err
		}
	}
	r.run.Detail = ""
	return nil
}

func (r *runner) publish(ctx context.Context) error {
	e := r.e
	for _, p := range r.t.Publish {
		p := p
		err := r.action(ctx, StepPublish, p.String(), func(ctx context.Context) (string, error) {
			if err := p.Store.Publish(ctx, PublishRequest{Path: p.Path, Version: r.version()}); err != nil {
				return "", err
			}
			return fmt.Sprintf("version %d is current", r.run.Version), nil
		})
		if err != nil {
			if isStepError(err) {
				return r.fail(ctx, StepPublish, fmt.Errorf("store %s: %w", p, err))
			}
			return err
		}
	}
	now := e.now()
	deadline := now.Add(r.t.Grace)
	r.run.PublishedAt, r.run.VerifyDeadline = &now, &deadline
	r.run.Step = StepVerify
	return r.write(ctx, func(b *state.Batch) {
		b.SetCurrent(r.t.ID, r.run.Version, r.run.ID, r.run.New, r.sec.CurrentVersion, r.sec.CurrentRunID, r.run.Old)
		b.Audit(r.t.ID, r.run.ID, "published", fmt.Sprintf("version %d (%s) to %s", r.run.Version, toMeta(r.run.New), r.storeList()))
	})
}

func (r *runner) storeList() string {
	var names []string
	for _, p := range r.t.Publish {
		names = append(names, p.String())
	}
	return strings.Join(names, ", ")
}

// evaluate runs the verify checks once.
func (r *runner) evaluate(ctx context.Context) (bool, []string) {
	e := r.e
	var pending []string
	old := toMeta(r.run.Old)
	if !old.IsZero() {
		resp, err := r.t.Rotator.Clients(ctx, ClientsRequest{SecretID: r.t.ID, Old: old})
		switch {
		case errors.Is(err, ErrUnsupported):
		case err != nil:
			pending = append(pending, "client count failed: "+r.redact(err.Error()))
		case resp.Count > 0:
			d := resp.Detail
			if d == "" {
				d = fmt.Sprintf("%d clients still use %s", resp.Count, old)
			}
			pending = append(pending, d)
		}
	}
	req := CheckRequest{SecretID: r.t.ID, New: r.version().Meta(), Old: old, Now: e.now()}
	if r.run.PublishedAt != nil {
		req.PublishedAt = *r.run.PublishedAt
	}
	for _, c := range r.t.Checks {
		res, err := c.Check(ctx, req)
		switch {
		case err != nil:
			pending = append(pending, c.Name()+": "+r.redact(err.Error()))
		case !res.Passed:
			pending = append(pending, c.Name()+": "+res.Detail)
		}
	}
	return len(pending) == 0, pending
}

func (r *runner) poll() time.Duration {
	if r.t.Poll > 0 {
		return r.t.Poll
	}
	return 5 * time.Second
}

func (r *runner) verify(ctx context.Context) (bool, error) {
	e := r.e
	ok, pending := r.evaluate(ctx)
	now := e.now()
	if ok {
		r.run.Step, r.run.Status, r.run.WaitUntil, r.run.Detail = StepRetire, state.RunRunning, nil, "clients moved"
		return false, r.journalOnce(ctx, StepVerify, "ok", "", "all checks passed")
	}
	detail := strings.Join(pending, "; ")
	deadline := now
	if r.run.VerifyDeadline != nil {
		deadline = *r.run.VerifyDeadline
	}
	if now.Before(deadline) {
		next := now.Add(r.poll())
		if next.After(deadline) {
			next = deadline
		}
		r.run.Status, r.run.WaitUntil, r.run.Detail = state.RunWaiting, &next, "waiting for clients: "+detail
		return true, r.write(ctx, nil)
	}
	if r.t.OnTimeout == "proceed" {
		r.run.Step, r.run.Status, r.run.WaitUntil, r.run.Detail = StepRetire, state.RunRunning, nil, "grace ended, proceeding: "+detail
		return false, r.journalOnce(ctx, StepVerify, "timeout", "", "grace ended with clients on the old credential; on_timeout is proceed: "+detail)
	}
	// Hold: both credentials stay valid; look again later and tell people once.
	next := now.Add(maxDur(r.poll(), time.Minute))
	first := !strings.HasPrefix(r.run.Detail, "held")
	r.run.Status, r.run.WaitUntil, r.run.Detail = state.RunWaiting, &next, "held: grace ended with clients on the old credential; both stay valid: "+detail
	if first {
		if err := r.journalOnce(ctx, StepVerify, "held", "", r.run.Detail); err != nil {
			return true, err
		}
		e.emit(Event{Kind: "rotation_failed", SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: StepVerify,
			Error: r.run.Detail, Channel: r.t.Channel, NextAttempt: next,
			Commands: []string{"rotator run --secret " + r.t.ID, "rotator history --secret " + r.t.ID}})
		return true, nil
	}
	return true, r.write(ctx, nil)
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// journalOnce records a step outcome that has no external action of its
// own (verify decisions) together with the run.
func (r *runner) journalOnce(ctx context.Context, step, outcome, errText, detail string) error {
	return r.write(ctx, func(b *state.Batch) {
		b.JournalStep(r.run.ID, step, 1, outcome, errText, r.redact(detail))
	})
}

func (r *runner) retire(ctx context.Context) (bool, error) {
	e := r.e
	old := toMeta(r.run.Old)
	if !old.IsZero() && old != toMeta(r.run.New) {
		err := r.action(ctx, StepRetire, old.String(), func(ctx context.Context) (string, error) {
			return "disabled", r.t.Rotator.Retire(ctx, RetireRequest{SecretID: r.t.ID, Old: old, New: toMeta(r.run.New), Terminate: r.t.Terminate})
		})
		if err != nil {
			if !isStepError(err) {
				return false, err
			}
			// The new version is published and valid; the old one is
			// still valid too. Nothing is broken: try again later.
			next := e.now().Add(r.t.Retry.normalized().Max)
			r.run.Status, r.run.WaitUntil, r.run.Error = state.RunWaiting, &next, err.Error()
			r.run.Detail = "retire failed; both credentials stay valid; retrying at " + next.UTC().Format(time.RFC3339)
			e.emit(Event{Kind: "rotation_failed", SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: StepRetire,
				Error: err.Error(), Channel: r.t.Channel, NextAttempt: next,
				Commands: []string{"rotator run --secret " + r.t.ID, "rotator rollback --secret " + r.t.ID}})
			return true, r.write(ctx, nil)
		}
	}
	now := e.now()
	until := now.Add(r.t.Monitor)
	r.run.RetiredAt, r.run.MonitorUntil, r.run.Step, r.run.Status, r.run.WaitUntil, r.run.Error = &now, &until, StepMonitor, state.RunRunning, nil, ""
	r.run.Detail = "retired " + old.String()
	return false, r.write(ctx, func(b *state.Batch) {
		b.Audit(r.t.ID, r.run.ID, "retired", old.String())
	})
}

func (r *runner) monitor(ctx context.Context) (bool, error) {
	e := r.e
	err := r.action(ctx, StepMonitor, toMeta(r.run.New).String(), func(ctx context.Context) (string, error) {
		return "works", r.t.Rotator.Test(ctx, TestRequest{SecretID: r.t.ID, Credential: *r.cred})
	})
	if err != nil {
		if !isStepError(err) {
			return false, err
		}
		return false, r.rollbackRun(ctx, err)
	}
	now := e.now()
	if r.run.MonitorUntil != nil && now.Before(*r.run.MonitorUntil) {
		next := now.Add(r.poll())
		if next.After(*r.run.MonitorUntil) {
			next = *r.run.MonitorUntil
		}
		r.run.Status, r.run.WaitUntil, r.run.Detail = state.RunWaiting, &next, "monitoring until "+r.run.MonitorUntil.UTC().Format(time.RFC3339)
		return true, r.write(ctx, nil)
	}
	return false, r.succeed(ctx)
}

func (r *runner) succeed(ctx context.Context) error {
	e := r.e
	now := e.now()
	r.run.Status, r.run.Step, r.run.FinishedAt, r.run.WaitUntil, r.run.Sealed = state.RunSucceeded, StepDone, &now, nil, nil
	r.run.Detail = fmt.Sprintf("version %d (%s) is current", r.run.Version, toMeta(r.run.New))
	var next *time.Time
	if r.t.NextDue != nil {
		n := r.t.NextDue(now)
		next = &n
	}
	err := r.write(ctx, func(b *state.Batch) {
		b.RecordSuccess(r.t.ID, next)
		b.Audit(r.t.ID, r.run.ID, "rotated", r.run.Detail)
	})
	if err != nil {
		return err
	}
	e.observeRun(r.t, r.run)
	e.log().Info("rotation succeeded", "secret", r.t.ID, "run_id", r.run.ID, "version", r.run.Version, "credential", toMeta(r.run.New).String())
	e.emit(Event{Kind: "rotation_succeeded", SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Channel: r.t.Channel, Detail: r.run.Detail})
	return nil
}

// fail ends a run that failed before its version was (fully) published:
// stores that took the new version are put back, staged versions are
// removed, the new credential is discarded. The old credential was never
// touched, so clients keep working.
func (r *runner) fail(ctx context.Context, step string, cause error) error {
	e := r.e
	var notes []string
	cctx := context.WithoutCancel(ctx)
	for _, p := range r.t.Publish {
		if err := p.Store.Rollback(cctx, RollbackRequest{Path: p.Path, RunID: r.run.ID}); err != nil {
			notes = append(notes, fmt.Sprintf("could not put back %s: %s", p, r.redact(err.Error())))
		}
		if err := p.Store.Abort(cctx, AbortRequest{Path: p.Path, RunID: r.run.ID}); err != nil {
			notes = append(notes, fmt.Sprintf("could not remove the staged version at %s: %s", p, r.redact(err.Error())))
		}
	}
	if !toMeta(r.run.New).IsZero() && toMeta(r.run.New) != toMeta(r.run.Old) {
		prev := r.readPublished(cctx, Current)
		if err := r.t.Rotator.Discard(cctx, DiscardRequest{SecretID: r.t.ID, New: toMeta(r.run.New), Current: toMeta(r.run.Old), Previous: prev}); err != nil {
			notes = append(notes, fmt.Sprintf("could not disable the unpublished credential %s: %s", toMeta(r.run.New), r.redact(err.Error())))
		}
	}
	msg := r.redact(cause.Error())
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	now := e.now()
	r.run.Status, r.run.Step, r.run.Error, r.run.FinishedAt, r.run.WaitUntil, r.run.Sealed = state.RunFailed, step, msg, &now, nil, nil
	r.run.Detail = "failed at " + step + "; the old credential " + toMeta(r.run.Old).String() + " is still valid and published"
	var retry *time.Time
	if r.t.RetryAt != nil {
		n := r.t.RetryAt(now)
		retry = &n
	}
	quarantine := r.t.QuarantineAfter > 0 && r.sec.ConsecutiveFailures+1 >= r.t.QuarantineAfter
	err := r.save(cctx, func(tx *state.Tx) error {
		if err := tx.RecordOutcome(cctx, r.t.ID, state.RunFailed, msg, retry); err != nil {
			return err
		}
		if quarantine {
			if err := tx.Quarantine(cctx, r.t.ID, fmt.Sprintf("%d consecutive failed runs", r.sec.ConsecutiveFailures+1)); err != nil {
				return err
			}
		}
		return tx.Audit(cctx, r.t.ID, r.run.ID, "failed", msg)
	})
	if err != nil {
		return err
	}
	if quarantine {
		e.log().Error("secret quarantined", "secret", r.t.ID, "consecutive_failures", r.sec.ConsecutiveFailures+1)
		e.emit(Event{Kind: "quarantined", SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: step, Error: msg, Channel: r.t.Channel,
			Detail:   fmt.Sprintf("%d consecutive failed runs; no more automatic attempts", r.sec.ConsecutiveFailures+1),
			Commands: []string{"rotator history --secret " + r.t.ID, "rotator resume --secret " + r.t.ID}})
	}
	e.observeRun(r.t, r.run)
	e.log().Error("rotation failed", "secret", r.t.ID, "run_id", r.run.ID, "step", step, "err", msg)
	ev := Event{Kind: "rotation_failed", SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: step, Error: msg,
		Attempt: r.run.Attempt, MaxAttempts: r.t.QuarantineAfter, Channel: r.t.Channel,
		Commands: []string{"rotator run --secret " + r.t.ID, "rotator history --secret " + r.t.ID}}
	if retry != nil && !quarantine {
		ev.NextAttempt = *retry
	}
	e.emit(ev)
	return nil
}
