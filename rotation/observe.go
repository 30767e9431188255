package rotation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/state"
)

// The world is the truth, the journal a record (DESIGN.md, "The safety
// model"). Before an action that can change or disable a credential the
// engine observes what every store publishes, and compares it with what
// the state database says. This file holds that observation and the
// decisions it leads to:
//
//   - the stores agree with the journal: go on;
//   - the stores agree with each other on another version, and it logs in:
//     adopt it (the journal was restored from a backup, or another process
//     finished a run this one lost track of) and say so in history;
//   - an unfinished run whose version the stores no longer publish (nor the
//     version it replaces) is stale: it is ended as superseded without any
//     action at the target, then the above applies;
//   - anything else (stores that disagree, a published credential that
//     does not log in) is drift: the secret is marked, people are told, and
//     nothing is touched until `rotator adopt` is run.

// StoreView is what one publication holds, metadata only.
type StoreView struct {
	Publication Publication
	DescribeResponse
}

// World is what every store of a secret publishes.
type World struct {
	Stores []StoreView
}

// observeError: a store could not say what it publishes.
type observeError struct{ err error }

func (e *observeError) Error() string { return e.err.Error() }
func (e *observeError) Unwrap() error { return e.err }

// ErrDrift: the journal and the world disagree in a way the engine does not
// resolve by itself. The secret is marked drift until `rotator adopt`.
var ErrDrift = errors.New("state drift")

// observe describes every publication, each within the action timeout. An
// unreachable store is an error: nothing may be decided without it.
func (e *Engine) observe(ctx context.Context, t Target) (World, error) {
	w := World{Stores: make([]StoreView, 0, len(t.Publish))}
	for _, p := range t.Publish {
		actx, cancel := context.WithTimeout(ctx, e.actionTimeout())
		d, err := p.Store.Describe(actx, DescribeRequest{Path: p.Path})
		cancel()
		if err != nil {
			return w, &observeError{fmt.Errorf("observe %s: read what it publishes: %w", p, err)}
		}
		w.Stores = append(w.Stores, StoreView{Publication: p, DescribeResponse: d})
	}
	return w, nil
}

// sameVersion reports whether two published versions are the same one.
func sameVersion(a, b *VersionMeta) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.RunID != b.RunID || a.Number != b.Number || a.Username != b.Username {
		return false
	}
	return a.Fingerprint == "" || b.Fingerprint == "" || a.Fingerprint == b.Fingerprint
}

func describeVersion(v *VersionMeta) string {
	if v == nil {
		return "nothing"
	}
	s := fmt.Sprintf("version %d", v.Number)
	if v.Username != "" {
		s += " (" + v.Username + ")"
	}
	if v.RunID != "" {
		s += " of run " + v.RunID
	}
	return s
}

// Current is the version every store that publishes anything agrees on:
// nil when no store publishes anything. agree is false (with the
// differences) when stores publish different versions.
func (w World) Current() (cur *VersionMeta, agree bool, diffs []string) {
	return w.agreed(func(s StoreView) *VersionMeta { return s.Current })
}

// Previous is Current for the previous versions.
func (w World) Previous() (*VersionMeta, bool, []string) {
	return w.agreed(func(s StoreView) *VersionMeta { return s.Previous })
}

func (w World) agreed(pick func(StoreView) *VersionMeta) (*VersionMeta, bool, []string) {
	var first *VersionMeta
	var firstAt string
	agree := true
	var diffs []string
	for _, s := range w.Stores {
		v := pick(s)
		if v == nil {
			continue
		}
		if first == nil {
			first, firstAt = v, s.Publication.String()
			continue
		}
		if !sameVersion(first, v) {
			agree = false
			diffs = append(diffs, fmt.Sprintf("%s publishes %s but %s publishes %s", firstAt, describeVersion(first), s.Publication, describeVersion(v)))
		}
	}
	return first, agree, diffs
}

// MaxNumber is the highest version number any store has recorded.
func (w World) MaxNumber() int64 {
	var n int64
	for _, s := range w.Stores {
		for _, v := range []*VersionMeta{s.Current, s.Previous, s.Pending} {
			if v != nil && v.Number > n {
				n = v.Number
			}
		}
	}
	return n
}

