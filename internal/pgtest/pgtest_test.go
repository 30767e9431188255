package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The cluster must check passwords: that is its whole point.
func TestClusterChecksPasswords(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE ROLE probe LOGIN PASSWORD 'right-password'")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP ROLE probe") })

	good, err := pgx.Connect(ctx, pgtest.UserDSN(dsn, "probe", "right-password"))
	require.NoError(t, err)
	require.NoError(t, good.Close(ctx))

	_, err = pgx.Connect(ctx, pgtest.UserDSN(dsn, "probe", "wrong-password"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "password authentication failed")
}
