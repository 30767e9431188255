package main_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Bad flags are usage errors (exit 2) with a clear message, checked
// before the state database is asked: never a raw SQL error.
func TestCLIBadHistoryFlags(t *testing.T) {
	t.Parallel()
	c := &cli{t: t, dir: t.TempDir(), env: append(os.Environ(), "DATABASE_URL=postgres://rotator@127.0.0.1:1/rotator", "ROTATOR_POLICIES=")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"history", "--secret", "db/postgres", "--limit", "-1"}, "--limit -1: want a number of runs, 1 or more"},
		{[]string{"history", "--secret", "db/postgres", "--limit", "0"}, "--limit 0: want a number of runs, 1 or more"},
		{[]string{"history", "--secret", "db/postgres", "--limit", "many"}, "invalid argument \"many\""},
		{[]string{"history", "--secret", "db/postgres", "-o", "yaml"}, "-o \"yaml\": want table or json"},
	} {
		r := c.run(tc.args...)
		require.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want)
		require.NotContains(t, r.stderr, "SQLSTATE")
		require.NotContains(t, r.stderr, "state database")
	}
}

// The status page is never open on the shared --listen address: without a
// token it must have an address of its own. Checked before anything opens.
func TestCLIStatusPageNeedsTokenOrOwnAddress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &cli{t: t, dir: dir, env: append(os.Environ(), "DATABASE_URL=postgres://rotator@127.0.0.1:1/rotator", "ROTATOR_POLICIES=",
		"ROTATOR_STATUS_PAGE_TOKEN=", "ROTATOR_STATUS_PAGE_LISTEN=")}
	r := c.run("daemon", "--status-page")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--status-page on the --listen address needs a token")
	require.Contains(t, r.stderr, "--status-page-listen 127.0.0.1:8080")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600))
	r = c.run("daemon", "--status-page", "--status-page-token-file", "empty")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "is empty")
}
