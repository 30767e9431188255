package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSettingsPrecedence(t *testing.T) {
	t.Parallel()
	const secretHead = "  - id: db/postgres\n    class: database\n"
	tests := []struct {
		name     string
		defaults string // under defaults:
		class    string // under classes.database:
		secret   string // added to the secret
		slack    string // under notify:
		want     func(*Settings)
	}{
		{
			name: "built-in defaults",
			want: func(s *Settings) {},
		},
		{
			name:     "file defaults over built-ins",
			defaults: "  grace: 1h\n  monitor: 1m\n  on_timeout: proceed\n  jitter: 0s\n  time_zone: Europe/Berlin\n  retry: {attempts: 5, next_run: 2h, quarantine_after: 0}\n",
			want: func(s *Settings) {
				s.Grace, s.Monitor, s.OnTimeout, s.Jitter, s.TimeZone = time.Hour, time.Minute, OnTimeoutProceed, 0, "Europe/Berlin"
				s.Retry.Attempts, s.Retry.NextRun, s.Retry.QuarantineAfter = 5, 2*time.Hour, 0
			},
		},
		{
			name:     "class over defaults",
			defaults: "  grace: 1h\n  retry: {attempts: 5, initial: 1s}\n",
			class:    "    interval: 30d\n    grace: 2h\n    retry: {initial: 5s, max: 2m}\n    slack_channel: '#db'\n",
			want: func(s *Settings) {
				s.Interval, s.Grace = 30*Day, 2*time.Hour
				s.Retry = Retry{Attempts: 5, Initial: 5 * time.Second, Max: 2 * time.Minute, NextRun: time.Hour, QuarantineAfter: 3}
				s.SlackChannel = "#db"
			},
		},
		{
			name:   "secret over class",
			class:  "    grace: 2h\n    on_timeout: proceed\n    slack_channel: '#db'\n",
			secret: "    interval: 7d\n    grace: 30s\n    monitor: 0s\n    on_timeout: hold\n    jitter: 1m\n    retry: {max: 5m}\n    adopt_age: true\n    slack_channel: '#app'\n",
			want: func(s *Settings) {
				s.Interval, s.Grace, s.Monitor, s.OnTimeout, s.Jitter = 7*Day, 30*time.Second, 0, OnTimeoutHold, time.Minute
				s.Retry.Max = 5 * time.Minute
				s.AdoptAge, s.SlackChannel = true, "#app"
			},
		},
		{
			name:   "cron",
			secret: "    cron: '@weekly'\n",
			want:   func(s *Settings) { s.Cron = "@weekly" },
		},
		{
			name:  "slack channel from notify",
			slack: "  slack: {webhook_url: {env: HOOK}, channel: '#ops'}\n",
			want:  func(s *Settings) { s.SlackChannel = "#ops" },
		},
		{
			name:     "window taken whole; time zone from defaults",
			defaults: "  time_zone: Asia/Tokyo\n  window: {days: [sat], hours: '01:00-02:00'}\n",
			class:    "    window: {days: [mon, tue]}\n",
			want: func(s *Settings) {
				s.TimeZone = "Asia/Tokyo"
				s.Window = &WindowSpec{Days: []string{"mon", "tue"}, TimeZone: "Asia/Tokyo"}
			},
		},
		{
			name:   "secret window with its own zone",
			class:  "    window: {days: [mon, tue]}\n",
			secret: "    window: {hours: '22:00-04:00', time_zone: UTC, blackouts: ['2026-12-24']}\n",
			want: func(s *Settings) {
				s.Window = &WindowSpec{Hours: "22:00-04:00", TimeZone: "UTC", Blackouts: []string{"2026-12-24"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := "stores: [{name: local, files: {dir: out}}]\n"
			if tt.defaults != "" {
				data += "defaults:\n" + tt.defaults
			}
			if tt.class != "" {
				data += "classes:\n  database:\n" + tt.class
			}
			if tt.slack != "" {
				data += "notify:\n" + tt.slack
			}
			data += "secrets:\n" + secretHead + tt.secret +
				"    rotator: {postgres: {admin_dsn: {env: X}, role: app}}\n    publish: [{store: local, path: p}]\n"
			f, err := Parse("p.yaml", []byte(data))
			require.NoError(t, err, data)
			s, ok := f.Secret("db/postgres")
			require.True(t, ok)

			want := Settings{
				Class: "database", Interval: 90 * Day,
				Grace: 10 * time.Minute, Monitor: 5 * time.Minute, OnTimeout: "hold",
				Retry:  Retry{Attempts: 3, Initial: 2 * time.Second, Max: time.Minute, NextRun: time.Hour, QuarantineAfter: 3},
				Jitter: 30 * time.Minute, TimeZone: "UTC",
			}
			tt.want(&want)
			got := f.Settings(s)
			if got.Window != nil {
				got.Window.Pos = Position{}
			}
			require.Equal(t, want, got)
		})
	}
}

func TestSettingsEffectiveRetry(t *testing.T) {
	t.Parallel()
	data := "classes:\n  database:\n    retry: {initial: 1m}\n" + base + "    retry: {max: 10s}\n"
	_, err := Parse("p.yaml", []byte(data))
	require.EqualError(t, err, "p.yaml:16:12: secrets[0].retry: the effective retry max (10s) is shorter than initial (1m) once merged with the class and defaults: set both here")
}

func TestLookups(t *testing.T) {
	t.Parallel()
	f, err := Parse("dir/p.yaml", []byte(base))
	require.NoError(t, err)
	_, ok := f.Secret("nope")
	require.False(t, ok)
	st, ok := f.Store("local")
	require.True(t, ok)
	require.Equal(t, "files", st.Type())
	require.Equal(t, "json", st.Files.Format, "default filled in")
	_, ok = f.Store("nope")
	require.False(t, ok)
	require.Equal(t, f.Dir()+"/out", f.ResolvePath(st.Files.Dir))
	require.Equal(t, "/abs", f.ResolvePath("/abs"))
	require.Equal(t, "database", f.Secrets[0].Class)
	require.Equal(t, 90*Day, f.Classes["database"].Interval.D(), "built-in classes merged")
	require.Equal(t, 30*Day, f.Classes["admin_token"].Interval.D())
}
