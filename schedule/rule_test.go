package schedule

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
)

const days = 24 * time.Hour

func TestNext(t *testing.T) {
	t.Parallel()
	berlin := mustLoc(t, "Europe/Berlin")
	newYork := mustLoc(t, "America/New_York")
	inBerlin := func(m time.Month, d, h, min int) time.Time { return time.Date(2026, m, d, h, min, 0, 0, berlin) }
	inNY := func(m time.Month, d, h, min int) time.Time { return time.Date(2026, m, d, h, min, 0, 0, newYork) }
	utc := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }
	window := func(days []string, hours, tz string, blackouts ...string) *Window {
		return mustWindow(t, policy.WindowSpec{Days: days, Hours: hours, TimeZone: tz, Blackouts: blackouts})
	}
	tueBerlin := window([]string{"tue"}, "02:00-05:00", "Europe/Berlin")
	dailyBerlin := window(nil, "02:00-05:00", "Europe/Berlin")
	const id = "db/postgres"

	tests := []struct {
		name        string
		rule        Rule
		last, now   time.Time
		want        time.Time // exact, when set
		after       time.Time // else: want ≥ after and < before
		before      time.Time
		explanation []string // substrings of Explanation.String()
	}{
		{
			name: "interval only",
			rule: Rule{Interval: 90 * days},
			last: utc(2026, 8, 1, 10, 0), now: utc(2026, 8, 1, 10, 0),
			want:        utc(2026, 10, 30, 10, 0),
			explanation: []string{"last success Sat 2026-08-01 10:00:00 UTC + 90d = Fri 2026-10-30 10:00:00 UTC"},
		},
		{
			name: "interval not in days is elapsed time",
			rule: Rule{Interval: 36 * time.Hour, Loc: berlin},
			last: inBerlin(3, 28, 12, 0), now: inBerlin(3, 28, 12, 0),
			want: inBerlin(3, 30, 1, 0), // 36h elapsed: the wall clock reads an hour more
		},
		{
			name: "whole days keep the wall clock across DST",
			rule: Rule{Interval: 2 * days, Loc: berlin},
			last: inBerlin(3, 28, 12, 0), now: inBerlin(3, 28, 12, 0),
			want: inBerlin(3, 30, 12, 0),
		},
		{
			name: "moved to a weekly window",
			rule: Rule{Interval: 90 * days, Window: tueBerlin},
			last: inBerlin(8, 1, 10, 0), now: inBerlin(8, 1, 10, 0),
			want: inBerlin(11, 3, 2, 0),
			explanation: []string{
				"last success Sat 2026-08-01 10:00:00 CEST + 90d = Fri 2026-10-30 10:00:00 CET",
				"moved to the window Tue 02:00–05:00 Europe/Berlin: Tue 2026-11-03 02:00:00 CET",
			},
		},
		{
			name: "weekly window plus jitter",
			rule: Rule{Interval: 90 * days, Window: tueBerlin, Jitter: time.Hour},
			last: inBerlin(8, 1, 10, 0), now: inBerlin(8, 1, 10, 0),
			want:        inBerlin(11, 3, 2, 0).Add(Jitter(id, time.Hour)),
			explanation: []string{fmt.Sprintf("jitter +%s (derived from id)", fmtDuration(Jitter(id, time.Hour)))},
		},
		{
			name: "base inside the window stays",
			rule: Rule{Interval: 2 * days, Window: dailyBerlin},
			last: inBerlin(11, 1, 3, 0), now: inBerlin(11, 1, 3, 0),
			// in the window: counted from its opening at 02:00
			want:        inBerlin(11, 3, 2, 0),
			explanation: []string{"(in the window opened Sun 2026-11-01 02:00:00 CET) + 2d"},
		},
		{
			name: "jitter scaled to what is left of the window",
			rule: Rule{Interval: 2 * time.Hour, Window: dailyBerlin, Jitter: 6 * time.Hour},
			last: inBerlin(11, 1, 2, 30), now: inBerlin(11, 1, 2, 30),
			after: inBerlin(11, 1, 4, 30), before: inBerlin(11, 1, 5, 0),
			explanation: []string{"scaled to the 30m left in the window"},
		},
		{
			name: "wrap-around: Tuesday morning is in Monday's occurrence",
			rule: Rule{Interval: time.Hour, Window: window([]string{"mon"}, "22:00-04:00", "Europe/Berlin")},
			last: inBerlin(11, 3, 2, 0), now: inBerlin(11, 3, 2, 0),
			want: inBerlin(11, 3, 3, 0),
		},
		{
			name: "wrap-around: after the close, next Monday night",
			rule: Rule{Interval: time.Hour, Window: window([]string{"mon"}, "22:00-04:00", "Europe/Berlin")},
			last: inBerlin(11, 3, 3, 30), now: inBerlin(11, 3, 3, 30),
			want: inBerlin(11, 9, 22, 0),
		},
		{
			name: "wrap-around: Sunday night is not Monday's",
			rule: Rule{Interval: time.Hour, Window: window([]string{"mon"}, "22:00-04:00", "Europe/Berlin")},
			last: inBerlin(11, 1, 22, 0), now: inBerlin(11, 1, 22, 0),
			want: inBerlin(11, 2, 22, 0),
		},
		{
			name: "jitter in a wrap-around window crosses midnight",
			rule: Rule{Interval: time.Hour, Window: window(nil, "23:00-01:00", "UTC"), Jitter: 2 * time.Hour},
			last: utc(2026, 11, 1, 21, 0), now: utc(2026, 11, 1, 21, 0),
			want: utc(2026, 11, 1, 23, 0).Add(Jitter(id, 2*time.Hour)),
		},
		{
			name: "blackout single date",
			rule: Rule{Interval: 1 * days, Window: window(nil, "02:00-05:00", "Europe/Berlin", "2026-12-24")},
			last: inBerlin(12, 23, 1, 0), now: inBerlin(12, 23, 1, 0),
			want: inBerlin(12, 25, 2, 0),
		},
		{
			name: "blackout range across the year end",
			rule: Rule{Interval: 1 * days, Window: window(nil, "02:00-05:00", "Europe/Berlin", "2026-12-20..2027-01-02")},
			last: inBerlin(12, 20, 1, 0), now: inBerlin(12, 20, 1, 0),
			want: time.Date(2027, 1, 3, 2, 0, 0, 0, berlin),
		},
		{
			name: "blackout is read in the window's zone",
			// 22:30 UTC is 23:30 on the 24th in Berlin; 23:00 UTC is the 25th.
			rule: Rule{Interval: time.Hour, Window: window(nil, "", "Europe/Berlin", "2026-12-24")},
			last: utc(2026, 12, 24, 21, 30), now: utc(2026, 12, 24, 21, 30),
			want: utc(2026, 12, 24, 23, 0),
		},
		{
			name: "blackout cuts a wrap-around occurrence at midnight",
			rule: Rule{Interval: time.Hour, Window: window(nil, "22:00-04:00", "Europe/Berlin", "2026-12-24"), Jitter: 6 * time.Hour},
			last: inBerlin(12, 23, 21, 0), now: inBerlin(12, 23, 21, 0),
			after: inBerlin(12, 23, 22, 0), before: inBerlin(12, 24, 0, 0),
		},
		{
			name: "blackout date skipped to the part after its midnight",
			rule: Rule{Interval: time.Hour, Window: window(nil, "22:00-04:00", "Europe/Berlin", "2026-12-24")},
			last: inBerlin(12, 24, 0, 30), now: inBerlin(12, 24, 0, 30),
			want: inBerlin(12, 25, 0, 0),
		},
		{
			name: "Berlin spring forward: 02:00-03:00 does not exist, next day",
			rule: Rule{Interval: time.Hour, Window: window(nil, "02:00-03:00", "Europe/Berlin")},
			last: inBerlin(3, 29, 0, 30), now: inBerlin(3, 29, 0, 30),
			want: inBerlin(3, 30, 2, 0),
		},
		{
			name: "Berlin spring forward: a Sunday-only window waits a week",
			rule: Rule{Interval: time.Hour, Window: window([]string{"sun"}, "02:00-03:00", "Europe/Berlin")},
			last: inBerlin(3, 29, 0, 30), now: inBerlin(3, 29, 0, 30),
			want: inBerlin(4, 5, 2, 0),
		},
		{
			name: "Berlin spring forward: a straddling window opens at the transition",
			rule: Rule{Interval: time.Hour, Window: window(nil, "02:30-04:00", "Europe/Berlin")},
			last: inBerlin(3, 29, 0, 30), now: inBerlin(3, 29, 0, 30),
			want: time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), // 03:00 CEST
		},
		{
			name: "Berlin spring forward: jitter fits the shortened window",
			rule: Rule{Interval: time.Hour, Window: window(nil, "02:30-04:00", "Europe/Berlin"), Jitter: 3 * time.Hour},
			last: inBerlin(3, 29, 0, 30), now: inBerlin(3, 29, 0, 30),
			after: time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), before: time.Date(2026, 3, 29, 2, 0, 0, 0, time.UTC),
			explanation: []string{"scaled to the 1h left in the window"},
		},
		{
			name: "Berlin fall back: a base in the repeated hour is not moved back",
			rule: Rule{Interval: time.Hour, Window: window(nil, "02:00-03:00", "Europe/Berlin")},
			// 00:30 UTC + 1h = 01:30 UTC = 02:30 CET, the second 02:30.
			last: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), now: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC),
			want: time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC),
		},
		{
			name: "Berlin fall back: jitter stays after the base and inside the second pass",
			rule: Rule{Interval: time.Hour, Window: window(nil, "02:00-03:00", "Europe/Berlin"), Jitter: 24 * time.Hour},
			last: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), now: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC),
			after: time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), before: time.Date(2026, 10, 25, 2, 0, 0, 0, time.UTC),
		},
		{
			name: "Berlin fall back: the repeated hour is open twice",
			rule: Rule{Interval: time.Hour, Window: window(nil, "02:00-03:00", "Europe/Berlin"), Jitter: 24 * time.Hour},
			// 23:30 UTC + 1h = 00:30 UTC = 02:30 CEST, the first 02:30.
			last: time.Date(2026, 10, 24, 23, 30, 0, 0, time.UTC), now: time.Date(2026, 10, 24, 23, 30, 0, 0, time.UTC),
			after: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), before: time.Date(2026, 10, 25, 2, 0, 0, 0, time.UTC),
			explanation: []string{"scaled to the 1h30m left in the window"},
		},
		{
			name: "New York spring forward: 02:00-03:00 does not exist, next day",
			rule: Rule{Interval: time.Hour, Window: window(nil, "02:00-03:00", "America/New_York")},
			last: inNY(3, 8, 0, 0), now: inNY(3, 8, 0, 0),
			want: inNY(3, 9, 2, 0),
		},
		{
			name: "New York fall back: the second 01:30 stays",
			rule: Rule{Interval: time.Hour, Window: window(nil, "01:00-02:00", "America/New_York"), Jitter: time.Hour},
			// 05:30 UTC + 1h = 06:30 UTC = 01:30 EST, the second pass.
			last: time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), now: time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC),
			after: time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC), before: time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC),
		},
		{
			name: "New York: whole days across spring forward keep 02:30 when it exists",
			rule: Rule{Interval: 2 * days, Window: window(nil, "02:00-04:00", "America/New_York")},
			last: inNY(3, 7, 1, 0), now: inNY(3, 7, 1, 0),
			want: inNY(3, 9, 2, 0), // base Mar 9 01:00 EDT, moved to 02:00
		},
		{
			name: "cron @weekly",
			rule: Rule{Cron: mustCron(t, "@weekly")},
			last: utc(2026, 11, 4, 15, 0), now: utc(2026, 11, 4, 15, 0),
			want:        utc(2026, 11, 8, 0, 0),
			explanation: []string{"next cron firing Sun 2026-11-08 00:00:00 UTC"},
		},
		{
			name: "cron Mondays 03:00 in Berlin across spring forward",
			rule: Rule{Cron: mustCron(t, "0 3 * * 1"), Loc: berlin},
			last: inBerlin(3, 23, 3, 5), now: inBerlin(3, 23, 3, 5),
			want: inBerlin(3, 30, 3, 0),
		},
		{
			name: "cron zone defaults to the window's",
			rule: Rule{Cron: mustCron(t, "0 3 * * 1"), Window: window(nil, "", "America/New_York")},
			last: inNY(11, 2, 3, 5), now: inNY(11, 2, 3, 5),
			want: inNY(11, 9, 3, 0),
		},
		{
			name: "cron moved into a window",
			rule: Rule{Cron: mustCron(t, "0 3 * * 1"), Window: tueBerlin},
			last: inBerlin(11, 2, 3, 5), now: inBerlin(11, 2, 3, 5),
			want: inBerlin(11, 10, 2, 0), // Monday 03:00 moved to Tuesday's opening
		},
		{
			name:        "never rotated, window open: due now plus jitter",
			rule:        Rule{Interval: 90 * days, Window: dailyBerlin, Jitter: time.Hour},
			now:         inBerlin(11, 1, 2, 10),
			want:        inBerlin(11, 1, 2, 10).Add(Jitter(id, time.Hour)),
			explanation: []string{"never rotated: due now Sun 2026-11-01 02:10:00 CET"},
		},
		{
			name: "never rotated, window closed: its next opening plus jitter",
			rule: Rule{Interval: 90 * days, Window: dailyBerlin, Jitter: time.Hour},
			now:  inBerlin(11, 1, 12, 0),
			want: inBerlin(11, 2, 2, 0).Add(Jitter(id, time.Hour)),
		},
		{
			name: "overdue: the past due time is kept and said",
			rule: Rule{Interval: 30 * days},
			last: utc(2026, 1, 1, 0, 0), now: utc(2026, 6, 1, 0, 0),
			want:        utc(2026, 1, 31, 0, 0),
			explanation: []string{"overdue since Sat 2026-01-31 00:00:00 UTC"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ex, err := tt.rule.Next(id, tt.last, tt.now)
			require.NoError(t, err)
			if !tt.want.IsZero() {
				require.Truef(t, tt.want.Equal(got), "want %s, got %s (%s)", tt.want, got, ex)
			} else {
				require.Falsef(t, got.Before(tt.after), "got %s before %s (%s)", got, tt.after, ex)
				require.Truef(t, got.Before(tt.before), "got %s not before %s (%s)", got, tt.before, ex)
			}
			require.False(t, got.Before(ex.Base), "never before the base")
			require.True(t, tt.rule.Allows(got), "inside the window")
			for _, s := range tt.explanation {
				require.Contains(t, ex.String(), s)
			}
		})
	}
}

