package daemon

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

// HistoryOf reads, from a secret's state row, what decides its due time
// (see schedule.History):
//   - the last run failed (or was rolled back) after the last success and
//     the failure is still counted: LastFailure is when that attempt began
//     (last_attempt_at, the same instant as the run's started_at, which the
//     engine passes to Target.RetryAt);
//   - never rotated, or resumed from quarantine (a failed last run whose
//     count `rotator resume` reset): the recorded next_due_at is Pinned.
func HistoryOf(sec state.Secret) schedule.History {
	h := schedule.History{Quarantined: sec.Status == state.SecretQuarantined}
	if sec.LastSuccessAt != nil {
		h.LastSuccess = *sec.LastSuccessAt
	}
	failedLast := sec.LastAttemptAt != nil && (h.LastSuccess.IsZero() || sec.LastAttemptAt.After(h.LastSuccess))
	switch {
	case failedLast && sec.LastOutcome == state.RunFailed && sec.ConsecutiveFailures > 0,
		failedLast && sec.LastOutcome == state.RunRolledBack:
		h.LastFailure = *sec.LastAttemptAt
	case sec.NextDueAt != nil && (h.LastSuccess.IsZero() || (sec.LastOutcome == state.RunFailed && sec.ConsecutiveFailures == 0)):
		h.Pinned = *sec.NextDueAt
	}
	return h
}

// Due computes a secret's next due time from its state row with its rule.
// A never-rotated secret with adopt_age and nothing recorded asks the
// stores for the age of the published version.
func (g *Generation) Due(ctx context.Context, sec state.Secret, now time.Time) (schedule.Due, error) {
	r, ok := g.Rules[sec.ID]
	if !ok {
		return schedule.Due{}, fmt.Errorf("secret %s is not in %s", sec.ID, g.File.Path)
	}
	h := HistoryOf(sec)
	if h.LastSuccess.IsZero() && h.LastFailure.IsZero() && h.Pinned.IsZero() && g.build != nil {
		if s := g.specs[sec.ID]; g.File.Settings(s).AdoptAge {
			h.Adopted = g.build.AdoptedAge(ctx, s)
		}
	}
	d, err := r.Due(sec.ID, h, now)
	if err != nil {
		return d, fmt.Errorf("secret %s: %w", sec.ID, err)
	}
	return d, nil
}

// syncBatch is how many secrets Sync and Preview read (and Sync writes)
// at a time: at 100,000 secrets a sync holds one batch of rows, not every
// row of the table beside the generation.
const syncBatch = 1000

// batches calls fn with the secrets of the policies, syncBatch at a time,
// in policy order.
func (g *Generation) batches(fn func(specs []*policy.SecretSpec) error) error {
	all := g.File.Secrets
	for start := 0; start < len(all); start += syncBatch {
		if err := fn(all[start:min(start+syncBatch, len(all))]); err != nil {
			return err
		}
	}
	return nil
}

// rows reads the state rows of specs (db nil: none), in their order; a
// secret with no row yet is a fresh active one.
func (g *Generation) rows(ctx context.Context, db *state.DB, specs []*policy.SecretSpec) ([]state.Secret, error) {
	var got []state.Secret
	if db != nil {
		ids := make([]string, len(specs))
		for i, s := range specs {
			ids[i] = s.ID
		}
		var err error
		if got, err = db.SecretsByID(ctx, ids); err != nil {
			return nil, err
		}
	}
	byID := make(map[string]int, len(got))
	for i, s := range got {
		byID[s.ID] = i
	}
	out := make([]state.Secret, 0, len(specs))
	for _, s := range specs {
		if i, ok := byID[s.ID]; ok {
			out = append(out, got[i])
			continue
		}
		out = append(out, state.Secret{ID: s.ID, Class: g.File.Settings(s).Class, Status: state.SecretActive})
	}
	return out, nil
}

