package schedule

import (
	"testing"
	"time"
	_ "time/tzdata" // the tests need Europe/Berlin and America/New_York anywhere

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func mustWindow(t *testing.T, spec policy.WindowSpec) *Window {
	t.Helper()
	w, err := CompileWindow(&spec, "")
	require.NoError(t, err)
	return w
}

func TestCompileWindow(t *testing.T) {
	t.Parallel()
	berlin := mustLoc(t, "Europe/Berlin")
	tests := []struct {
		name      string
		spec      *policy.WindowSpec
		defaultTZ string
		want      *Window
		wantErr   string
	}{
		{name: "nil spec is no window", spec: nil, want: nil},
		{
			name: "days hours zone blackouts",
			spec: &policy.WindowSpec{Days: []string{"tue", "Mon", "tuesday"}, Hours: "02:00-05:00", TimeZone: "Europe/Berlin",
				Blackouts: []string{"2026-12-24", "2026-12-20..2027-01-02"}},
			want: &Window{Days: []time.Weekday{time.Monday, time.Tuesday}, Start: 2 * time.Hour, End: 5 * time.Hour, Loc: berlin,
				Blackouts: []DateRange{
					{Date{2026, 12, 24}, Date{2026, 12, 24}},
					{Date{2026, 12, 20}, Date{2027, 1, 2}},
				}},
		},
		{
			name: "default zone, wraps midnight",
			spec: &policy.WindowSpec{Hours: "22:00-04:30"}, defaultTZ: "Europe/Berlin",
			want: &Window{Start: 22 * time.Hour, End: 4*time.Hour + 30*time.Minute, Loc: berlin},
		},
		{name: "UTC when no zone at all", spec: &policy.WindowSpec{}, want: &Window{Loc: time.UTC}},
		{name: "all seven days is every day", spec: &policy.WindowSpec{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}}, want: &Window{Loc: time.UTC}},
		{name: "00:00-24:00 is all day", spec: &policy.WindowSpec{Hours: "00:00-24:00"}, want: &Window{Loc: time.UTC}},
		{name: "to midnight", spec: &policy.WindowSpec{Hours: "22:00-24:00"}, want: &Window{Start: 22 * time.Hour, End: 24 * time.Hour, Loc: time.UTC}},
		{name: "unknown day", spec: &policy.WindowSpec{Days: []string{"mo"}}, wantErr: `window days: unknown day "mo"`},
		{name: "bad hours", spec: &policy.WindowSpec{Hours: "2:00-05:00"}, wantErr: `window hours "2:00-05:00": want HH:MM-HH:MM`},
		{name: "hour 25", spec: &policy.WindowSpec{Hours: "22:00-25:00"}, wantErr: "want HH:MM-HH:MM"},
		{name: "start 24:00", spec: &policy.WindowSpec{Hours: "24:00-02:00"}, wantErr: "want HH:MM-HH:MM"},
		{name: "empty window", spec: &policy.WindowSpec{Hours: "03:00-03:00"}, wantErr: "the window is empty"},
		{name: "bad zone", spec: &policy.WindowSpec{TimeZone: "Mars/Olympus"}, wantErr: `window time zone "Mars/Olympus"`},
		{name: "bad blackout", spec: &policy.WindowSpec{Blackouts: []string{"2026-13-01"}}, wantErr: `window blackout "2026-13-01": want a date YYYY-MM-DD`},
		{name: "reversed blackout", spec: &policy.WindowSpec{Blackouts: []string{"2027-01-02..2026-12-20"}}, wantErr: "range ends before it starts"},
		{
			name:    "error carries the position",
			spec:    &policy.WindowSpec{Hours: "x", Pos: policy.Position{File: "policies.yaml", Line: 7, Column: 5}},
			wantErr: `policies.yaml:7:5: window hours "x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := CompileWindow(tt.spec, tt.defaultTZ)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestWindowContains(t *testing.T) {
	t.Parallel()
	berlin := mustLoc(t, "Europe/Berlin")
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, berlin) }
	// 2026-11-02 is a Monday.
	wrapMon := mustWindow(t, policy.WindowSpec{Days: []string{"mon"}, Hours: "22:00-04:00", TimeZone: "Europe/Berlin"})
	wrapBlackout := mustWindow(t, policy.WindowSpec{Hours: "22:00-04:00", TimeZone: "Europe/Berlin", Blackouts: []string{"2026-12-24"}})
	weekend := mustWindow(t, policy.WindowSpec{Days: []string{"sat", "sun"}, TimeZone: "Europe/Berlin"})
	tests := []struct {
		name string
		w    *Window
		t    time.Time
		want bool
	}{
		{"nil window allows all", nil, at(2026, 11, 2, 12, 0), true},
		{"wrap: Monday at opening", wrapMon, at(2026, 11, 2, 22, 0), true},
		{"wrap: Monday before opening", wrapMon, at(2026, 11, 2, 21, 59), false},
		{"wrap: Tuesday morning belongs to Monday", wrapMon, at(2026, 11, 3, 3, 59), true},
		{"wrap: end excluded", wrapMon, at(2026, 11, 3, 4, 0), false},
		{"wrap: Monday morning belongs to Sunday", wrapMon, at(2026, 11, 2, 1, 0), false},
		{"wrap: Tuesday night not allowed", wrapMon, at(2026, 11, 3, 23, 0), false},
		{"blackout: evening of the blackout date", wrapBlackout, at(2026, 12, 24, 23, 0), false},
		{"blackout: morning of the blackout date", wrapBlackout, at(2026, 12, 24, 1, 0), false},
		{"blackout: after midnight of the blackout occurrence", wrapBlackout, at(2026, 12, 25, 0, 0), true},
		{"all day weekend: Saturday", weekend, at(2026, 11, 7, 0, 0), true},
		{"all day weekend: Sunday last second", weekend, at(2026, 11, 8, 23, 59), true},
		{"all day weekend: Monday", weekend, at(2026, 11, 9, 0, 0), false},
		{"zone: 01:30 UTC is 02:30 in Berlin", mustWindow(t, policy.WindowSpec{Hours: "02:00-03:00", TimeZone: "Europe/Berlin"}), time.Date(2026, 1, 5, 1, 30, 0, 0, time.UTC), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.w.Contains(tt.t))
		})
	}
}

func TestWindowString(t *testing.T) {
	t.Parallel()
	w := mustWindow(t, policy.WindowSpec{Days: []string{"tue"}, Hours: "02:00-05:00", TimeZone: "Europe/Berlin", Blackouts: []string{"2026-12-20..2027-01-02"}})
	require.Equal(t, "Tue 02:00–05:00 Europe/Berlin except 2026-12-20..2027-01-02", w.String())
	require.Equal(t, "every day all day UTC", mustWindow(t, policy.WindowSpec{}).String())
	require.Equal(t, "any time", (*Window)(nil).String())
}