func mustCron(t *testing.T, spec string) cron.Schedule {
	t.Helper()
	s, err := ParseCron(spec)
	require.NoError(t, err)
	return s
}

func TestNextErrors(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	blackedOut := mustWindow(t, policy.WindowSpec{Blackouts: []string{"2026-01-01..2028-01-01"}})
	tests := []struct {
		name    string
		rule    Rule
		wantErr string
		is      error
	}{
		{"interval too short", Rule{Interval: 59 * time.Minute}, "schedule interval 59m: want at least 1h", nil},
		{"no interval, no cron", Rule{}, "want at least 1h", nil},
		{"negative jitter", Rule{Interval: time.Hour, Jitter: -time.Second}, "schedule jitter -1s", nil},
		{"window closed for over a year", Rule{Interval: time.Hour, Window: blackedOut}, `secret "db/x": window every day all day UTC except 2026-01-01..2028-01-01 is closed for 366 days`, ErrNoSlot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := tt.rule.Next("db/x", now, now)
			require.ErrorContains(t, err, tt.wantErr)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
		})
	}
}

// TestNextInsideWindowProperty walks bases across 2026 in two zones and
// checks the invariants: never before the base, inside the window, in the
// same open stretch the base was moved into, and deterministic.
func TestNextInsideWindowProperty(t *testing.T) {
	t.Parallel()
	for _, spec := range []policy.WindowSpec{
		{Days: []string{"tue", "sun"}, Hours: "02:00-03:00", TimeZone: "Europe/Berlin", Blackouts: []string{"2026-12-20..2027-01-02"}},
		{Hours: "22:30-02:30", TimeZone: "America/New_York", Blackouts: []string{"2026-07-04"}},
		{Days: []string{"sat"}, Hours: "01:00-02:30", TimeZone: "America/New_York"},
	} {
		w := mustWindow(t, spec)
		rule := Rule{Interval: time.Hour, Window: w, Jitter: 90 * time.Minute}
		for base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); base.Year() == 2026; base = base.Add(97 * time.Minute) {
			last := base.Add(-time.Hour)
			got, ex, err := rule.Next(fmt.Sprint("s", base.Unix()), last, last)
			require.NoError(t, err)
			require.False(t, got.Before(base), "%s: before base %s", got, base)
			require.True(t, w.Contains(got), "%s outside %s", got, w)
			moved, ok := w.firstAllowed(base, Horizon)
			require.True(t, ok)
			closes, ok := w.firstClosed(moved, Horizon)
			require.True(t, ok)
			require.True(t, got.Before(closes), "%s left the stretch %s–%s (%s)", got, moved, closes, ex)
		}
	}
}