// Sync makes sure every secret of the policies has a row and records its
// due time as Due computes it, so a changed interval, window or
// retry.next_run takes effect, a pending retry keeps its time, and a
// never-rotated secret gets its first due time once. Quarantined secrets
// are left as they are, and so is a row written since it was read (a run
// in another process started or ended: its due time is newer). `run --due`
// calls it before its tick, the daemon at every (re)load. It goes over the
// secrets syncBatch at a time (rows made, rows read, due times written),
// so its memory does not grow with the number of secrets.
//
// The sync is skipped when the state database's mark says the last one was
// computed from the same policies by the same build (SyncKey): then every
// row exists and holds the due time this sync would record, since runs
// record theirs with the same rules. Any change of the file makes the
// next Sync do the whole work again; the mark's key is cleared before the
// first write and recorded only after every batch is written, so a sync
// stopped half-way (an error, a shutdown, a crash) is done again by the
// next one, whatever policies it syncs: every write is idempotent (rows
// upserted, due times computed from each row's history). Of two syncs
// that ran at once, the one that finds the other's key recorded when it
// ends clears it (recordSync).
func (g *Generation) Sync(ctx context.Context, db *state.DB, now time.Time) error {
	key := SyncKey(g.File.Hash)
	mark, err := db.ScheduleSync(ctx)
	if err != nil {
		return err
	}
	if g.File.Hash != "" && mark.Key == key {
		return nil
	}
	if mark.Key != "" {
		// Each statement below is atomic, but the sync is not: a sync
		// stopped between batches leaves some rows rewritten, which the
		// mark must not vouch for.
		if err := db.ClearScheduleSync(ctx); err != nil {
			return err
		}
	}
	err = g.batches(func(specs []*policy.SecretSpec) error {
		defs := make([]state.SecretDef, 0, len(specs))
		for _, s := range specs {
			defs = append(defs, state.SecretDef{ID: s.ID, Class: g.File.Settings(s).Class})
		}
		if err := db.SyncSecrets(ctx, defs); err != nil {
			return err
		}
		secs, err := g.rows(ctx, db, specs)
		if err != nil {
			return err
		}
		due := make([]state.DueAt, 0, len(secs))
		for _, sec := range secs {
			d, err := g.Due(ctx, sec, now)
			if err != nil {
				return err
			}
			if !d.Quarantined {
				due = append(due, state.DueAt{ID: sec.ID, At: d.At, Seen: sec.UpdatedAt})
			}
		}
		return db.SetNextDue(ctx, due)
	})
	if err != nil {
		return err
	}
	if g.File.Hash != "" {
		return recordSync(ctx, db, mark, key)
	}
	return nil
}

// recordSync records key after a sync that began by reading mark. When
// another sync has recorded since (another process), the two ran at once:
// this one's writes may have come after the other's, so a key of other
// policies, which its rows no longer all follow, is taken back and the
// next sync of either file is done whole. A key of the same policies is
// left: both wrote the same due times (and a CronJob whose syncs overlap
// does not sync whole at every run). Clearing only ever makes a sync
// run; a run with nothing changed clears nothing.
func recordSync(ctx context.Context, db *state.DB, mark state.SyncMark, key string) error {
	ok, err := db.RecordScheduleSync(ctx, mark, key)
	if err != nil || ok {
		return err
	}
	return db.ClearOtherScheduleSync(ctx, key)
}

// SyncKey is what a schedule sync of the policies with content hash
// policyHash (policy.Hash) records: the hash and the build of this binary,
// since another build may compute due times differently.
func SyncKey(policyHash string) string {
	return policyHash + " " + buildID
}

// buildID names this binary's build: its module version and, when the
// toolchain stamped them, its VCS revision and whether the tree was
// modified.
var buildID = func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	id := bi.Main.Path + "@" + bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" || s.Key == "vcs.modified" || s.Key == "vcs.time" {
			id += " " + s.Key + "=" + s.Value
		}
	}
	return id
}()

// Action is what one tick does with a secret.
type Action string

// What a tick does with a secret, in the order it decides.
const (
	ActionResume        Action = "resume"         // advance its unfinished run
	ActionWait          Action = "wait"           // its unfinished run waits until Run.WaitUntil
	ActionQuarantined   Action = "quarantined"    // no automatic attempt
	ActionNotDue        Action = "not_due"        // due at Due.At, later
	ActionOutsideWindow Action = "outside_window" // due, but its window is closed now
	ActionRotate        Action = "rotate"         // start a rotation
)

