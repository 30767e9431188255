package announce

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

// DefaultEvery bounds how often Announce scans the secrets.
const DefaultEvery = 5 * time.Minute

// Policies is what Announce needs of the policies in force.
type Policies interface {
	// Settings are a secret's effective settings; false when the policies
	// do not name it.
	Settings(id string) (policy.Settings, bool)
	// RemindBefore is notify.remind_before; 0 sends no upcoming events.
	RemindBefore() time.Duration
}

// Secrets reads the secrets' state rows a page at a time, ordered by id
// (state.DB does).
type Secrets interface {
	SecretsAfter(ctx context.Context, after string, limit int) ([]state.Secret, error)
}

// page is how many rows a scan reads at a time: at 100,000 secrets it
// holds one page, not every row.
const page = 1000

// Announcer remembers the overdue and upcoming events sent. The zero value
// is ready; it is safe for concurrent use.
type Announcer struct {
	// Every is the least time between two scans (0: DefaultEvery).
	Every time.Duration

	mu       sync.Mutex
	last     time.Time
	overdue  map[string]bool
	upcoming map[string]time.Time
}

// Announce emits an overdue event for each secret older than 1.1 × its
// interval (once, until it is rotated) and, with remind_before, an upcoming
// event before each scheduled rotation. It does nothing within Every of its
// last scan.
func (a *Announcer) Announce(ctx context.Context, db Secrets, p Policies, emit func(notify.Event), now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	every := a.Every
	if every <= 0 {
		every = DefaultEvery
	}
	if now.Sub(a.last) < every {
		return nil
	}
	a.last = now
	if a.overdue == nil {
		a.overdue, a.upcoming = map[string]bool{}, map[string]time.Time{}
	}
	remind := p.RemindBefore()
	for after := ""; ; {
		rows, err := db.SecretsAfter(ctx, after, page)
		if err != nil {
			return err
		}
		for _, s := range rows {
			a.announce(s, p, remind, emit, now)
		}
		if len(rows) < page {
			return nil
		}
		after = rows[len(rows)-1].ID
	}
}

// announce emits what one secret's row calls for.
func (a *Announcer) announce(s state.Secret, p Policies, remind time.Duration, emit func(notify.Event), now time.Time) {
	set, ok := p.Settings(s.ID)
	if !ok {
		return
	}
	if s.LastSuccessAt != nil && schedule.Overdue(*s.LastSuccessAt, now, set.Interval) {
		if !a.overdue[s.ID] {
			a.overdue[s.ID] = true
			emit(notify.Event{Kind: notify.KindOverdue, SecretID: s.ID, Class: s.Class, Channel: set.SlackChannel, At: now,
				Detail: fmt.Sprintf("last rotated %s ago; its interval is %s",
					policy.Duration(now.Sub(*s.LastSuccessAt).Truncate(time.Hour)), policy.Duration(set.Interval)),
				Commands: []string{"rotator status", "rotator history --secret " + s.ID, "rotator run --secret " + s.ID}})
		}
	} else {
		delete(a.overdue, s.ID)
	}
	if remind > 0 && s.Status == state.SecretActive && s.NextDueAt != nil && s.NextDueAt.After(now) && s.NextDueAt.Sub(now) <= remind {
		if !a.upcoming[s.ID].Equal(*s.NextDueAt) {
			a.upcoming[s.ID] = *s.NextDueAt
			emit(notify.Event{Kind: notify.KindUpcoming, SecretID: s.ID, Class: s.Class, Channel: set.SlackChannel, At: now,
				NextAttempt: *s.NextDueAt, Detail: "scheduled rotation",
				Commands: []string{"rotator plan --secret " + s.ID}})
		}
	}
}