// TestSlotIsStable feeds each result back as the next success (run taking
// 25 minutes): the secret keeps the same wall-clock slot instead of creeping
// towards the window's end.
func TestSlotIsStable(t *testing.T) {
	t.Parallel()
	berlin := mustLoc(t, "Europe/Berlin")
	rule := Rule{Interval: 91 * days, Window: mustWindow(t, policy.WindowSpec{Hours: "02:00-05:00", TimeZone: "Europe/Berlin"}), Jitter: 3 * time.Hour}
	last := time.Date(2026, 1, 10, 12, 0, 0, 0, berlin)
	var slots []string
	for range 8 {
		due, ex, err := rule.Next("db/postgres", last, last)
		require.NoError(t, err)
		require.False(t, due.Before(ex.Base))
		slots = append(slots, due.In(berlin).Format("15:04:05"))
		last = due.Add(25 * time.Minute)
	}
	for _, s := range slots {
		require.Equal(t, slots[0], s, "slots %v", slots)
	}
}

func TestJitter(t *testing.T) {
	t.Parallel()
	require.Equal(t, Jitter("db/postgres", time.Hour), Jitter("db/postgres", time.Hour), "deterministic")
	require.NotEqual(t, Jitter("db/postgres", time.Hour), Jitter("db/postgres2", time.Hour))
	require.Zero(t, Jitter("db/postgres", 0))
	require.Zero(t, Jitter("db/postgres", -time.Hour))

	// Uniform over ids: 6000 ids in 6 buckets of [0, 1h), ±10%.
	buckets := make([]int, 6)
	for i := range 6000 {
		j := Jitter(fmt.Sprintf("api/key-%d", i), time.Hour)
		require.GreaterOrEqual(t, j, time.Duration(0))
		require.Less(t, j, time.Hour)
		require.Zero(t, j%time.Second, "whole seconds")
		buckets[j/(10*time.Minute)]++
	}
	for i, n := range buckets {
		require.InDelta(t, 1000, n, 100, "bucket %d: %v", i, buckets)
	}

	// Next adds exactly Jitter when nothing limits it.
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	got, _, err := Rule{Interval: 7 * days, Jitter: 6 * time.Hour}.Next("db/postgres", now, now)
	require.NoError(t, err)
	require.Equal(t, now.Add(7*days+Jitter("db/postgres", 6*time.Hour)), got)
}