// Decision is what a tick would do with one secret now, and why.
type Decision struct {
	SecretID string
	Action   Action
	Due      schedule.Due
	// Run is the unfinished run (ActionResume, ActionWait).
	Run *state.Run
	// State is the secret's row (a fresh one if it has none yet).
	State state.Secret
}

// Preview says, touching nothing, what `run --due` would do now with each
// secret of the policies: the due time its Sync would record, then the
// decisions of its tick (rotation.Engine.Tick with IfDue). db may be nil
// (nothing recorded: every secret as never rotated).
func (g *Generation) Preview(ctx context.Context, db *state.DB, now time.Time) ([]Decision, error) {
	out := make([]Decision, 0, len(g.File.Secrets))
	err := g.PreviewEach(ctx, db, now, func(decs []Decision) error {
		out = append(out, decs...)
		return nil
	})
	return out, err
}

// PreviewEach is Preview a batch of secrets at a time (fn is given each
// batch's decisions, in policy order, and may not keep the slice): what
// reads every secret without holding every decision at once (the status
// page at 100,000 secrets). Each batch costs two queries: the rows and
// the unfinished runs.
func (g *Generation) PreviewEach(ctx context.Context, db *state.DB, now time.Time, fn func([]Decision) error) error {
	return g.previewSpecs(ctx, db, now, g.File.Secrets, fn)
}

// previewSpecs is PreviewEach of the secrets all.
func (g *Generation) previewSpecs(ctx context.Context, db *state.DB, now time.Time, all []*policy.SecretSpec, fn func([]Decision) error) error {
	decs := make([]Decision, 0, min(syncBatch, len(all)))
	for start := 0; start < len(all); start += syncBatch {
		if err := g.previewBatch(ctx, db, now, all[start:min(start+syncBatch, len(all))], &decs, fn); err != nil {
			return err
		}
	}
	return nil
}

// previewBatch decides for specs, in decs (reused), and gives them to fn.
func (g *Generation) previewBatch(ctx context.Context, db *state.DB, now time.Time, specs []*policy.SecretSpec, decs *[]Decision, fn func([]Decision) error) error {
	secs, err := g.rows(ctx, db, specs)
	if err != nil {
		return err
	}
	runs := map[string]*state.Run{}
	if db != nil {
		ids := make([]string, len(secs))
		for i, sec := range secs {
			ids[i] = sec.ID
		}
		if runs, err = db.ActiveRuns(ctx, ids); err != nil {
			return err
		}
	}
	*decs = (*decs)[:0]
	for _, sec := range secs {
		dec, err := g.decide(ctx, sec, runs[sec.ID], now)
		if err != nil {
			return err
		}
		*decs = append(*decs, dec)
	}
	return fn(*decs)
}

// PreviewOf is Preview of the secrets ids alone (in policy order; an id
// the policies do not name is left out): `rotator plan --secret` reads
// one secret, not every one.
func (g *Generation) PreviewOf(ctx context.Context, db *state.DB, now time.Time, ids ...string) ([]Decision, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var specs []*policy.SecretSpec
	for _, s := range g.File.Secrets {
		if want[s.ID] {
			specs = append(specs, s)
		}
	}
	var out []Decision
	err := g.previewSpecs(ctx, db, now, specs, func(decs []Decision) error {
		out = append(out, decs...)
		return nil
	})
	return out, err
}

// decide is Preview's decision for one secret, whose unfinished run is
// run (nil: none).
func (g *Generation) decide(ctx context.Context, sec state.Secret, run *state.Run, now time.Time) (Decision, error) {
	d, err := g.Due(ctx, sec, now)
	if err != nil {
		return Decision{}, err
	}
	dec := Decision{SecretID: sec.ID, Due: d, State: sec, Run: run}
	switch {
	case dec.Run != nil && dec.Run.WaitUntil != nil && dec.Run.WaitUntil.After(now):
		dec.Action = ActionWait
	case dec.Run != nil:
		dec.Action = ActionResume
	case d.Quarantined:
		dec.Action = ActionQuarantined
	case d.At.After(now):
		dec.Action = ActionNotDue
	case !g.Rules[sec.ID].Allows(now):
		dec.Action = ActionOutsideWindow
	default:
		dec.Action = ActionRotate
	}
	return dec, nil
}
