package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// defaults.check.interval sets how often the daemon checks the published
// credentials: 15m when unset, at least 1m, reported at its position.
func TestCheckInterval(t *testing.T) {
	t.Parallel()
	f, err := Parse("policies.yaml", []byte(base))
	require.NoError(t, err)
	require.Equal(t, DefaultCheckInterval, f.CheckInterval())
	require.Equal(t, 15*time.Minute, DefaultCheckInterval)

	f, err = Parse("policies.yaml", []byte("defaults:\n  check: {interval: 5m}\n"+base))
	require.NoError(t, err)
	require.Equal(t, 5*time.Minute, f.CheckInterval())

	_, err = Parse("policies.yaml", []byte("defaults:\n  check:\n    interval: 30s\n"+base))
	require.ErrorContains(t, err, "policies.yaml:3:15: defaults.check.interval: must be at least 1m")

	_, err = Parse("policies.yaml", []byte("defaults:\n  check: {every: 5m}\n"+base))
	require.ErrorContains(t, err, "every")
}