// TestPeersLandInDistinctMinutes: 50 secrets on one server, due at the same
// moment, one-hour window.
func TestPeersLandInDistinctMinutes(t *testing.T) {
	t.Parallel()
	berlin := mustLoc(t, "Europe/Berlin")
	w := mustWindow(t, policy.WindowSpec{Days: []string{"tue"}, Hours: "02:00-03:00", TimeZone: "Europe/Berlin"})
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = fmt.Sprintf("db/app-%02d", i)
	}
	last := time.Date(2026, 8, 1, 10, 0, 0, 0, berlin) // all rotated together
	minutes := func(peers []string) map[string]bool {
		seen := map[string]bool{}
		for _, id := range ids {
			rule := Rule{Interval: 90 * days, Window: w, Jitter: 4 * time.Hour, Peers: NewPeers(peers...)}
			due, _, err := rule.Next(id, last, last)
			require.NoError(t, err)
			require.True(t, w.Contains(due))
			seen[due.Format("2006-01-02 15:04")] = true
		}
		return seen
	}
	withPeers := minutes(ids)
	require.GreaterOrEqual(t, len(withPeers), 45)
	require.Len(t, withPeers, 50, "span/n = 72s apart: every peer its own minute")

	// Hashes alone are uniform but collide like birthdays (~34 expected).
	alone := len(minutes(nil))
	t.Logf("without peers: %d distinct minutes of 50", alone)
	require.Greater(t, alone, 25)

	// The order peers are listed in does not matter.
	reversed := make([]string, len(ids))
	for i, id := range ids {
		reversed[len(ids)-1-i] = id
	}
	a, _ := fraction("db/app-07", NewPeers(ids...))
	b, _ := fraction("db/app-07", NewPeers(reversed...))
	require.Equal(t, a, b)
	require.False(t, math.IsNaN(a))
}