// publishesCurrent reports whether any store publishes a credential of
// username (or key id) as current.
func (w World) publishesCurrent(m CredentialMeta) (string, bool) {
	if m.Username == "" {
		return "", false
	}
	for _, s := range w.Stores {
		// A username with several credentials (a Redis user's passwords)
		// is told apart by key id; a store that records none is taken
		// to publish m (the careful answer).
		if s.Current != nil && s.Current.Username == m.Username &&
			(m.KeyID == "" || s.Current.KeyID == "" || s.Current.KeyID == m.KeyID) {
			return s.Publication.String(), true
		}
	}
	return "", false
}

// journalSays describes what the state database records as current.
func journalSays(sec state.Secret) string {
	if sec.CurrentRunID == "" && sec.CurrentVersion == 0 {
		return "nothing"
	}
	s := fmt.Sprintf("version %d", sec.CurrentVersion)
	if sec.Current.Username != "" {
		s += " (" + sec.Current.Username + ")"
	}
	if sec.CurrentRunID != "" {
		s += " of run " + sec.CurrentRunID
	}
	return s
}

// matchesJournal reports whether v is the version the journal records as
// current.
func matchesJournal(v *VersionMeta, sec state.Secret) bool {
	return v != nil && v.RunID == sec.CurrentRunID && v.Number == sec.CurrentVersion
}

// verdict is what reconciling the journal with the world decided.
type verdict struct {
	// adopt is the credential the stores publish, with its secret read
	// back and tested, when the journal must take it as current.
	adopt *Version
	// prev is the previous version the stores agree on, if any.
	prev *VersionMeta
	// stale is why the unfinished run no longer matches the world.
	stale string
	// drift lists the differences that stop the secret.
	drift []string
}

// judge compares the journal (sec, and run when one is unfinished) with
// the world. It reads the published credential back and tests it at the
// target before proposing to adopt it.
func (r *runner) judge(ctx context.Context, w World, sec state.Secret, run *state.Run) verdict {
	var v verdict
	cur, agree, diffs := w.Current()
	if run != nil {
		// An unfinished run is consistent with the world while every store
		// publishes either its version or the one it replaces.
		var odd []string
		for _, s := range w.Stores {
			if s.Current == nil {
				continue
			}
			if s.Current.RunID == run.ID || (s.Current.RunID == sec.CurrentRunID && s.Current.Number == sec.CurrentVersion) {
				continue
			}
			odd = append(odd, fmt.Sprintf("%s publishes %s", s.Publication, describeVersion(s.Current)))
		}
		if len(odd) == 0 {
			return v
		}
		v.stale = fmt.Sprintf("run %s (version %d) is stale: %s, neither this run's version nor the one it replaces (%s)",
			run.ID, run.Version, strings.Join(odd, "; "), journalSays(sec))
	}
	switch {
	case cur == nil:
		// Nothing published anywhere: a first rotation (or new store
		// paths); the journal is all there is.
		return v
	case !agree:
		v.drift = diffs
		return v
	case run == nil && matchesJournal(cur, sec):
		return v
	}
	// The stores agree on a version the journal does not record as
	// current: adopt it if it works.
	got, err := r.readAgreed(ctx, w, cur)
	if err != nil {
		v.drift = append(v.drift, fmt.Sprintf("the stores publish %s, the state database says %s, and the published credential could not be tested: %s",
			describeVersion(cur), journalSays(sec), r.redactWith(err.Error(), got)))
		return v
	}
	v.adopt = got
	if p, ok, _ := w.Previous(); ok {
		v.prev = p
	}
	return v
}

// readAgreed reads the agreed current version back from the first store
// that publishes it and tests it at the target.
func (r *runner) readAgreed(ctx context.Context, w World, cur *VersionMeta) (*Version, error) {
	var lastErr error
	for _, s := range w.Stores {
		if !sameVersion(s.Current, cur) {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, r.e.actionTimeout())
		ver, err := s.Publication.Store.Read(actx, ReadRequest{Path: s.Publication.Path, Which: Current})
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("read %s: %w", s.Publication, err)
			continue
		}
		actx, cancel = context.WithTimeout(ctx, r.e.actionTimeout())
		err = r.t.Rotator.Test(actx, TestRequest{SecretID: r.t.ID, Credential: ver.Credential})
		cancel()
		if err != nil {
			return &ver, fmt.Errorf("%s (published by %s) does not work: %w", describeVersion(cur), s.Publication, err)
		}
		return &ver, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no store could give it back")
	}
	return nil, lastErr
}

