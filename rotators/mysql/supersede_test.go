package mysql_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
)

// TestSupersededAdminPoolCloses: an operator changes the admin
// account's password and the admin DSN with it; the wiring resolves the
// DSN at each target, so the next rotators are built with the new one,
// on a new shared pool. MariaDB keeps the sessions authenticated with
// the old password, and the daemon's generation (which holds the shared
// pools) lasts until a reload: the old DSN's pool must not keep them
// (nor itself) that long. A rotator still using it (a run in flight)
// keeps working; once the last one is closed, its sessions end. The new
// DSN's pool stays open when its rotators are closed.
func TestSupersededAdminPoolCloses(t *testing.T) {
	ctx := ctxT(t)
	f := newFixture(t)
	f.initialized(t)
	admin := "rtadm_" + randHex(4)
	pw1 := "Pw1" + randHex(8)
	_, err := f.root.ExecContext(ctx, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", admin, pw1))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = f.root.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", admin)) })
	_, err = f.root.ExecContext(ctx, fmt.Sprintf("GRANT SELECT ON mysql.* TO '%s'@'%%'", admin))
	require.NoError(t, err)
	_, err = f.root.ExecContext(ctx, fmt.Sprintf("GRANT PROCESS ON *.* TO '%s'@'%%'", admin))
	require.NoError(t, err)
	dsn := func(pw string) secret.Value { return secret.New(admin + ":" + pw + "@tcp(127.0.0.1:3306)/") }
	sessions := func() []int64 {
		t.Helper()
		rows, err := f.root.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? ORDER BY ID", admin)
		require.NoError(t, err)
		defer rows.Close()
		var ids []int64
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			ids = append(ids, id)
		}
		require.NoError(t, rows.Err())
		return ids
	}
	pools := mysql.NewPools()
	t.Cleanup(pools.Close)
	// Clients: the server check and a PROCESSLIST count on the admin pool.
	call := func(r *mysql.Rotator) error {
		_, err := r.Clients(ctx, rotation.ClientsRequest{SecretID: "m", Old: rotation.CredentialMeta{Username: f.role + "_green"}})
		return err
	}

	inFlight, err := mysql.New(f.spec(), dsn(pw1), mysql.WithPools(pools))
	require.NoError(t, err)
	defer inFlight.Close()
	require.NoError(t, call(inFlight))
	old := sessions()
	require.NotEmpty(t, old)

	pw2 := "Pw2" + randHex(8)
	_, err = f.root.ExecContext(ctx, fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s'", admin, pw2))
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		r, err := mysql.New(f.spec(), dsn(pw2), mysql.WithPools(pools))
		require.NoError(t, err)
		require.NoError(t, call(r))
		r.Close()
	}
	require.NoError(t, call(inFlight), "a rotator still using the old DSN's pool keeps working")
	require.Subset(t, sessions(), old)

	inFlight.Close()
	deadline := time.Now().Add(10 * time.Second) // the pool's idle timeout is a minute
	for {
		now := sessions()
		left := 0
		for _, id := range old {
			for _, n := range now {
				if n == id {
					left++
				}
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d session(s) authenticated with the replaced admin password are still open after the last rotator using them was closed (ids %v of %v)", left, old, now)
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NotEmpty(t, sessions(), "the current DSN's pool keeps its connections")
	r, err := mysql.New(f.spec(), dsn(pw2), mysql.WithPools(pools))
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, call(r))
}
