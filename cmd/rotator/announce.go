package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
)

// announceEvery bounds how often the daemon scans for overdue and upcoming
// secrets (a read of every secret's row).
const announceEvery = 5 * time.Minute

// announcer remembers the overdue and upcoming events sent, so each is sent
// once per episode (per daemon process; the notifier's episodes in the
// state database dedupe across processes for failures).
type announcer struct {
	mu       sync.Mutex
	last     time.Time
	overdue  map[string]bool
	upcoming map[string]time.Time
}

// announce sends an overdue event for each secret older than 1.1 × its
// interval (once, until it is rotated) and, with notify.remind_before, an
// upcoming event before each scheduled rotation.
func (a *announcer) announce(ctx context.Context, d *daemon, now time.Time) {
	emit := d.engine.Events
	if emit == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.last) < announceEvery {
		return
	}
	a.last = now
	if a.overdue == nil {
		a.overdue, a.upcoming = map[string]bool{}, map[string]time.Time{}
	}
	g := d.gen.Load()
	all, err := d.db.Secrets(ctx)
	if err != nil {
		d.a.logger.Warn("could not scan for overdue secrets", "err", err.Error())
		return
	}
	var remind time.Duration
	if g.file.Notify.RemindBefore != nil {
		remind = g.file.Notify.RemindBefore.D()
	}
	for _, s := range all {
		spec, ok := g.file.Secret(s.ID)
		if !ok {
			continue
		}
		set := g.file.Settings(spec)
		if s.LastSuccessAt != nil && schedule.Overdue(*s.LastSuccessAt, now, set.Interval) {
			if !a.overdue[s.ID] {
				a.overdue[s.ID] = true
				emit(rotation.Event{Kind: policy.EventOverdue, SecretID: s.ID, Class: s.Class, Channel: set.SlackChannel, At: now,
					Detail: fmt.Sprintf("last rotated %s ago; its interval is %s",
						humanDuration(now.Sub(*s.LastSuccessAt)), policy.Duration(set.Interval)),
					Commands: []string{"rotator status", "rotator history --secret " + s.ID, "rotator run --secret " + s.ID}})
			}
		} else {
			delete(a.overdue, s.ID)
		}
		if remind > 0 && s.Status == "active" && s.NextDueAt != nil && s.NextDueAt.After(now) && s.NextDueAt.Sub(now) <= remind {
			if !a.upcoming[s.ID].Equal(*s.NextDueAt) {
				a.upcoming[s.ID] = *s.NextDueAt
				emit(rotation.Event{Kind: policy.EventUpcoming, SecretID: s.ID, Class: s.Class, Channel: set.SlackChannel, At: now,
					NextAttempt: *s.NextDueAt, Detail: "scheduled rotation",
					Commands: []string{"rotator plan --secret " + s.ID}})
			}
		}
	}
}
