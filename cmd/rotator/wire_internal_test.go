package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/checks"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// The checks' pace reaches the engine: a sessions entry sets the session
// count's interval and adds no check; an http check keeps its interval; a
// delay stays a rotation.Delay; without a sessions entry the count runs
// every policy.DefaultSessionsInterval.
func TestTargetTakesTheChecksPace(t *testing.T) {
	t.Parallel()
	const pol = `stores: [{name: local, files: {dir: out}}]
secrets:
  - id: db/a
    class: database
    rotator: {postgres: {admin_dsn: {env: DSN}, role: a}}
    publish: [{store: local, path: a}]
    checks: [{delay: 1s}, {sessions: {interval: 3s}}, {http: {urls: ["http://app:8080/v"], interval: 9s}}]
  - id: db/b
    class: database
    rotator: {postgres: {admin_dsn: {env: DSN}, role: b}}
    publish: [{store: local, path: b}]
`
	f, err := policy.Parse("policies.yaml", []byte(pol))
	require.NoError(t, err)
	a, err := baseTarget(f, f.Secrets[0], nil)
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, a.ClientsInterval)
	require.Zero(t, a.Poll, "the CLI never sets the engine's test knob")
	require.Len(t, a.Checks, 2)
	require.Equal(t, rotation.Delay{D: time.Second}, a.Checks[0])
	require.Equal(t, 9*time.Second, a.Checks[1].(*checks.HTTP).Interval)
	b, err := baseTarget(f, f.Secrets[1], nil)
	require.NoError(t, err)
	require.Equal(t, policy.DefaultSessionsInterval, b.ClientsInterval)
}
