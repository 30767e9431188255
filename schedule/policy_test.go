package schedule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
)

// TestRulesCompileOnce: secrets with windows of their own (a rule each)
// share one *time.Location per zone and one parsed schedule per cron
// spec, and their due times are the ones a rule compiled on its own gives
// (CompileWindow, time.LoadLocation, ParseCron).
func TestRulesCompileOnce(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\ndefaults: {time_zone: America/New_York}\nstores:\n  - {name: local, files: {dir: out}}\nsecrets:\n")
	for i := range 40 {
		zone := []string{"Europe/Berlin", "Asia/Tokyo", ""}[i%3] // "": the default's
		spec := ""
		if i%2 == 0 {
			spec = fmt.Sprintf(", cron: '0 %d * * *'", i%8)
		}
		fmt.Fprintf(&b, "  - {id: t/t%02d, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t%02d}], window: {days: [mon, wed], hours: '%02d:00-%02d:30', time_zone: '%s', blackouts: ['2026-12-24']}%s}\n",
			i, i, i%24, (i+5)%24, zone, spec)
	}
	f, err := policy.Parse("policies.yaml", []byte(b.String()))
	require.NoError(t, err)
	rules, err := Rules(f)
	require.NoError(t, err)
	locs := map[string]*time.Location{}
	crons := map[string]cron.Schedule{}
	last := time.Date(2026, 11, 20, 13, 7, 0, 0, time.UTC)
	now := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	for _, s := range f.Secrets {
		r := rules[s.ID]
		for _, loc := range []*time.Location{r.Loc, r.Window.Loc} {
			if seen, ok := locs[loc.String()]; ok {
				require.Same(t, seen, loc, "%s: one location per zone", s.ID)
			}
			locs[loc.String()] = loc
		}
		if set := f.Settings(s); set.Cron != "" {
			if seen, ok := crons[set.Cron]; ok {
				require.Same(t, seen, r.Cron, "%s: one schedule per spec", s.ID)
			}
			crons[set.Cron] = r.Cron
		}
		// The rule compiled alone, as before.
		set := f.Settings(s)
		alone := Rule{Interval: set.Interval, Jitter: set.Jitter, RetryAfter: set.Retry.NextRun}
		alone.Loc, err = time.LoadLocation(set.TimeZone)
		require.NoError(t, err)
		alone.Window, err = CompileWindow(set.Window, set.TimeZone)
		require.NoError(t, err)
		require.Equal(t, alone.Window.Loc.String(), r.Window.Loc.String())
		if set.Cron != "" {
			alone.Cron, err = ParseCron(set.Cron)
			require.NoError(t, err)
		}
		want, wexp, err := alone.Next(s.ID, last, now)
		require.NoError(t, err)
		got, gexp, err := r.Next(s.ID, last, now)
		require.NoError(t, err)
		require.True(t, want.Equal(got), "%s: due %v, alone %v", s.ID, got, want)
		require.Equal(t, wexp, gexp, s.ID)
	}
	require.Len(t, locs, 3, "Europe/Berlin, Asia/Tokyo and America/New_York")
	require.Len(t, crons, 4)
}

// TestRulesCronPerSpelling: schedules that differ only by blanks or a
// zone prefix (CRON_TZ=, TZ=) are each parsed as written, not taken from
// another's entry in Rules' cache: each rule is due when the rule of its
// own schedule, parsed alone, is.
func TestRulesCronPerSpelling(t *testing.T) {
	specs := []string{"0 3 * * *", " 0 3 * * *", "0 3 * * * ", "CRON_TZ=Asia/Tokyo 0 3 * * *", "TZ=America/New_York 0 3 * * *",
		"CRON_TZ=Asia/Tokyo  0 3 * * *", "0  3 * * *"}
	var b strings.Builder
	b.WriteString("version: 1\nstores:\n  - {name: local, files: {dir: out}}\nsecrets:\n")
	for i, spec := range specs {
		// Two secrets per schedule, with windows of their own: rules of
		// their own that share the parsed schedule.
		for k := range 2 {
			fmt.Fprintf(&b, "  - {id: c/c%d-%d, class: admin_token, cron: '%s', rotator: {token: {}}, publish: [{store: local, path: c%d-%d}], window: {days: [mon, wed, fri], hours: '0%d:00-23:00'}}\n",
				i, k, spec, i, k, k)
		}
	}
	f, err := policy.Parse("policies.yaml", []byte(b.String()))
	require.NoError(t, err)
	rules, err := Rules(f)
	require.NoError(t, err)
	last := time.Date(2026, 11, 20, 13, 7, 0, 0, time.UTC)
	now := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	for _, s := range f.Secrets {
		set := f.Settings(s)
		alone := *rules[s.ID]
		alone.Cron, err = ParseCron(set.Cron)
		require.NoError(t, err)
		want, _, err := alone.Next(s.ID, last, now)
		require.NoError(t, err)
		got, _, err := rules[s.ID].Next(s.ID, last, now)
		require.NoError(t, err)
		require.True(t, want.Equal(got), "%s (%q): due %v, its schedule alone %v", s.ID, set.Cron, got, want)
	}
}
