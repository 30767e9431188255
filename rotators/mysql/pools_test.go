package mysql_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
	"github.com/rotator/rotator/rotators/rotatortest"
)

// The conformance suite on shared admin pools: every rotator of the
// suite takes its admin pool from one Pools.
func TestConformanceSharedPools(t *testing.T) {
	pools := mysql.NewPools()
	t.Cleanup(pools.Close)
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator {
			f := newFixture(t)
			r, err := mysql.New(f.spec(), secret.New(rootDSN()), mysql.WithPools(pools))
			require.NoError(t, err)
			t.Cleanup(r.Close)
			_, err = r.Init(ctxT(t))
			require.NoError(t, err)
			return r
		},
		Login: func(t *testing.T, c rotation.Credential) error {
			return login(c.Username, c.Secret.Reveal())
		},
		CanCountClients: true,
		CanRestore:      true,
	})
}

// connections is the server's count of connection attempts so far.
func connections(t *testing.T, root *sql.DB) int {
	t.Helper()
	var name string
	var n int
	require.NoError(t, root.QueryRow("SHOW GLOBAL STATUS LIKE 'Connections'").Scan(&name, &n))
	return n
}

// TestSharedAdminPoolConnections: checks of several secrets on one
// server, each on a rotator built for it and closed after (as the
// daemon's check round and the CLI do), more at once than the pool
// holds, open at most SharedMaxConns admin connections in all, not one
// per check. The server counts: SHOW GLOBAL STATUS 'Connections' rises
// by one per login test (a fresh connection, which proves the login)
// plus the admin connections. Other clients of the server only add to
// the count, so the bound is met by at least one of a few tries (each on
// fresh pools); without sharing, every try opens one admin connection
// per check.
func TestSharedAdminPoolConnections(t *testing.T) {
	ctx := ctxT(t)
	const secrets, perSecret, rounds = 3, 4, 5 // 12 checks at once, 60 in all
	var fs []*fixture
	var creds []rotation.Credential
	for i := 0; i < secrets; i++ {
		f := newFixture(t)
		g, err := f.initialized(t).Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "r1"})
		require.NoError(t, err)
		fs, creds = append(fs, f), append(creds, g.Credential)
	}
	root := fs[0].root
	checks := secrets * perSecret * rounds
	var admin []int
	for try := 0; try < 3; try++ {
		pools := mysql.NewPools()
		before := connections(t, root)
		for round := 0; round < rounds; round++ {
			var wg sync.WaitGroup
			errs := make(chan error, secrets*perSecret)
			for i := range fs {
				for j := 0; j < perSecret; j++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						r, err := mysql.New(fs[i].spec(), secret.New(rootDSN()), mysql.WithPools(pools))
						if err != nil {
							errs <- err
							return
						}
						defer r.Close()
						errs <- r.Test(ctx, rotation.TestRequest{SecretID: "db/m", Credential: creds[i]})
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		}
		opened := connections(t, root) - before - checks // the logins: one each
		pools.Close()
		admin = append(admin, opened)
		if opened <= mysql.SharedMaxConns {
			t.Logf("%d checks of %d secrets opened %d admin connections (try %d)", checks, secrets, opened, try+1)
			return
		}
	}
	t.Fatalf("%d checks of %d secrets on one server opened %v admin connections in three tries; want at most %d (the shared pool's size)",
		checks, secrets, admin, mysql.SharedMaxConns)
}

// fenceLock is the name of the fixture's fence lock (as the rotator names it).
func (f *fixture) fenceLock() string {
	h := sha256.Sum256([]byte(f.role + "@" + f.host))
	return "rotator_fence_" + hex.EncodeToString(h[:16])
}

// lockHolder is the connection that holds the named lock (0: none).
func lockHolder(t *testing.T, root *sql.DB, name string) int64 {
	t.Helper()
	var id sql.NullInt64
	require.NoError(t, root.QueryRow("SELECT IS_USED_LOCK(?)", name).Scan(&id))
	return id.Int64
}

