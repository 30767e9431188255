package mysql_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
)

// TestNoPlaintextReachesServer: with the server's general log on (every
// statement every session sends, as the server received it), a full
// cycle (init, two re-keys, retire, restore, discard, logins) leaves no
// generated password in it, while the hashes sent in their place are
// there, which shows that the log captured the ALTER USER statements.
func TestNoPlaintextReachesServer(t *testing.T) {
	f := newFixture(t)
	var output, general string
	require.NoError(t, f.root.QueryRow("SELECT @@GLOBAL.log_output, @@GLOBAL.general_log").Scan(&output, &general))
	_, err := f.root.Exec("SET GLOBAL log_output = 'TABLE,FILE'")
	require.NoError(t, err)
	_, err = f.root.Exec("SET GLOBAL general_log = ON")
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = f.root.ExecContext(ctx, "SET GLOBAL general_log = "+general)
		_, _ = f.root.ExecContext(ctx, "SET GLOBAL log_output = '"+output+"'")
	})
	var since string
	require.NoError(t, f.root.QueryRow("SELECT NOW(6)").Scan(&since))

	r := f.initialized(t)
	ctx := ctxT(t)
	a, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "r1", Fence: rotation.Fence{Token: 1, RunID: "r1"}})
	require.NoError(t, err)
	b, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "r2", Current: a.Credential.Meta(), Fence: rotation.Fence{Token: 2, RunID: "r2"}})
	require.NoError(t, err)
	require.NoError(t, r.Test(ctx, rotation.TestRequest{Credential: b.Credential}))
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: a.Credential.Meta(), New: b.Credential.Meta(), Fence: rotation.Fence{Token: 2}}))
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: a.Credential.Meta(), Fence: rotation.Fence{Token: 2}}))
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{New: a.Credential.Meta(), Current: b.Credential.Meta(), Fence: rotation.Fence{Token: 2}}))
	require.NoError(t, login(b.Credential.Username, b.Credential.Secret.Reveal()))
	// The search below would log its own statements: the log stops first.
	_, err = f.root.Exec("SET GLOBAL general_log = OFF")
	require.NoError(t, err)
	var until string
	require.NoError(t, f.root.QueryRow("SELECT NOW(6)").Scan(&until))

	count := func(s string) int {
		var n int
		require.NoError(t, f.root.QueryRow("SELECT COUNT(*) FROM mysql.general_log WHERE event_time BETWEEN ? AND ? AND LOCATE(?, CONVERT(argument USING utf8mb4)) > 0", since, until, s).Scan(&n))
		return n
	}
	var total int
	require.NoError(t, f.root.QueryRow("SELECT COUNT(*) FROM mysql.general_log WHERE event_time BETWEEN ? AND ?", since, until).Scan(&total))
	t.Logf("general log: %d entries during the cycle", total)
	for _, c := range []rotation.Credential{a.Credential, b.Credential} {
		require.Zero(t, count(c.Secret.Reveal()), "a password reached the server in a statement")
		require.Positive(t, count(mysql.NativeHash(c.Secret)), "the log holds the ALTER USER of %s (its hash)", c.Username)
	}
	require.Positive(t, count("ACCOUNT LOCK"))
}
