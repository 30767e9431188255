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
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"

	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/state"
)

// Step names, triggers and run statuses are state's typed constants
// (state.Step*, state.Trigger*, state.Run*): the engine uses them, never
// the strings.

// Errors of the engine.
var (
	// ErrBusy: another process holds the secret's lease.
	ErrBusy = errors.New("secret is being worked on elsewhere")
	// ErrCrash is returned by a Hooks function to simulate the process
	// dying at that point: the engine returns at once, cleaning nothing up.
	ErrCrash = errors.New("simulated crash")
)

// Hooks let tests stop the engine at chosen points. A hook that returns an
// error (ErrCrash) makes the engine return it at once without cleaning up,
// as if the process had died there.
type Hooks struct {
	// Before runs after a step's intent is journaled, before its external
	// action; After runs after its outcome is journaled. (Without an After
	// hook a success's outcome is written with the run's next write, see
	// runner.carry; with one it is written first, as a write of its own.)
	Before func(runID string, step state.Step) error
	After  func(runID string, step state.Step) error
	// Renewed runs after each background renewal of a run's lease, with
	// its result.
	Renewed func(secretID string, err error)
	// KeeperStopped runs when a run's lease keeper stops renewing (the
	// lease released with the run's last write, lost, stale, or the run
	// returned).
	KeeperStopped func(secretID string)
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
	Events func(notify.Event)
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
	e.Metrics.Rotated(t.ID, t.Class, string(run.Status))
	if run.FinishedAt != nil {
		e.Metrics.RotationDuration.WithLabelValues(t.Class, string(run.Status)).Observe(run.FinishedAt.Sub(run.StartedAt).Seconds())
	}
}