func (r *runner) redactWith(s string, v *Version) string {
	s = r.redact(s)
	if v != nil {
		s = Redact(s, v.Credential.Secret)
	}
	return s
}

// reconcile observes the world and brings the journal in line with it
// before the run does anything: it ends a stale run (touching nothing at the
// target), adopts what the stores consistently publish, or marks the
// secret drift (ErrDrift). It returns the run to continue (nil when there
// is none, or it was ended).
func (r *runner) reconcile(ctx context.Context, sec state.Secret, run *state.Run) (World, *state.Run, error) {
	e := r.e
	w, err := e.observe(ctx, r.t)
	if err != nil {
		return w, run, err
	}
	v := r.judge(ctx, w, sec, run)
	if v.stale != "" {
		if err := r.supersede(ctx, run, v.stale); err != nil {
			return w, run, err
		}
		run = nil
		// Judge again without the run: adopt what the stores publish.
		v = r.judge(ctx, w, r.sec, nil)
	}
	if len(v.drift) > 0 {
		return w, run, r.markDrift(ctx, v.drift)
	}
	if v.adopt != nil {
		if err := r.adopt(ctx, sec, *v.adopt, v.prev, "adopted"); err != nil {
			return w, run, err
		}
	}
	return w, run, nil
}

// supersede ends a stale run without any action at the target or the
// stores: whatever it did has been overtaken by what the stores publish,
// and undoing it could disable the live credential.
func (r *runner) supersede(ctx context.Context, run *state.Run, why string) error {
	e := r.e
	now := e.now()
	run.Status, run.FinishedAt, run.WaitUntil, run.Sealed = state.RunFailed, &now, nil, nil
	run.Error = "superseded: " + why
	run.Detail = "superseded; nothing was changed at the target or the stores"
	saved := r.run
	r.run = run
	err := r.write(ctx, func(b *state.Batch) {
		b.JournalStep(run.ID, state.StepObserve, 1, state.OutcomeSuperseded, "", why)
		b.Audit(r.t.ID, run.ID, "superseded", why+"; nothing was changed at the target or the stores")
	})
	r.run = saved
	if err != nil {
		return err
	}
	e.log().Warn("stale run superseded", "secret", r.t.ID, "run_id", run.ID, "why", why)
	return nil
}

// adopt records ver as the current version (and prev as the previous one)
// and says so in the audit log. The secret becomes active.
func (r *runner) adopt(ctx context.Context, sec state.Secret, ver Version, prev *VersionMeta, action string) error {
	e := r.e
	cur := fromMeta(ver.Credential.Meta())
	var prevNum int64
	var prevRun string
	var prevMeta state.Meta
	if prev != nil {
		prevNum, prevRun, prevMeta = prev.Number, prev.RunID, state.Meta{Username: prev.Username, KeyID: prev.KeyID}
	}
	detail := fmt.Sprintf("the stores publish %s (it logs in); the state database said %s: recorded what the stores publish",
		describeVersion(&VersionMeta{Number: ver.Number, RunID: ver.RunID, Username: ver.Credential.Username}), journalSays(sec))
	err := r.send(ctx, func(b *state.Batch) {
		b.SetCurrent(r.t.ID, ver.Number, ver.RunID, cur, prevNum, prevRun, prevMeta)
		b.SetStatus(r.t.ID, state.SecretActive)
		b.Audit(r.t.ID, "", action, detail)
	})
	r.adopted = detail
	if err != nil {
		return err
	}
	r.sec.CurrentVersion, r.sec.CurrentRunID, r.sec.Current = ver.Number, ver.RunID, cur
	r.sec.PreviousVersion, r.sec.PreviousRunID, r.sec.Previous = prevNum, prevRun, prevMeta
	r.sec.Status = state.SecretActive
	e.log().Warn("adopted what the stores publish", "secret", r.t.ID, "detail", detail)
	return nil
}

