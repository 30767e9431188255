package main_test

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// statusOf returns `rotator status -o json`'s row of one secret.
func (c *cli) statusOf(id string) map[string]any {
	c.t.Helper()
	r := c.run("status", "-o", "json")
	require.Equal(c.t, 0, r.code, r.stderr)
	var rows []map[string]any
	require.NoError(c.t, json.Unmarshal([]byte(r.stdout), &rows))
	for _, row := range rows {
		if row["id"] == id {
			return row
		}
	}
	c.t.Fatalf("status has no row for %s: %s", id, r.stdout)
	return nil
}

// A successful run lifts a quarantine (issue 11): after the cause of the
// failures is fixed, a person's `rotator run --secret X` that succeeds
// makes the secret active again, with its failure count reset, as
// docs/decisions.md says.
func TestCLISuccessLiftsQuarantine(t *testing.T) {
	c := newCLI(t)
	policy := strings.Replace(policyYAML, "    grace: 30s\n", "    grace: 30s\n    retry: {attempts: 1, quarantine_after: 2}\n", 1)
	require.NotEqual(t, policyYAML, policy)
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(policy), 0o600))
	for _, args := range [][]string{{"migrate"}, {"init", "--secret", "db/postgres"}} {
		r := c.run(args...)
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
	}

	// The admin credential is wrong: every run fails at generate; the
	// second failure in a row quarantines the secret.
	good := c.envValue("ROTATOR_PG_ADMIN_DSN")
	u, err := url.Parse(good)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), "not-the-admin-password")
	saved := c.env
	c.env = append(c.withoutEnv("ROTATOR_PG_ADMIN_DSN"), "ROTATOR_PG_ADMIN_DSN="+u.String())
	for i := 1; i <= 2; i++ {
		r := c.run("run", "--secret", "db/postgres")
		require.Equal(t, 3, r.code, "run %d: %s", i, r.stdout+r.stderr)
		require.Contains(t, r.stdout, "db/postgres: FAILED")
	}
	c.env = saved
	row := c.statusOf("db/postgres")
	require.Equal(t, "quarantined", row["status"])
	require.EqualValues(t, 2, row["consecutive_failures"])
	require.Equal(t, "failed", row["last_outcome"])

	// Fixed: a manual run succeeds and lifts the quarantine.
	r := c.run("run", "--secret", "db/postgres")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "db/postgres: rotated")
	row = c.statusOf("db/postgres")
	require.Equal(t, "active", row["status"], "a successful run lifts the quarantine")
	require.EqualValues(t, 0, row["consecutive_failures"])
	require.Equal(t, "succeeded", row["last_outcome"])
	require.NotContains(t, c.all.String(), "not-the-admin-password", "no admin password in any output")
}