// DefaultHolder names this process: host:pid:nonce. The random nonce
// tells apart processes that share a host name and a pid (containers that
// run rotator as PID 1); Engine adds a per-run suffix, so two runs in one
// process are told apart too.
func DefaultHolder() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s:%d:%s", h, os.Getpid(), randHex(4))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runHolder names one lease holder: the engine's Holder and a per-run
// nonce. Leases are never re-entered, so a second Run (or Rollback) of the
// same secret in this process is busy like one in another process.
func (e *Engine) runHolder() string {
	h := e.Holder
	if h == "" {
		h = DefaultHolder()
	}
	return h + "/" + randHex(3)
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

func (e *Engine) emit(ev notify.Event) {
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
	Trigger state.Trigger
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
	SecretID string
	RunID    string
	// Status is the run's status, or state.RunNotDue or
	// state.RunQuarantined when no run started.
	Status    state.RunStatus
	Step      state.Step
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
	sent := time.Now()
	// The lease and what the run starts from, in one round trip.
	lease, snap, err := e.DB.AcquireLeaseAndRead(ctx, t.ID, e.runHolder(), e.ttl())
	if errors.Is(err, state.ErrLeaseHeld) {
		return res, fmt.Errorf("%w: %s is held by %s until %s; try again later",
			ErrBusy, t.ID, lease.Holder, lease.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if lease.Token == 0 {
		return res, err
	}
	// Held from here on: a read error is the run's (below).
	lctx, keep := e.keepLease(ctx, &lease, sent)
	r := &runner{e: e, t: t, lease: lease}
	crashed := false
	defer func() {
		keep()
		if !crashed && !r.released {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.ttl()/3)
			_ = e.DB.ReleaseLease(rctx, lease)
			cancel()
		}
	}()
	res, err = r.advance(lctx, opts, snap, err)
	if errors.Is(err, ErrCrash) {
		crashed = true
	}
	if !crashed && lctx.Err() == nil {
		// Whatever is still carried (an outcome after which the run
		// stopped without writing) is written before the lease goes.
		if ferr := r.flush(lctx); ferr != nil && err == nil {
			err = ferr
		}
	}
	// Once the last write has released the lease, the keeper's context
	// ending (the safe time passing while the run reports) is no error of
	// the run's: its work is done and recorded.
	if lctx.Err() != nil && ctx.Err() == nil && !errors.Is(err, state.ErrLeaseLost) && !crashed && !r.released {
		if err == nil {
			err = fmt.Errorf("%s: %w", t.ID, context.Cause(lctx))
		} else {
			err = fmt.Errorf("%s: %w (%w)", t.ID, context.Cause(lctx), err)
		}
	}
	return res, err
}

// errLeaseStale ends the work of a process whose lease renewals have not
// succeeded for 2/3 of the TTL: the lease may be about to expire, and
// another process may take it then.
var errLeaseStale = fmt.Errorf("lease not renewed for 2/3 of its time-to-live (state database unreachable or slow): %w", state.ErrLeaseLost)

// leaseKeeper renews a lease and knows until when the work under it is
// safe: 2/3 of the TTL after the last renewal that succeeded, measured from
// when it was sent (the database set the expiry later than that, so the
// lease cannot expire before).
type leaseKeeper struct {
	e     *Engine
	mu    sync.Mutex
	lease state.Lease
	safe  time.Time // monotonic; work must end by then
	// releasing: the run's last write, which releases the lease, is sent
	// or being sent; a renewal refused now is that release, not a loss
	// (or a loss that the write's own fence reports). Only a refusal: a
	// renewal that gets no answer says nothing about the write, which
	// stays bounded by the safe time like any other work.
	releasing atomic.Bool
	// released: that write committed; there is nothing left to keep.
	released atomic.Bool
}

type leaseKeeperKey struct{}

func (k *leaseKeeper) safeUntil() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.safe
}

// renew extends the lease once, bounded so that a frozen connection cannot
// hold it past the safe time.
func (k *leaseKeeper) renew(ctx context.Context) error {
	ttl := k.e.ttl()
	sent := time.Now()
	deadline := sent.Add(ttl / 4)
	if s := k.safeUntil(); s.Before(deadline) {
		deadline = s
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	k.mu.Lock()
	cp := k.lease
	k.mu.Unlock()
	if err := k.e.DB.RenewLease(rctx, &cp, ttl); err != nil {
		return err
	}
	k.mu.Lock()
	if s := sent.Add(2 * ttl / 3); s.After(k.safe) {
		k.safe = s
	}
	k.lease.ExpiresAt = cp.ExpiresAt
	k.mu.Unlock()
	return nil
}

// actionContext bounds one external action by the lease: it starts only
// while the lease has at least min(timeout, TTL/3) left (renewing first
// when less is left; when that fails the action does not start), and its
// context, derived from the keeper's, ends when renewals stop succeeding
// for 2/3 of the TTL: before the lease could expire. While renewals
// succeed the lease cannot expire, and the action has its full timeout.
func (k *leaseKeeper) actionContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc, error) {
	need := min(timeout, k.e.ttl()/3)
	if time.Until(k.safeUntil()) < need {
		if err := k.renew(ctx); err != nil {
			return nil, nil, fmt.Errorf("renew the lease before an action: %w", err)
		}
	}
	if time.Until(k.safeUntil()) <= 0 {
		return nil, nil, errLeaseStale
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	return actx, cancel, nil
}

// actionContext is the context for one external action: bounded by the
// action timeout and, under a lease, by the lease (leaseKeeper).
func (e *Engine) actionContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if k, ok := ctx.Value(leaseKeeperKey{}).(*leaseKeeper); ok {
		return k.actionContext(ctx, e.actionTimeout())
	}
	actx, cancel := context.WithTimeout(ctx, e.actionTimeout())
	return actx, cancel, nil
}

// keepLease renews the lease in the background (every TTL/3, each renewal
// with a deadline). The returned context is cancelled when the lease is
// lost, or when no renewal has succeeded for 2/3 of the TTL, so the
// process stops its work (and its in-flight target action) before the
// lease can expire and another process take it. sent is when the lease was
// requested.
func (e *Engine) keepLease(ctx context.Context, l *state.Lease, sent time.Time) (context.Context, func()) {
	k := &leaseKeeper{e: e, lease: *l, safe: sent.Add(2 * e.ttl() / 3)}
	ctx, cancel := context.WithCancelCause(ctx)
	ctx = context.WithValue(ctx, leaseKeeperKey{}, k)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if h := e.Hooks.KeeperStopped; h != nil {
			defer h(l.SecretID)
		}
		tick := time.NewTicker(e.ttl() / 3)
		defer tick.Stop()
		stale := time.NewTimer(time.Until(k.safeUntil()))
		defer stale.Stop()
		refused := false // a renewal was refused while releasing
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-stale.C:
			case <-tick.C:
				if refused || k.released.Load() || !time.Now().Before(k.safeUntil()) {
					break
				}
				err := k.renew(ctx)
				if h := e.Hooks.Renewed; h != nil {
					h(l.SecretID, err)
				}
				if errors.Is(err, state.ErrLeaseLost) && k.releasing.Load() {
					// Released with the run's last write (or lost, which
					// that write's fence reports): nothing to renew, but
					// the write itself still ends by the safe time.
					refused = true
					break
				}
				if errors.Is(err, state.ErrLeaseLost) {
					e.log().Error("lease lost", "secret", l.SecretID, "holder", l.Holder)
					cancel(fmt.Errorf("lease taken over by another holder: %w", state.ErrLeaseLost))
					return
				}
				if err != nil {
					e.log().Warn("lease renewal failed", "secret", l.SecretID, "err", err)
				}
			}
			if k.released.Load() {
				return
			}
			if !time.Now().Before(k.safeUntil()) {
				e.log().Error("lease not renewed in time; stopping", "secret", l.SecretID, "holder", l.Holder)
				cancel(errLeaseStale)
				return
			}
			stale.Reset(time.Until(k.safeUntil()))
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
	// apply: cred is not (known to be) set at the target yet; publish
	// sets it (again: idempotent) before the first store publishes it.
	apply bool
	// adopted says what was adopted from the stores before the run
	// started (empty: nothing).
	adopted string
	// world is what the stores published when this process observed them
	// before deciding to go on (reconcile): each publish carries it to its
	// store as the expectation the store checks (Expect).
	world World
	// carry holds state writes that ride on the next batch instead of a
	// round trip of their own (send): the outcome of an action that
	// succeeded, and the run's next state when an action follows at once.
	// The next external action's intent batch always sends them first, so
	// nothing is acted on before what led to it is journaled; a crash
	// before they are sent leaves the run where a crash during the action
	// would, which a resumed run handles (it redoes the step: every step
	// is idempotent). dirty: the run itself is to be written (UpdateRun).
	carry []func(*state.Batch)
	dirty bool
	// maxRunVersion is the highest version any run of the secret recorded,
	// read with the secret (runs are only inserted under the lease).
	maxRunVersion int64
	// released: the run's last write gave the lease up (succeed).
	released bool
}

