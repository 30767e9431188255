package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
)

func testDSN() string {
	if d := os.Getenv("ROTATOR_TEST_MYSQL_DSN"); d != "" {
		return d
	}
	return "root@tcp(127.0.0.1:3306)/"
}

func randName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// poolOfOne is an admin pool of one connection on the test server.
func poolOfOne(t *testing.T) *adminPool {
	t.Helper()
	cfg, err := driver.ParseDSN(testDSN())
	require.NoError(t, err)
	a, err := newAdminPool(cfg, 1)
	require.NoError(t, err)
	t.Cleanup(a.close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.db.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB at %s does not answer (%v): start it (systemctl start mariadb), or set ROTATOR_TEST_MYSQL_DSN", testDSN(), err)
	}
	return a
}

func connID(t *testing.T, c *sql.Conn) int64 {
	t.Helper()
	var id int64
	require.NoError(t, c.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id))
	return id
}

// TestReleaseLockUnconfirmedClosesTheSession: a named lock is session
// state, and a pooled session serves the next caller. A release the
// server confirms hands the session back to the pool; one it does not
// (here: the release names a lock the session does not hold, so the one
// it holds stays) closes the session, and the server frees its lock with
// it, instead of the next caller's session holding it.
func TestReleaseLockUnconfirmedClosesTheSession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := poolOfOne(t)
	lock := randName("rt_test_lock_")
	root := poolOfOne(t) // asks who holds the lock, beside a's one connection
	holder := func() int64 {
		var id sql.NullInt64
		require.NoError(t, root.db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", lock).Scan(&id))
		return id.Int64
	}

	c, err := a.db.Conn(ctx)
	require.NoError(t, err)
	first := connID(t, c)
	var got int
	require.NoError(t, c.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got))
	require.Equal(t, 1, got)
	releaseLock(ctx, c, lock)
	require.NoError(t, c.Close())
	require.Zero(t, holder(), "released")

	c, err = a.db.Conn(ctx)
	require.NoError(t, err)
	require.Equal(t, first, connID(t, c), "a confirmed release keeps the session in the pool")
	require.NoError(t, c.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got))
	require.Equal(t, 1, got)
	releaseLock(ctx, c, lock+"_not_held") // RELEASE_LOCK answers NULL
	_ = c.Close()

	c, err = a.db.Conn(ctx)
	require.NoError(t, err)
	defer c.Close()
	require.NotEqual(t, first, connID(t, c), "the session whose release was not confirmed was closed")
	// The server frees a closed session's locks as its thread ends.
	deadline := time.Now().Add(10 * time.Second)
	for holder() != 0 {
		require.True(t, time.Now().Before(deadline), "connection %d still holds %s", holder(), lock)
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForgetSaysWhatItWaitedFor: a wait for a connection to leave
// PROCESSLIST whose context ends names the connection and what it is,
// not only "context deadline exceeded".
func TestForgetSaysWhatItWaitedFor(t *testing.T) {
	t.Parallel()
	a := poolOfOne(t)
	c, err := a.db.Conn(context.Background()) // a connection that stays
	require.NoError(t, err)
	defer c.Close()
	id := connID(t, c)

	r, err := New(&policy.MySQLSpec{Role: "app"}, secret.New(testDSN()))
	require.NoError(t, err)
	defer r.Close()
	_, err = r.admin(context.Background()) // checked: forget's wait is what ends
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = r.forget(ctx, id, "the login test's connection")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "wait for the login test's connection")
	require.ErrorContains(t, err, "to leave information_schema.PROCESSLIST at 127.0.0.1:3306")
}
