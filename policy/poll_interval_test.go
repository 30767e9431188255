package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The polling checks' interval: built-in defaults when unset, the value
// written otherwise, and an error at its file:line:column when it is out
// of 1s..1h.
func TestPollIntervals(t *testing.T) {
	t.Parallel()
	f, err := Parse("policies.yaml", []byte(base+`    checks:
      - delay: 1s
      - http: {urls: ["http://app:8080/v"]}
`))
	require.NoError(t, err)
	s := f.Secrets[0]
	require.Nil(t, s.Checks[0].HTTP)
	require.Equal(t, DefaultHTTPCheckInterval, s.Checks[1].HTTP.Interval.D())
	require.Equal(t, DefaultSessionsInterval, s.SessionsInterval())
	require.Equal(t, time.Second, DefaultSessionsInterval)

	f, err = Parse("policies.yaml", []byte(base+`    checks:
      - sessions: {interval: 3s}
      - http: {urls: ["http://app:8080/v"], interval: 10s}
`))
	require.NoError(t, err)
	s = f.Secrets[0]
	require.Equal(t, 3*time.Second, s.SessionsInterval())
	require.Equal(t, 10*time.Second, s.Checks[1].HTTP.Interval.D())

	for _, tc := range []struct{ checks, want string }{
		{"      - http: {urls: [\"http://app:8080/v\"], interval: 0s}\n",
			"policies.yaml:14:55: secrets[0].checks[0].http.interval: must be between 1s and 1h"},
		{"      - sessions:\n          interval: 2h\n",
			"policies.yaml:15:21: secrets[0].checks[0].sessions.interval: must be between 1s and 1h"},
		{"      - sessions: {}\n      - sessions: {interval: 2s}\n",
			"policies.yaml:15:19: secrets[0].checks[1].sessions: a secret has at most one sessions entry"},
		{"      - sessions: {interval: 1s, every: 1s}\n", "every"},
	} {
		_, err := Parse("policies.yaml", []byte(base+"    checks:\n"+tc.checks))
		require.ErrorContains(t, err, tc.want)
	}
}
