package main_test

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/pgtest"
)

// runBinary runs bin in e's directory with e's environment plus extra.
func runBinary(t *testing.T, e *env, bin string, extra []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = e.dir
	cmd.Env = append(append([]string(nil), e.vars...), extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// TestReleaseBuildHasNoFaultInjection: the binary `make build` makes (no
// rotatortest tag) ignores ROTATOR_TEST_FAULT, which the test build obeys,
// and holds --lease-ttl to its 5s floor with a clear error.
func TestReleaseBuildHasNoFaultInjection(t *testing.T) {
	t.Parallel()
	release, err := clitest.BuildRelease(".", t.TempDir())
	require.NoError(t, err)
	stateDSN := pgtest.NewDatabase(t)
	e := newEnv(t, stateDSN, tokenPolicy("tok/a", "tok/b"))
	e.must("migrate")
	fault := []string{"ROTATOR_TEST_FAULT=exit:after:generate", "ROTATOR_LEASE_TTL=30s"}

	// The test build stops where the fault says.
	r := e.run(fault, "run", "--secret", "tok/a")
	require.Equal(t, 137, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "ROTATOR_TEST_FAULT exit")

	// The release build does not know the variable: it rotates.
	r = runBinary(t, e, release, fault, "run", "--secret", "tok/b")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "tok/b: rotated")
	require.NotContains(t, r.stderr, "ROTATOR_TEST_FAULT")

	// --lease-ttl: documented, validated, with a floor.
	r = runBinary(t, e, release, nil, "--help")
	require.Contains(t, r.stdout, "--lease-ttl / ROTATOR_LEASE_TTL")
	r = runBinary(t, e, release, nil, "status", "--lease-ttl", "2s")
	require.Equal(t, 2, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "--lease-ttl (or ROTATOR_LEASE_TTL) 2s is too short: want at least 5s")
	r = runBinary(t, e, release, []string{"ROTATOR_LEASE_TTL=soon"}, "status")
	require.Equal(t, 2, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, `"soon": want a duration`)
	r = runBinary(t, e, release, nil, "status", "--lease-ttl", "45s")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
}