// send writes what is carried, then what fn queues, in one fenced,
// pipelined transaction: one round trip.
func (r *runner) send(ctx context.Context, fn func(b *state.Batch)) error {
	err := r.e.DB.InBatch(ctx, r.lease, func(b *state.Batch) error {
		for _, c := range r.carry {
			c(b)
		}
		if r.dirty && r.run != nil {
			b.UpdateRun(r.run)
		}
		if fn != nil {
			fn(b)
		}
		return nil
	})
	if err == nil {
		r.carry, r.dirty = nil, false
	}
	return err
}

// later queues fn for the next send.
func (r *runner) later(fn func(b *state.Batch)) { r.carry = append(r.carry, fn) }

// writeLater queues a write of the run (and fn) for the next send, which
// an external action's intent makes before the action starts.
func (r *runner) writeLater(fn func(b *state.Batch)) {
	if fn != nil {
		r.later(fn)
	}
	r.dirty = true
}

// flush sends what is carried, if anything.
func (r *runner) flush(ctx context.Context) error {
	if len(r.carry) == 0 && !r.dirty {
		return nil
	}
	return r.send(ctx, nil)
}

// expectAt is the expectation a publish to t.Publish[i] carries: the run
// id of what this process observed there as current ("" for nothing). Nil
// when the store was not observed (no fence: nothing to compare).
func (r *runner) expectAt(i int) *Expect {
	if i >= len(r.world.Stores) || r.world.Stores[i].Publication.String() != r.t.Publish[i].String() {
		return nil
	}
	var e Expect
	if cur := r.world.Stores[i].Current; cur != nil {
		e.RunID = cur.RunID
	}
	return &e
}

// fence is what the target checks before a destructive action of this run.
func (r *runner) fence() Fence {
	f := Fence{Token: r.lease.Token}
	if r.run != nil {
		f.RunID = r.run.ID
	}
	return f
}

// newRunID returns a random (version 4) UUID: a run's id, which stores
// also use as an idempotency token (AWS's ClientRequestToken).
func newRunID() string { return uuid.NewString() }

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

