package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

// serverKey groups secrets that rotate against the same server, without
// resolving any secret: secrets whose admin DSN comes from the same
// reference share a server.
func serverKey(s *policy.SecretSpec) string {
	switch {
	case s.Rotator.Postgres != nil:
		return "postgres " + s.Rotator.Postgres.AdminDSN.String()
	}
	return "secret " + s.ID
}

// rules compiles every secret's schedule. Secrets on the same server are
// each other's peers, so their jitter puts them in different minutes.
func rules(f *policy.File) (map[string]schedule.Rule, error) {
	peers := map[string][]string{}
	for _, s := range f.Secrets {
		peers[serverKey(s)] = append(peers[serverKey(s)], s.ID)
	}
	out := map[string]schedule.Rule{}
	for _, s := range f.Secrets {
		set := f.Settings(s)
		r, err := ruleFor(set)
		if err != nil {
			return nil, fmt.Errorf("secret %s (%s): schedule: %w", s.ID, s.Pos, err)
		}
		if p := peers[serverKey(s)]; len(p) > 1 {
			r.Peers = append([]string(nil), p...)
			sort.Strings(r.Peers)
		}
		out[s.ID] = r
	}
	return out, nil
}

func ruleFor(set policy.Settings) (schedule.Rule, error) {
	r := schedule.Rule{Interval: set.Interval, Jitter: set.Jitter}
	loc, err := time.LoadLocation(set.TimeZone)
	if err != nil {
		return r, err
	}
	r.Loc = loc
	if set.Cron != "" {
		if r.Cron, err = schedule.ParseCron(set.Cron); err != nil {
			return r, err
		}
	}
	if set.Window != nil {
		if r.Window, err = schedule.CompileWindow(set.Window, set.TimeZone); err != nil {
			return r, err
		}
	}
	return r, nil
}

// scheduleTarget adds the schedule's functions to a target.
func scheduleTarget(t *rotation.Target, r schedule.Rule, retry policy.Retry) {
	retryAfter := retry.NextRun
	id := t.ID
	t.NextDue = func(last time.Time) time.Time {
		due, _, err := r.Next(id, last, last)
		if err != nil {
			return last.Add(r.Interval)
		}
		return due
	}
	t.RetryAt = func(now time.Time) time.Time {
		// Never rotated-style: the next window opening after the retry
		// delay, with the secret's jitter.
		due, _, err := r.Next(id, time.Time{}, now.Add(retryAfter))
		if err != nil {
			return now.Add(retryAfter)
		}
		return due
	}
	t.Allowed = r.Allows
	t.QuarantineAfter = retry.QuarantineAfter
}

// syncSchedule makes sure every secret of the policy has a row and a due
// time: recomputed from its last success with the current rules (so a
// changed interval or window takes effect), or, for a secret never rotated,
// kept if it has one and set to "now, in its window" (or from the age of
// the version the stores hold, with adopt_age) if not.
func syncSchedule(ctx context.Context, db *state.DB, f *policy.File, rs map[string]schedule.Rule, adopted func(ctx context.Context, s *policy.SecretSpec) time.Time, now time.Time) error {
	if err := db.SyncSecrets(ctx, secretDefs(f)); err != nil {
		return err
	}
	all, err := db.Secrets(ctx)
	if err != nil {
		return err
	}
	byID := make(map[string]state.Secret, len(all))
	for _, s := range all {
		byID[s.ID] = s
	}
	var due []state.DueAt
	for _, s := range f.Secrets {
		sec, r := byID[s.ID], rs[s.ID]
		last := time.Time{}
		switch {
		case sec.LastSuccessAt != nil:
			last = *sec.LastSuccessAt
		case sec.NextDueAt != nil:
			continue
		case f.Settings(s).AdoptAge && adopted != nil:
			last = adopted(ctx, s)
		}
		at, _, err := r.Next(s.ID, last, now)
		if err != nil {
			return fmt.Errorf("secret %s: %w", s.ID, err)
		}
		due = append(due, state.DueAt{ID: s.ID, At: at})
	}
	return db.SetNextDue(ctx, due)
}

// adoptedAge reads when the version the stores hold was made (first store
// that knows), for adopt_age. Zero when none knows: due at once.
func (w *wiring) adoptedAge(ctx context.Context, s *policy.SecretSpec) time.Time {
	for _, p := range s.Publish {
		st, err := w.store(ctx, p.Store)
		if err != nil {
			continue
		}
		d, err := st.Describe(ctx, rotation.DescribeRequest{Path: p.Path})
		if err == nil && d.Current != nil && !d.Current.RotatedAt.IsZero() {
			return d.Current.RotatedAt
		}
	}
	return time.Time{}
}