func TestOverdue(t *testing.T) {
	t.Parallel()
	last := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	interval := 30 * days // 1.1 × = 33 days
	tests := []struct {
		name string
		last time.Time
		now  time.Time
		want bool
	}{
		{"fresh", last, last.Add(days), false},
		{"due but within 10%", last, last.Add(31 * days), false},
		{"exactly 1.1 × interval", last, last.Add(33 * days), false},
		{"one nanosecond past", last, last.Add(33*days + 1), true},
		{"never rotated", time.Time{}, last, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Overdue(tt.last, tt.now, interval))
		})
	}
}

func TestParseCron(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		wantErr string
	}{
		{spec: "@weekly"},
		{spec: "@daily"},
		{spec: "0 3 * * 1"},
		{spec: "0 2,3 * * *"},
		{spec: "CRON_TZ=Europe/Berlin 0 3 * * 1"},
		{spec: "@every 2h"},
		{spec: "* * * * *", wantErr: `cron "* * * * *": fires 1m apart; rotations must be at least 1h apart`},
		{spec: "0,30 3 * * *", wantErr: "fires 30m apart"},
		{spec: "@every 30m", wantErr: "fires 30m apart"},
		{spec: "0 0 30 2 *", wantErr: "never fires"},
		{spec: "0 3 * *", wantErr: `cron "0 3 * *": expected exactly 5 fields`},
		{spec: "bogus", wantErr: `want 5 fields such as "0 3 * * 1"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			s, err := ParseCron(tt.spec)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, s)
		})
	}
}

func TestFmtDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", 90 * days: "90d", 36 * time.Hour: "1d12h", 17*time.Minute + 30*time.Second: "17m30s", -time.Hour: "-1h",
	} {
		require.Equal(t, want, fmtDuration(d))
	}
}

// TestPeersRankOnce: the peers' ranks made once are the ranks made at each
// due time before (every peer sorted by its hash, then its id, duplicates
// once), for members, non-members, duplicates and sets too small to rank.
func TestPeersRankOnce(t *testing.T) {
	before := func(id string, peers []string) (float64, string) {
		if len(peers) < 2 || !slices.Contains(peers, id) {
			return hashFraction(id), "derived from id"
		}
		ranked := slices.Clone(peers)
		slices.SortFunc(ranked, func(a, b string) int {
			return cmp.Or(cmp.Compare(hashFraction(a), hashFraction(b)), strings.Compare(a, b))
		})
		ranked = slices.Compact(ranked)
		k := slices.Index(ranked, id)
		return (float64(k) + 0.5) / float64(len(ranked)), fmt.Sprintf("slot %d of %d peers, derived from ids", k+1, len(ranked))
	}
	sets := [][]string{nil, {"a"}, {"a", "b"}, {"b", "a", "b"}, {"x", "x"}, {"x", "x", "y", "z", "x"}}
	var many []string
	for i := range 300 {
		many = append(many, fmt.Sprintf("db/tenant-%03d", i))
	}
	sets = append(sets, many)
	for _, set := range sets {
		p := NewPeers(slices.Clone(set)...)
		for _, id := range append(slices.Clone(set), "other", "db/tenant-999", "") {
			wantF, wantFrom := before(id, set)
			gotF, gotFrom := fraction(id, p)
			require.Equal(t, wantF, gotF, "%q in %q", id, set)
			require.Equal(t, wantFrom, gotFrom, "%q in %q", id, set)
		}
	}
	f, from := fraction("a", nil)
	require.Equal(t, hashFraction("a"), f)
	require.Equal(t, "derived from id", from)
}