// advance carries the run on from snap, read with the lease (readErr is
// that read's error).
func (r *runner) advance(ctx context.Context, opts Options, snap state.Snapshot, readErr error) (Result, error) {
	e := r.e
	sec, run, maxRun, err := snap.Secret, snap.Run, snap.MaxVersion, readErr
	if errors.Is(err, state.ErrNotFound) {
		if err := e.DB.SyncSecrets(ctx, []state.SecretDef{{ID: r.t.ID, Class: r.t.Class}}); err != nil {
			return r.result(), err
		}
		sec, run, maxRun, err = e.DB.SecretRunAndMaxVersion(ctx, r.t.ID)
	}
	r.maxRunVersion = maxRun
	if err != nil {
		return r.result(), err
	}
	r.sec = sec
	resumed := run != nil
	// notDue answers a tick that may only start a run when the secret is
	// due; the cheap checks come before anything is observed.
	notDue := func() (Result, bool) {
		if !opts.IfDue {
			return Result{}, false
		}
		if r.sec.Status == state.SecretQuarantined {
			return Result{SecretID: r.t.ID, Status: "quarantined", Detail: "quarantined after repeated failures: `rotator resume --secret " + r.t.ID + "` lifts it"}, true
		}
		var due time.Time
		if opts.NextDue != nil {
			due = opts.NextDue(r.sec)
		} else if r.sec.NextDueAt != nil {
			due = *r.sec.NextDueAt
		}
		if e.now().Before(due) {
			return Result{SecretID: r.t.ID, Status: "not_due", WaitUntil: due}, true
		}
		if r.t.Allowed != nil && !r.t.Allowed(e.now()) {
			return Result{SecretID: r.t.ID, Status: "not_due", WaitUntil: due, Detail: "outside its window"}, true
		}
		return Result{}, false
	}
	if run == nil {
		if res, stop := notDue(); stop {
			return res, nil
		}
	}
	if sec.Status == state.SecretDrift {
		return r.driftResult(errors.New(sec.LastError)), nil
	}
	// Observe the world before anything can change a credential: a stale
	// run is ended, what the stores consistently publish is adopted, and
	// anything else stops the secret (drift).
	world, run, err := r.reconcile(ctx, sec, run)
	r.world = world
	if errors.Is(err, ErrDrift) {
		return r.driftResult(err), nil
	}
	var oerr *observeError
	if errors.As(err, &oerr) && run == nil && ctx.Err() == nil {
		// A store cannot say what it publishes: nothing may be done, and
		// the attempt counts as a failed run (retried at retry.next_run,
		// quarantined after quarantine_after), as a store failure would.
		return r.failUnobserved(ctx, opts, err)
	}
	if err != nil {
		return r.result(), r.redactErr(err)
	}
	if run == nil {
		if resumed {
			resumed = false
			if res, stop := notDue(); stop {
				return res, nil
			}
		}
		trigger := opts.Trigger
		if trigger == "" {
			trigger = state.TriggerManual
		}
		version, err := r.nextVersion(ctx, world)
		if err != nil {
			return r.result(), err
		}
		run = &state.Run{ID: newRunID(), SecretID: r.t.ID, Trigger: trigger, Attempt: r.sec.ConsecutiveFailures + 1,
			Status: state.RunRunning, Step: state.StepGenerate, Version: version, Old: r.sec.Current}
		// The run is recorded with the intent of its first action
		// (generate), in one round trip, before anything is done.
		adopted := r.adopted
		r.later(func(b *state.Batch) {
			b.InsertRun(run)
			if adopted != "" {
				// What the run starts from was adopted from the stores:
				// history shows it with the run.
				b.JournalStep(run.ID, state.StepObserve, 1, state.OutcomeAdopted, "", adopted)
			}
			b.Audit(r.t.ID, run.ID, "run_started", fmt.Sprintf("trigger %s, version %d, replacing %s", trigger, run.Version, toMeta(run.Old)))
		})
		e.log().Info("rotation started", "secret", r.t.ID, "run_id", run.ID, "version", run.Version, "trigger", trigger)
	} else {
		e.log().Info("resuming run", "secret", r.t.ID, "run_id", run.ID, "step", run.Step, "status", run.Status)
	}
	r.run = run
	if run.Sealed != nil {
		if err := r.unseal(); err != nil {
			// Once a store publishes the run's version it holds the new
			// credential: a lost or replaced state key does not strand the
			// run.
			if !r.credFromStores(ctx) {
				return r.result(), err
			}
			e.log().Warn("the run's sealed credential could not be opened; continuing with what the stores publish",
				"secret", r.t.ID, "run_id", run.ID, "err", err.Error())
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return r.result(), err
		}
		var wait bool
		var err error
		switch run.Step {
		case state.StepGenerate:
			err = r.generate(ctx)
		case state.StepPublish:
			err = r.publish(ctx)
		case state.StepVerify:
			wait, err = r.verify(ctx)
		case state.StepRetire:
			wait, err = r.retire(ctx)
		case state.StepMonitor:
			wait, err = r.monitor(ctx)
		case state.StepCompensate:
			err = r.compensate(ctx)
			wait = err == nil && run.Status == state.RunWaiting
			if err == nil && run.Status == state.RunNeedsAttention {
				// A later tick (or run) carries the compensation on.
				res := r.result()
				res.Resumed = resumed
				return res, nil
			}
		default:
			res := r.result()
			res.Resumed = resumed
			return res, nil
		}
		if errors.Is(err, ErrDrift) {
			return r.driftResult(err), nil
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
			held := run.Step == state.StepVerify && run.VerifyDeadline != nil && !e.now().Before(*run.VerifyDeadline)
			res.Held = held
			// A retire that failed is tried again by a later run, not by
			// sleeping here.
			if !opts.Wait || held || run.WaitUntil == nil || (run.Step == state.StepRetire && run.Error != "") {
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

// failUnobserved records a run that failed before doing anything because a
// store could not be observed.
func (r *runner) failUnobserved(ctx context.Context, opts Options, cause error) (Result, error) {
	trigger := opts.Trigger
	if trigger == "" {
		trigger = state.TriggerManual
	}
	version, err := r.nextVersion(ctx, World{})
	if err != nil {
		return r.result(), err
	}
	r.run = &state.Run{ID: newRunID(), SecretID: r.t.ID, Trigger: trigger, Attempt: r.sec.ConsecutiveFailures + 1,
		Status: state.RunRunning, Step: state.StepGenerate, Version: version, Old: r.sec.Current}
	if err := r.send(ctx, func(b *state.Batch) {
		b.InsertRun(r.run)
		b.JournalStep(r.run.ID, state.StepObserve, 1, state.OutcomeFailed, r.redact(cause.Error()), "nothing was done")
	}); err != nil {
		return r.result(), err
	}
	se := &stepError{step: state.StepGenerate, what: "observe", err: errors.New(r.redact(cause.Error())), attempts: 1}
	if err := r.finishFailed(ctx, state.StepGenerate, se.Error()); err != nil {
		return r.result(), err
	}
	return r.result(), nil
}

// driftResult is the answer for a secret in drift: nothing was done.
func (r *runner) driftResult(err error) Result {
	return Result{SecretID: r.t.ID, Status: state.RunDrift, Detail: err.Error(), Err: err}
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
	r.apply = sc.Apply
	return nil
}

// sealedCred is what is sealed into rotator_runs.sealed.
type sealedCred struct {
	Secret string            `json:"s"`
	Field  string            `json:"f,omitempty"`
	Extra  map[string]string `json:"x,omitempty"`
	// Apply: the rotator prepared the credential without setting it at
	// the target (GenerateRequest.Prepare); publish sets it first.
	Apply bool `json:"a,omitempty"`
}

func (r *runner) version() Version {
	return Version{Number: r.run.Version, RunID: r.run.ID, RotatedAt: r.run.StartedAt.UTC(), Credential: *r.cred}
}

func (r *runner) redact(s string) string {
	s = redactAll(s, r.t.Redact)
	if r.cred != nil {
		return Redact(s, r.cred.Secret)
	}
	return s
}

// action runs one external action with bounded retries, journaling each
// try: intent before, outcome after. fn returns a detail for the journal.
// It returns the last error (redacted) once the tries are spent or the
// error is Permanent.
func (r *runner) action(ctx context.Context, step state.Step, what string, fn func(ctx context.Context) (string, error)) error {
	e := r.e
	pol := r.t.Retry.normalized()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier, b.RandomizationFactor = pol.Initial, pol.Max, 2, 0
	b.MaxElapsedTime = 0
	b.Reset()
	var last error
	for attempt := 1; attempt <= pol.Attempts; attempt++ {
		id := new(int64)
		// Intent, before the external action, with what is carried: one
		// pipelined round trip.
		err := r.send(ctx, func(b *state.Batch) {
			b.StartStep(r.run.ID, step, attempt, id)
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
		actx, cancel, err := e.actionContext(ctx)
		if err != nil {
			return fmt.Errorf("%s %s not started: %w", step, what, err)
		}
		detail, err := fn(actx)
		if err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", e.actionTimeout(), err)
		}
		cancel()
		outcome := state.OutcomeOK
		if err != nil {
			outcome = state.OutcomeFailed
			last = err
		}
		errText := ""
		if err != nil {
			errText = r.redact(err.Error())
		}
		if what != "" {
			detail = strings.TrimSpace(what + " " + detail)
		}
		detail = r.redact(detail)
		finish := func(b *state.Batch) { b.FinishStep(*id, outcome, errText, detail) }
		if err == nil {
			// A success is journaled with the run's next write (the
			// next action's intent at the latest).
			r.later(finish)
		} else if ferr := r.send(ctx, finish); ferr != nil {
			return ferr
		}
		if e.Metrics != nil {
			e.Metrics.StepDuration.WithLabelValues(string(step), string(outcome)).Observe(e.now().Sub(start).Seconds())
		}
		e.log().Info("step", "secret", r.t.ID, "run_id", r.run.ID, "step", step, "attempt", attempt,
			"outcome", outcome, "duration_ms", e.now().Sub(start).Milliseconds(), "detail", detail, "err", errText)
		if err == nil {
			if h := e.Hooks.After; h != nil {
				// The hook runs once the outcome is journaled (tests stop
				// the process there); without a hook the outcome waits
				// for the next write.
				if err := r.flush(ctx); err != nil {
					return err
				}
				if err := h(r.run.ID, step); err != nil {
					return err
				}
			}
			return nil
		}
		if errors.Is(err, ErrFenced) {
			// A newer lease holder has acted at the target: this process
			// is stale. It stops here, compensating nothing; the holder
			// owns the run now.
			return fmt.Errorf("%s %s: %w", step, what, err)
		}
		if ctx.Err() != nil {
			// Shutting down (or the lease was lost or went stale): the step
			// stays where it is, journaled as interrupted, and resumes
			// later. It is not a failure of the rotation.
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
	step     state.Step
	what     string
	err      error
	attempts int
}

func (s *stepError) Error() string {
	w := string(s.step)
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

// write writes the run (and what is carried, and whatever else fn
// queues) in one fenced, pipelined transaction: one round trip.
func (r *runner) write(ctx context.Context, fn func(b *state.Batch)) error {
	r.dirty = true
	return r.send(ctx, fn)
}

func (r *runner) generate(ctx context.Context) error {
	e := r.e
	var cred Credential
	var unapplied bool
	err := r.action(ctx, state.StepGenerate, "", func(ctx context.Context) (string, error) {
		req := GenerateRequest{SecretID: r.t.ID, RunID: r.run.ID, Current: toMeta(r.run.Old), Fence: r.fence(), Prepare: true}
		if _, ok := r.t.Rotator.(Successor); ok {
			pub, err := r.published(ctx)
			if err != nil {
				return "", err
			}
			req.Published = pub
		}
		resp, err := r.t.Rotator.Generate(ctx, req)
		if err != nil {
			return "", err
		}
		cred, unapplied = resp.Credential, resp.Unapplied
		if toMeta(r.run.Old).IsZero() && !resp.Replaces.IsZero() {
			r.run.Old = fromMeta(resp.Replaces)
		}
		if cred.Secret.IsZero() {
			return "", Permanent(errors.New("rotator returned an empty secret"))
		}
		if unapplied {
			return fmt.Sprintf("new credential %s prepared; it is set at the target after staging, just before publish", cred.Meta()), nil
		}
		return fmt.Sprintf("new credential %s created and tested", cred.Meta()), nil
	})
	if err != nil {
		if isStepError(err) {
			return r.fail(ctx, state.StepGenerate, err)
		}
		return err
	}
	r.cred, r.apply = &cred, unapplied
	pt, _ := json.Marshal(sealedCred{Secret: cred.Secret.Reveal(), Field: cred.Field, Extra: cred.Extra, Apply: unapplied})
	r.run.Sealed = e.Key.Seal(pt, r.run.ID)
	r.run.New = fromMeta(cred.Meta())
	r.run.Step = state.StepPublish
	// Stage where the stores stage (AWS: AWSPENDING) before anything is
	// made current. The sealed credential is written with the first
	// stage's intent (or the publish's), before any store sees it.
	r.run.Detail = "staging"
	r.writeLater(nil)
	for _, p := range r.t.Publish {
		p := p
		err := r.action(ctx, state.StepStage, p.String(), func(ctx context.Context) (string, error) {
			return "", p.Store.Stage(ctx, StageRequest{Path: p.Path, Version: r.version()})
		})
		if err != nil {
			if isStepError(err) {
				return r.fail(ctx, state.StepPublish, err)
			}
			return err
		}
	}
	r.run.Detail = ""
	return nil
}

func (r *runner) publish(ctx context.Context) error {
	e := r.e
	if r.apply {
		// A credential changed in place (single-role) is set at the
		// target only now, staged already, and published right after.
		// A failure here is a failed generate: compensation puts the old
		// password back from what the stores publish.
		err := r.action(ctx, state.StepGenerate, "re-key "+toMeta(r.run.New).String(), func(ctx context.Context) (string, error) {
			_, err := r.t.Rotator.Generate(ctx, GenerateRequest{SecretID: r.t.ID, RunID: r.run.ID, Current: toMeta(r.run.Old), Fence: r.fence(), Apply: r.cred})
			if err != nil {
				return "", err
			}
			return "set at the target and tested; publishing now", nil
		})
		if err != nil {
			if isStepError(err) {
				return r.fail(ctx, state.StepGenerate, err)
			}
			return err
		}
	}
	for i, p := range r.t.Publish {
		// The store checks, atomically with its write, that what it
		// publishes is still what this process observed before deciding:
		// a process whose observation was overtaken (it lost its lease
		// while paused, its write was delayed) is refused there
		// (ErrStoreMoved, a kind of ErrFenced: the run stops, compensating
		// nothing).
		expect := r.expectAt(i)
		err := r.action(ctx, state.StepPublish, p.String(), func(ctx context.Context) (string, error) {
			if err := p.Store.Publish(ctx, PublishRequest{Path: p.Path, Version: r.version(), Expect: expect}); err != nil {
				return "", err
			}
			return fmt.Sprintf("version %d is current", r.run.Version), nil
		})
		if err != nil {
			if isStepError(err) {
				return r.fail(ctx, state.StepPublish, fmt.Errorf("store %s: %w", p, err))
			}
			if errors.Is(err, ErrStoreMoved) && ctx.Err() == nil {
				// The store moved, but this process may still own the run
				// (a person or a tool wrote the store, not a newer lease
				// holder): then stopping here would leave the target
				// changed (single-role: re-keyed in place) with no store
				// publishing it. fail's first write is fenced by the
				// lease, so a process that really is stale stops there,
				// and every compensating action is fenced too.
				return r.fail(ctx, state.StepPublish, fmt.Errorf("store %s: %w", p, err))
			}
			return err
		}
	}
	now := e.now()
	deadline := now.Add(r.t.Grace)
	r.run.PublishedAt, r.run.VerifyDeadline = &now, &deadline
	r.run.Step = state.StepVerify
	// Written with verify's decision: before a wait, or with the retire's
	// intent. A crash before leaves the run at publish, which a resumed
	// run repeats (the stores already hold its version: nothing to do).
	prevVersion, prevRun := r.sec.CurrentVersion, r.sec.CurrentRunID
	detail := fmt.Sprintf("version %d (%s) to %s", r.run.Version, toMeta(r.run.New), r.storeList())
	r.writeLater(func(b *state.Batch) {
		b.SetCurrent(r.t.ID, r.run.Version, r.run.ID, r.run.New, prevVersion, prevRun, r.run.Old)
		b.Audit(r.t.ID, r.run.ID, "published", detail)
	})
	return nil
}

func (r *runner) storeList() string {
	var names []string
	for _, p := range r.t.Publish {
		names = append(names, p.String())
	}
	return strings.Join(names, ", ")
}

// evaluate runs the verify checks once. When one does not pass, next is
// when the soonest of those that did not pass can change its answer: a
// delay's end, or a polling check's interval from now.
func (r *runner) evaluate(ctx context.Context) (ok bool, pending []string, next time.Time) {
	e := r.e
	now := e.now()
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	old := toMeta(r.run.Old)
	if !old.IsZero() {
		resp, err := r.t.Rotator.Clients(ctx, ClientsRequest{SecretID: r.t.ID, Old: old})
		switch {
		case errors.Is(err, ErrUnsupported):
		case err != nil:
			pending = append(pending, "client count failed: "+r.redact(err.Error()))
			soonest(now.Add(r.pollEvery(r.t.ClientsInterval)))
		case resp.Count > 0:
			d := resp.Detail
			if d == "" {
				d = fmt.Sprintf("%d clients still use %s", resp.Count, old)
			}
			pending = append(pending, d)
			soonest(now.Add(r.pollEvery(r.t.ClientsInterval)))
		}
	}
	req := CheckRequest{SecretID: r.t.ID, New: r.version().Meta(), Old: old, Now: now}
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
		default:
			continue
		}
		if err == nil && !res.RecheckAt.IsZero() {
			soonest(res.RecheckAt)
			continue
		}
		var every time.Duration
		if p, ok := c.(Poller); ok {
			every = p.PollInterval()
		}
		soonest(now.Add(r.pollEvery(every)))
	}
	return len(pending) == 0, pending, next
}

// DefaultPoll is the pace of a polling check that sets no interval, and
// of the monitor step.
const DefaultPoll = 5 * time.Second

// pollEvery is how often a polling check whose own interval is every is
// asked again: Target.Poll when set (tests), else every, else
// DefaultPoll.
func (r *runner) pollEvery(every time.Duration) time.Duration {
	switch {
	case r.t.Poll > 0:
		return r.t.Poll
	case every > 0:
		return every
	}
	return DefaultPoll
}

// poll is the monitor step's pace (and the floor of a held run's).
func (r *runner) poll() time.Duration { return r.pollEvery(0) }

func (r *runner) verify(ctx context.Context) (bool, error) {
	e := r.e
	ok, pending, recheck := r.evaluate(ctx)
	now := e.now()
	if ok {
		r.run.Step, r.run.Status, r.run.WaitUntil, r.run.Detail = state.StepRetire, state.RunRunning, nil, "clients moved"
		r.journalLater(state.StepVerify, state.OutcomeOK, "", "all checks passed")
		return false, nil
	}
	detail := strings.Join(pending, "; ")
	deadline := now
	if r.run.VerifyDeadline != nil {
		deadline = *r.run.VerifyDeadline
	}
	if now.Before(deadline) {
		// Look again when the soonest pending check can change its
		// answer (a delay wakes exactly when it ends), never after the
		// grace ends.
		next := recheck
		if next.IsZero() {
			next = now.Add(r.poll())
		}
		if next.After(deadline) {
			next = deadline
		}
		r.run.Status, r.run.WaitUntil, r.run.Detail = state.RunWaiting, &next, "waiting for clients: "+detail
		return true, r.write(ctx, nil)
	}
	if r.t.OnTimeout == "proceed" {
		r.run.Step, r.run.Status, r.run.WaitUntil, r.run.Detail = state.StepRetire, state.RunRunning, nil, "grace ended, proceeding: "+detail
		r.journalLater(state.StepVerify, state.OutcomeTimeout, "", "grace ended with clients on the old credential; on_timeout is proceed: "+detail)
		return false, nil
	}
	// Hold: both credentials stay valid; look again later and tell people once.
	next := now.Add(maxDur(r.poll(), time.Minute))
	first := !strings.HasPrefix(r.run.Detail, state.HeldDetailPrefix)
	r.run.Status, r.run.WaitUntil, r.run.Detail = state.RunWaiting, &next, state.HeldDetailPrefix+" grace ended with clients on the old credential; both stay valid: "+detail
	if first {
		if err := r.journalOnce(ctx, state.StepVerify, state.OutcomeHeld, "", r.run.Detail); err != nil {
			return true, err
		}
		e.emit(notify.Event{Kind: notify.KindRotationFailed, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: state.StepVerify,
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

// journalLater queues what journalOnce writes for the next send: a
// decision that lets the run go on to an action, whose intent sends it.
func (r *runner) journalLater(step state.Step, outcome state.Outcome, errText, detail string) {
	runID, detail := r.run.ID, r.redact(detail)
	r.writeLater(func(b *state.Batch) {
		b.JournalStep(runID, step, 1, outcome, errText, detail)
	})
}

// journalOnce records a step outcome that has no external action of its
// own (verify decisions) together with the run.
func (r *runner) journalOnce(ctx context.Context, step state.Step, outcome state.Outcome, errText, detail string) error {
	return r.write(ctx, func(b *state.Batch) {
		b.JournalStep(r.run.ID, step, 1, outcome, errText, r.redact(detail))
	})
}

func (r *runner) retire(ctx context.Context) (bool, error) {
	e := r.e
	old := toMeta(r.run.Old)
	if !old.IsZero() && old != toMeta(r.run.New) {
		// The live credential is never disabled: every store must publish
		// this run's version, and none the credential about to be retired.
		ok, err := r.retireAllowed(ctx, old)
		if err != nil && isStepError(err) {
			return r.retireLater(ctx, err)
		}
		if !ok || err != nil {
			return false, err
		}
		err = r.action(ctx, state.StepRetire, old.String(), func(ctx context.Context) (string, error) {
			return "disabled", r.t.Rotator.Retire(ctx, RetireRequest{SecretID: r.t.ID, Old: old, New: toMeta(r.run.New), Terminate: r.t.Terminate, Fence: r.fence()})
		})
		if err != nil {
			if !isStepError(err) {
				return false, err
			}
			return r.retireLater(ctx, err)
		}
	}
	now := e.now()
	until := now.Add(r.t.Monitor)
	r.run.RetiredAt, r.run.MonitorUntil, r.run.Step, r.run.Status, r.run.WaitUntil, r.run.Error = &now, &until, state.StepMonitor, state.RunRunning, nil, ""
	r.run.Detail = "retired " + old.String()
	// Written with the monitor's intent.
	runID := r.run.ID
	r.writeLater(func(b *state.Batch) {
		b.Audit(r.t.ID, runID, "retired", old.String())
	})
	return false, nil
}

// retireLater leaves a run whose retire could not be done (or decided)
// waiting: the new version is published and valid, the old one is still
// valid too. Nothing is broken: a later run tries again.
func (r *runner) retireLater(ctx context.Context, err error) (bool, error) {
	e := r.e
	next := e.now().Add(max(r.t.Retry.normalized().Max, time.Second))
	first := r.run.Error == ""
	r.run.Status, r.run.WaitUntil, r.run.Error = state.RunWaiting, &next, err.Error()
	r.run.Detail = "retire failed; both credentials stay valid; retrying at " + next.UTC().Format(time.RFC3339)
	if first {
		e.emit(notify.Event{Kind: notify.KindRotationFailed, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: state.StepRetire,
			Error: err.Error(), Channel: r.t.Channel, NextAttempt: next,
			Commands: []string{"rotator run --secret " + r.t.ID, "rotator rollback --secret " + r.t.ID}})
	}
	return true, r.write(ctx, nil)
}

func (r *runner) monitor(ctx context.Context) (bool, error) {
	e := r.e
	err := r.action(ctx, state.StepMonitor, toMeta(r.run.New).String(), func(ctx context.Context) (string, error) {
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
	r.run.Status, r.run.Step, r.run.FinishedAt, r.run.WaitUntil, r.run.Sealed = state.RunSucceeded, state.StepDone, &now, nil, nil
	r.run.Detail = fmt.Sprintf("version %d (%s) is current", r.run.Version, toMeta(r.run.New))
	var next *time.Time
	if r.t.NextDue != nil {
		n := r.t.NextDue(now)
		next = &n
	}
	// The last write of the run gives the lease up in the same round
	// trip (the keeper, told first, takes a renewal refused from here on
	// for the release it is).
	k, _ := ctx.Value(leaseKeeperKey{}).(*leaseKeeper)
	if k != nil {
		k.releasing.Store(true)
	}
	runID, detail := r.run.ID, r.run.Detail
	success := func(b *state.Batch) {
		b.RecordSuccess(r.t.ID, next)
		b.Audit(r.t.ID, runID, "rotated", detail)
	}
	final := func(b *state.Batch) {
		success(b)
		if k != nil {
			b.ReleaseLease(r.lease)
		}
	}
	err := r.write(ctx, final)
	if err != nil && !errors.Is(err, state.ErrLeaseLost) && ctx.Err() == nil {
		// Once more (a pooled connection the server ended fails the
		// first write only). Had the first one committed after all, this
		// one repeats it: the same run row, the success again, one more
		// audit line.
		err = r.write(ctx, final)
	}
	if err != nil {
		if k != nil {
			k.releasing.Store(false)
		}
		// The run stays dirty (succeeded, in memory) and Run flushes it:
		// the secret's record of the success goes with it, or the run's
		// row would say succeeded while the secret stays due with its
		// failures counted.
		r.later(success)
		return err
	}
	if k != nil {
		k.released.Store(true)
		r.released = true
	}
	e.observeRun(r.t, r.run)
	e.log().Info("rotation succeeded", "secret", r.t.ID, "run_id", r.run.ID, "version", r.run.Version, "credential", toMeta(r.run.New).String())
	e.emit(notify.Event{Kind: notify.KindRotationSucceeded, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Channel: r.t.Channel, Detail: r.run.Detail})
	return nil
}

// fail ends a run that failed before its version was (fully) published:
// the compensation (stores put back, staged versions removed, the new
// credential discarded) runs as journaled actions (see compensate), and
// only when it is complete is the run recorded as failed.
func (r *runner) fail(ctx context.Context, step state.Step, cause error) error {
	r.run.Error = r.redact(cause.Error())
	r.run.Detail = failedAtPrefix + string(step) + "; putting the stores back"
	r.run.Step = state.StepCompensate
	if err := r.write(ctx, nil); err != nil {
		return err
	}
	return r.compensate(ctx)
}

// finishFailed records a run as failed once its compensation is complete.
func (r *runner) finishFailed(ctx context.Context, step state.Step, msg string) error {
	e := r.e
	cctx := context.WithoutCancel(ctx)
	now := e.now()
	r.run.Status, r.run.Step, r.run.Error, r.run.FinishedAt, r.run.WaitUntil, r.run.Sealed = state.RunFailed, step, msg, &now, nil, nil
	r.run.Detail = failedAtPrefix + string(step) + "; the old credential " + toMeta(r.run.Old).String() + " is still valid and published"
	var retry *time.Time
	if r.t.RetryAt != nil {
		// From the start of the failed attempt: the instant the state
		// records as last_attempt_at, from which the schedule sync
		// recomputes the same retry time.
		began := r.run.StartedAt
		if began.IsZero() {
			began = now
		}
		n := r.t.RetryAt(began)
		retry = &n
	}
	quarantine := r.t.QuarantineAfter > 0 && r.sec.ConsecutiveFailures+1 >= r.t.QuarantineAfter
	err := r.write(cctx, func(b *state.Batch) {
		b.RecordFailure(r.t.ID, state.RunFailed, msg, retry)
		if quarantine {
			b.Quarantine(r.t.ID, fmt.Sprintf("%d consecutive failed runs", r.sec.ConsecutiveFailures+1))
		}
		b.Audit(r.t.ID, r.run.ID, "failed", msg)
	})
	if err != nil {
		return err
	}
	if quarantine {
		e.log().Error("secret quarantined", "secret", r.t.ID, "consecutive_failures", r.sec.ConsecutiveFailures+1)
		e.emit(notify.Event{Kind: notify.KindQuarantined, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: step, Error: msg, Channel: r.t.Channel,
			Detail:   fmt.Sprintf("%d consecutive failed runs; no more automatic attempts", r.sec.ConsecutiveFailures+1),
			Commands: []string{"rotator history --secret " + r.t.ID, "rotator resume --secret " + r.t.ID}})
	}
	e.observeRun(r.t, r.run)
	e.log().Error("rotation failed", "secret", r.t.ID, "run_id", r.run.ID, "step", step, "err", msg)
	ev := notify.Event{Kind: notify.KindRotationFailed, SecretID: r.t.ID, Class: r.t.Class, RunID: r.run.ID, Step: step, Error: msg,
		Attempt: r.run.Attempt, MaxAttempts: r.t.QuarantineAfter, Channel: r.t.Channel,
		Commands: []string{"rotator run --secret " + r.t.ID, "rotator history --secret " + r.t.ID}}
	if retry != nil && !quarantine {
		ev.NextAttempt = *retry
	}
	e.emit(ev)
	return nil
}