// markDrift stops the secret: status drift, the differences in its last
// error and the audit log, one event. Nothing else is touched.
func (r *runner) markDrift(ctx context.Context, diffs []string) error {
	e := r.e
	sort.Strings(diffs)
	detail := "the state database and the stores disagree: " + strings.Join(diffs, "; ") +
		". Nothing was changed. Check what the stores publish, then run `rotator adopt --secret " + r.t.ID + "`"
	first := r.sec.Status != state.SecretDrift
	err := r.send(ctx, func(b *state.Batch) {
		b.MarkDrift(r.t.ID, detail)
		if first {
			b.Audit(r.t.ID, "", "drift", detail)
		}
	})
	if err != nil {
		return err
	}
	r.sec.Status = state.SecretDrift
	if first {
		e.log().Error("drift", "secret", r.t.ID, "detail", detail)
		e.emit(notify.Event{Kind: notify.KindDrift, SecretID: r.t.ID, Class: r.t.Class, Channel: r.t.Channel, Error: detail,
			Commands: []string{"rotator status", "rotator adopt --secret " + r.t.ID}})
	}
	return fmt.Errorf("%s: %w: %s", r.t.ID, ErrDrift, detail)
}

// nextVersion is the number of a new run's version: above every number the
// state database or any store has recorded, so a number names one
// credential forever, across rollbacks and restores.
func (r *runner) nextVersion(ctx context.Context, w World) (int64, error) {
	n := max(r.sec.CurrentVersion, r.sec.PreviousVersion, w.MaxNumber())
	return max(n, r.maxRunVersion) + 1, nil
}

// AdoptReport says what `rotator adopt` observed and did.
type AdoptReport struct {
	SecretID string
	// Journal is what the state database recorded as current.
	Journal string
	// Stores is what each store publishes as current.
	Stores []string
	// Differences lists where journal and world disagree (empty: in line).
	Differences []string
	// Adopted is set when the journal now records what the stores publish.
	Adopted string
	// Superseded names an unfinished run that was ended.
	Superseded string
}

