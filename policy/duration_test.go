package policy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "90d", want: 90 * Day},
		{in: "12h", want: 12 * time.Hour},
		{in: "30m", want: 30 * time.Minute},
		{in: "45s", want: 45 * time.Second},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "1d2h3m4s", want: Day + 2*time.Hour + 3*time.Minute + 4*time.Second},
		{in: "0s", want: 0},
		{in: "", wantErr: `expected a duration such as 90d, 12h or 30m, got ""`},
		{in: "90", wantErr: `expected a duration such as 90d, 12h or 30m, got the bare number 90 (add a unit)`},
		{in: "1.5h", wantErr: `expected a duration such as 90d, 12h or 30m, got "1.5h"`},
		{in: "-1d", wantErr: `must not be negative: expected a duration such as 90d, 12h or 30m, got "-1d"`},
		{in: "30m1h", wantErr: `expected a duration such as 90d, 12h or 30m, got "30m1h"`},
		{in: "1w", wantErr: `expected a duration such as 90d, 12h or 30m, got "1w"`},
		{in: "90D", wantErr: `expected a duration such as 90d, 12h or 30m, got "90D"`},
		{in: "d", wantErr: `expected a duration such as 90d, 12h or 30m, got "d"`},
		{in: "1 d", wantErr: `expected a duration such as 90d, 12h or 30m, got "1 d"`},
		{in: "999999999999d", wantErr: `"999999999999d" is too long: expected a duration such as 90d, 12h or 30m`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.D())
		})
	}
}

func TestDurationString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{90 * Day, "90d"},
		{12*time.Hour + 30*time.Minute, "12h30m"},
		{36 * time.Hour, "1d12h"},
		{45 * time.Second, "45s"},
		{Day + time.Second, "1d1s"},
		{1500 * time.Millisecond, "1s500ms"},
		{-2 * time.Hour, "-2h"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			d := Duration(tt.in)
			require.Equal(t, tt.want, d.String())
			b, err := json.Marshal(d)
			require.NoError(t, err)
			require.JSONEq(t, `"`+tt.want+`"`, string(b))
			if tt.in >= 0 && tt.in%time.Second == 0 {
				back, err := ParseDuration(d.String())
				require.NoError(t, err)
				require.Equal(t, d, back, "String and ParseDuration round-trip")
				var u Duration
				require.NoError(t, json.Unmarshal(b, &u))
				require.Equal(t, d, u)
			}
		})
	}
}
