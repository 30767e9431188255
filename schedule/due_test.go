package schedule

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
)

func TestDue(t *testing.T) {
	t.Parallel()
	utc := func(d, h, m int) time.Time { return time.Date(2026, 8, d, h, m, 0, 0, time.UTC) }
	now := utc(10, 12, 0)
	// Monday 2026-08-10; the window opens daily at 02:00 UTC for 3 hours.
	nightly := mustWindow(t, policy.WindowSpec{Hours: "02:00-05:00", TimeZone: "UTC"})
	plain := Rule{Interval: 90 * days, RetryAfter: 2 * time.Hour}
	windowed := Rule{Interval: 90 * days, RetryAfter: 2 * time.Hour, Window: nightly}
	jittered := Rule{Interval: 90 * days, RetryAfter: time.Hour, Jitter: 6 * time.Hour}
	const id = "db/postgres"

	tests := []struct {
		name        string
		rule        Rule
		h           History
		want        time.Time
		quarantined bool
		reason      string
	}{
		{name: "never rotated, nothing recorded: now", rule: plain, want: now, reason: "never rotated: due now"},
		{name: "never rotated with jitter: now plus the id's jitter", rule: jittered,
			want: now.Add(Jitter(id, 6*time.Hour)), reason: "never rotated"},
		{name: "never rotated, first due time recorded: kept, whatever now is", rule: jittered,
			h: History{Pinned: utc(9, 3, 17)}, want: utc(9, 3, 17), reason: "first seen"},
		{name: "never rotated, adopted age", rule: plain,
			h: History{Adopted: utc(1, 9, 0)}, want: time.Date(2026, 10, 30, 9, 0, 0, 0, time.UTC), reason: "adopted"},
		{name: "rotated: last success plus the interval", rule: plain,
			h: History{LastSuccess: utc(10, 11, 59)}, want: time.Date(2026, 11, 8, 11, 59, 0, 0, time.UTC), reason: "last success"},
		{name: "failed after an old success: retry.next_run after the attempt began", rule: plain,
			h: History{LastSuccess: utc(1, 1, 0).AddDate(0, -6, 0), LastFailure: utc(10, 11, 0)}, want: utc(10, 13, 0), reason: "retry.next_run 2h"},
		{name: "failed after a recent success: the retry, not the interval", rule: plain,
			h: History{LastSuccess: utc(10, 9, 0), LastFailure: utc(10, 11, 0)}, want: utc(10, 13, 0)},
		{name: "failed, never rotated: the retry wins over the first due time", rule: plain,
			h: History{Pinned: utc(10, 10, 0), LastFailure: utc(10, 11, 0)}, want: utc(10, 13, 0)},
		{name: "failed, retry moved into the window", rule: windowed,
			h: History{LastFailure: utc(10, 11, 0)}, want: utc(11, 2, 0), reason: "moved to the window"},
		{name: "failed, retry gets the jitter", rule: jittered,
			h: History{LastFailure: utc(10, 11, 0)}, want: utc(10, 12, 0).Add(Jitter(id, 6*time.Hour))},
		{name: "quarantined: never automatically, whatever else is recorded", rule: plain,
			h: History{Quarantined: true, LastFailure: utc(10, 11, 0), Pinned: utc(1, 0, 0)}, quarantined: true, reason: "rotator resume"},
		{name: "resumed after quarantine: the recorded time", rule: plain,
			h: History{LastSuccess: utc(1, 0, 0), Pinned: utc(10, 11, 30)}, want: utc(10, 11, 30), reason: "quarantine was lifted"},
		{name: "never rotated, outside the window: its next opening", rule: windowed, want: utc(11, 2, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := tc.rule.Due(id, tc.h, now)
			require.NoError(t, err)
			require.Equal(t, tc.quarantined, d.Quarantined)
			require.True(t, tc.want.Equal(d.At), "want %s, got %s (%s)", tc.want, d.At, d.String())
			require.Contains(t, d.String(), tc.reason)
			// The answer for a recorded history does not depend on now
			// (only a never-rotated secret with nothing recorded does).
			if !tc.h.LastFailure.IsZero() || !tc.h.Pinned.IsZero() || !tc.h.LastSuccess.IsZero() || tc.h.Quarantined {
				later, err := tc.rule.Due(id, tc.h, now.Add(17*time.Minute))
				require.NoError(t, err)
				require.True(t, d.At.Equal(later.At), "moved with now: %s then %s", d.At, later.At)
			}
		})
	}
}

func TestDueNoSlot(t *testing.T) {
	t.Parallel()
	closed := mustWindow(t, policy.WindowSpec{Days: []string{"mon"}, TimeZone: "UTC", Blackouts: []string{"2026-01-01..2027-12-31"}})
	_, err := Rule{Interval: 90 * days, RetryAfter: time.Hour, Window: closed}.Due("x", History{LastFailure: time.Date(2026, 8, 10, 0, 0, 0, 0, time.UTC)}, time.Now())
	require.ErrorIs(t, err, ErrNoSlot)
}