// Adopt is the operator's way out of drift: it observes what the stores
// publish, and when they agree and the published credential logs in it
// records that as current, ends an unfinished run that no longer matches
// (touching nothing at the target) and makes the secret active again. With
// apply false it only reports. When the stores disagree it changes nothing
// and says what differs.
func (e *Engine) Adopt(ctx context.Context, t Target, apply bool) (AdoptReport, error) {
	rep := AdoptReport{SecretID: t.ID}
	sent := time.Now()
	lease, err := e.DB.AcquireLease(ctx, t.ID, e.runHolder(), e.ttl())
	if errors.Is(err, state.ErrLeaseHeld) {
		return rep, fmt.Errorf("%w: %s is held by %s until %s; try again later",
			ErrBusy, t.ID, lease.Holder, lease.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if err != nil {
		return rep, err
	}
	lctx, keep := e.keepLease(ctx, &lease, sent)
	defer func() { keep(); _ = e.DB.ReleaseLease(context.WithoutCancel(ctx), lease) }()
	ctx = lctx

	sec, run, err := e.DB.SecretAndActiveRun(ctx, t.ID)
	if err != nil {
		return rep, err
	}
	r := &runner{e: e, t: t, lease: lease, sec: sec}
	w, err := e.observe(ctx, t)
	if err != nil {
		return rep, r.redactErr(err)
	}
	rep.Journal = journalSays(sec)
	for _, s := range w.Stores {
		rep.Stores = append(rep.Stores, fmt.Sprintf("%s: %s", s.Publication, describeVersion(s.Current)))
	}
	v := r.judge(ctx, w, sec, run)
	if v.stale != "" {
		rep.Differences = append(rep.Differences, v.stale)
		rep.Superseded = run.ID
		v = r.judge(ctx, w, sec, nil)
	}
	rep.Differences = append(rep.Differences, v.drift...)
	if v.adopt != nil {
		rep.Differences = append(rep.Differences, fmt.Sprintf("the stores publish %s; the state database says %s",
			describeVersion(&VersionMeta{Number: v.adopt.Number, RunID: v.adopt.RunID, Username: v.adopt.Credential.Username}), journalSays(sec)))
	}
	if !apply || len(v.drift) > 0 {
		return rep, nil
	}
	if rep.Superseded != "" {
		if err := r.supersede(ctx, run, v.stale+" (ended by rotator adopt)"); err != nil {
			return rep, err
		}
	}
	if v.adopt != nil {
		if err := r.adopt(ctx, sec, *v.adopt, v.prev, "adopted"); err != nil {
			return rep, err
		}
		rep.Adopted = describeVersion(&VersionMeta{Number: v.adopt.Number, RunID: v.adopt.RunID, Username: v.adopt.Credential.Username})
	}
	if sec.Status == state.SecretDrift && v.adopt == nil {
		// The world already matches the journal: lift the drift mark.
		if err := e.DB.InBatch(ctx, lease, func(b *state.Batch) error {
			b.SetStatus(t.ID, state.SecretActive)
			b.Audit(t.ID, "", "adopted", "the stores publish "+journalSays(sec)+", as recorded; drift lifted")
			return nil
		}); err != nil {
			return rep, err
		}
		rep.Adopted = journalSays(sec)
	}
	return rep, nil
}

// retireAllowed observes the stores before old is disabled: it may be only
// when every store publishes this run's version and none publishes old as
// current. Otherwise the run is reconciled (ended as superseded, or the
// secret marked drift) and retireAllowed reports false; the run is then no
// longer active (drift: its error says why).
func (r *runner) retireAllowed(ctx context.Context, old CredentialMeta) (bool, error) {
	w, err := r.e.observe(ctx, r.t)
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		return false, &stepError{step: state.StepRetire, what: "observe", err: errors.New(r.redact(err.Error())), attempts: 1}
	}
	where, live := w.publishesCurrent(old)
	ours := true
	for _, s := range w.Stores {
		if s.Current == nil || s.Current.RunID != r.run.ID {
			ours = false
		}
	}
	if ours && !live {
		return true, nil
	}
	run := r.run
	why := fmt.Sprintf("before retiring %s: ", old)
	if live {
		why += fmt.Sprintf("%s publishes it as current", where)
	} else {
		why += "not every store publishes this run's version"
	}
	v := r.judge(ctx, w, r.sec, run)
	if v.stale == "" {
		// Consistent with the journal but not safe to retire (a store
		// still publishes the old version): stop and say so.
		return false, r.markDrift(ctx, []string{why})
	}
	if err := r.supersede(ctx, run, v.stale); err != nil {
		return false, err
	}
	v = r.judge(ctx, w, r.sec, nil)
	if len(v.drift) > 0 {
		err := r.markDrift(ctx, v.drift)
		if errors.Is(err, ErrDrift) {
			return false, nil
		}
		return false, err
	}
	if v.adopt != nil {
		return false, r.adopt(ctx, r.sec, *v.adopt, v.prev, "adopted")
	}
	return false, nil
}

// credFromStores reads the run's new credential back from a store that
// publishes the run's version as current (for a run whose sealed copy
// cannot be opened).
func (r *runner) credFromStores(ctx context.Context) bool {
	for _, p := range r.t.Publish {
		actx, cancel := context.WithTimeout(ctx, r.e.actionTimeout())
		v, err := p.Store.Read(actx, ReadRequest{Path: p.Path, Which: Current})
		cancel()
		if err == nil && v.RunID == r.run.ID && !v.Credential.Secret.IsZero() {
			c := v.Credential
			r.cred = &c
			return true
		}
	}
	return false
}

// redactedError is an error whose text had secrets replaced; it still
// unwraps to the original, so errors.Is/As keep working.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr passes an error that leaves the engine (a store that could not
// be observed, say) through the runner's redaction: the given secrets of
// the target (admin DSNs, management keys) and the new credential.
func (r *runner) redactErr(err error) error {
	if err == nil {
		return nil
	}
	if m := r.redact(err.Error()); m != err.Error() {
		return &redactedError{msg: m, err: err}
	}
	return err
}
