package mysql_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
)

// TestServerCheckedOncePerPool: the real server passes the version
// check, and the check is the first statement the admin account sends
// and is sent once for the rotator's admin pool, not before each
// statement, across init, two rotations, a client count, a retire and a
// restore. The server's general log shows it: every statement of an
// admin account of the test's own, as the server received it.
func TestServerCheckedOncePerPool(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	admin, pw := f.role+"_adm", randHex(16)
	_, err := f.root.ExecContext(ctx, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", admin, pw))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = f.root.ExecContext(context.Background(), fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", admin))
	})
	_, err = f.root.ExecContext(ctx, fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%' WITH GRANT OPTION", admin))
	require.NoError(t, err)

	var output, general string
	require.NoError(t, f.root.QueryRow("SELECT @@GLOBAL.log_output, @@GLOBAL.general_log").Scan(&output, &general))
	_, err = f.root.Exec("SET GLOBAL log_output = 'TABLE,FILE'")
	require.NoError(t, err)
	_, err = f.root.Exec("SET GLOBAL general_log = ON")
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = f.root.ExecContext(ctx, "SET GLOBAL general_log = "+general)
		_, _ = f.root.ExecContext(ctx, "SET GLOBAL log_output = '"+output+"'")
	})

	r := f.rotator(t, fmt.Sprintf("%s:%s@tcp(127.0.0.1:3306)/", admin, pw))
	_, err = r.Init(ctx)
	require.NoError(t, err, "the server on this machine is a supported MariaDB")
	a, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "r1", Fence: rotation.Fence{Token: 1, RunID: "r1"}})
	require.NoError(t, err)
	b, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "r2", Current: a.Credential.Meta(), Fence: rotation.Fence{Token: 2, RunID: "r2"}})
	require.NoError(t, err)
	_, err = r.Clients(ctx, rotation.ClientsRequest{Old: a.Credential.Meta()})
	require.NoError(t, err)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: a.Credential.Meta(), New: b.Credential.Meta(), Fence: rotation.Fence{Token: 2}}))
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: a.Credential.Meta(), Fence: rotation.Fence{Token: 2}}))

	_, err = f.root.Exec("SET GLOBAL general_log = OFF")
	require.NoError(t, err)
	// The admin account's statements, in the order the server got them
	// (user_host is "name[name] @ host [ip]").
	rows, err := f.root.QueryContext(ctx, `SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log
		WHERE command_type IN ('Query', 'Execute', 'Prepare') AND user_host LIKE ? ORDER BY event_time, thread_id`, admin+"[%")
	require.NoError(t, err)
	defer rows.Close()
	var stmts []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		stmts = append(stmts, s)
	}
	require.NoError(t, rows.Err())
	require.Greater(t, len(stmts), 10, "the log captured the admin account's statements: %q", stmts)
	require.Contains(t, stmts[0], "server version check", "the check is the first statement: %q", stmts[:3])
	checks := 0
	for _, s := range stmts {
		if strings.Contains(s, "server version check") {
			checks++
		}
	}
	require.Equal(t, 1, checks, "one check for the pool, among %d statements", len(stmts))
}