// TestPooledConnectionKeepsNoLock: the fence's named lock is session
// state; on a shared pool the session goes on to serve other secrets. After
// every fenced action of two secrets interleaved on one pool (done,
// refused by the fence, failed at the server) no connection holds either
// secret's lock.
func TestPooledConnectionKeepsNoLock(t *testing.T) {
	ctx := ctxT(t)
	pools := mysql.NewPools()
	t.Cleanup(pools.Close)
	a, b := newFixture(t), newFixture(t)
	ra, err := mysql.New(a.spec(), secret.New(rootDSN()), mysql.WithPools(pools))
	require.NoError(t, err)
	t.Cleanup(ra.Close)
	rb, err := mysql.New(b.spec(), secret.New(rootDSN()), mysql.WithPools(pools))
	require.NoError(t, err)
	t.Cleanup(rb.Close)
	for _, r := range []*mysql.Rotator{ra, rb} {
		_, err := r.Init(ctx)
		require.NoError(t, err)
	}
	noLocks := func(step string) {
		t.Helper()
		for _, f := range []*fixture{a, b} {
			require.Zero(t, lockHolder(t, a.root, f.fenceLock()), "after %s, connection %d holds the fence lock of %s", step, lockHolder(t, a.root, f.fenceLock()), f.role)
		}
	}
	fa, fb := rotation.Fence{Token: 10, RunID: "a1"}, rotation.Fence{Token: 10, RunID: "b1"}
	ga, err := ra.Generate(ctx, rotation.GenerateRequest{SecretID: "a", RunID: "a1", Fence: fa})
	require.NoError(t, err)
	noLocks("a's generate")
	gb, err := rb.Generate(ctx, rotation.GenerateRequest{SecretID: "b", RunID: "b1", Fence: fb})
	require.NoError(t, err)
	noLocks("b's generate")

	_, err = ra.Generate(ctx, rotation.GenerateRequest{SecretID: "a", RunID: "a0", Current: ga.Credential.Meta(), Fence: rotation.Fence{Token: 5, RunID: "a0"}})
	require.ErrorIs(t, err, rotation.ErrFenced)
	noLocks("a's stale generate, refused")

	// A fenced statement the server refuses: the pair's user was dropped
	// under the rotator (ALTER USER fails with 1396).
	_, err = a.root.ExecContext(ctx, "DROP USER '"+a.role+"_green'@'%'")
	require.NoError(t, err)
	_, err = ra.Generate(ctx, rotation.GenerateRequest{SecretID: "a", RunID: "a2", Current: ga.Credential.Meta(), Fence: rotation.Fence{Token: 11, RunID: "a2"}})
	require.Error(t, err)
	noLocks("a's generate that the server refused")

	require.NoError(t, rb.Retire(ctx, rotation.RetireRequest{SecretID: "b", Old: gb.Credential.Meta(), New: rotation.CredentialMeta{Username: b.role + "_green"}, Fence: rotation.Fence{Token: 12, RunID: "b2"}}))
	noLocks("b's retire")
	require.NoError(t, rb.Restore(ctx, rotation.RestoreRequest{SecretID: "b", Old: gb.Credential.Meta(), Fence: rotation.Fence{Token: 12, RunID: "b2"}}))
	noLocks("b's restore")
	require.NoError(t, login(gb.Credential.Username, gb.Credential.Secret.Reveal()))
}

// A secret's rotator taken from a closed Pools refuses, permanently.
func TestClosedPoolsRefuse(t *testing.T) {
	f := newFixture(t)
	pools := mysql.NewPools()
	r, err := mysql.New(f.spec(), secret.New(rootDSN()), mysql.WithPools(pools))
	require.NoError(t, err)
	t.Cleanup(r.Close)
	_, err = r.Init(ctxT(t))
	require.NoError(t, err)
	other, err := mysql.New(f.spec(), secret.New(rootDSN()), mysql.WithPools(pools))
	require.NoError(t, err)
	other.Close() // a shared pool stays open for the other secrets
	_, err = r.Init(ctxT(t))
	require.NoError(t, err)

	pools.Close()
	_, err = r.Init(context.Background())
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err), "%v", err)
	late, err := mysql.New(f.spec(), secret.New(rootDSN()), mysql.WithPools(pools))
	require.NoError(t, err)
	defer late.Close()
	_, err = late.Init(context.Background())
	require.ErrorContains(t, err, "pools are closed")
}
