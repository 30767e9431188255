package postgres_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
)

// Secrets on one server share one admin pool: closing one rotator leaves
// the others working; closing the pools ends them all.
func TestSharedAdminPools(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	a := newFixture(t, policy.ModeBlueGreen)
	b := &fixture{dsn: a.dsn, role: "app_" + randHex(4), initPassword: "init-" + randHex(12)}
	b.spec = &policy.PostgresSpec{Role: b.role, Mode: policy.ModeBlueGreen}
	b.exec(t, "CREATE ROLE "+b.role+" LOGIN PASSWORD '"+b.initPassword+"'")
	t.Cleanup(func() { b.dropRoles(b.role, b.role+"_blue", b.role+"_green") })

	pools := postgres.NewPools()
	ra := a.rotator(t, "", postgres.WithPools(pools))
	rb := b.rotator(t, "", postgres.WithPools(pools))
	for _, r := range []*postgres.Rotator{ra, rb} {
		_, err := r.Init(ctx)
		require.NoError(t, err)
	}
	resp, err := ra.Generate(ctx, rotation.GenerateRequest{SecretID: "a", RunID: "r1"})
	require.NoError(t, err)
	require.NoError(t, a.login(t, resp.Credential.Username, resp.Credential.Secret.Reveal()))

	ra.Close() // a shared pool stays open for the other secrets
	resp, err = rb.Generate(ctx, rotation.GenerateRequest{SecretID: "b", RunID: "r2"})
	require.NoError(t, err)
	require.NoError(t, b.login(t, resp.Credential.Username, resp.Credential.Secret.Reveal()))

	pools.Close()
	_, err = rb.Generate(ctx, rotation.GenerateRequest{SecretID: "b", RunID: "r3", Current: resp.Credential.Meta()})
	if err == nil {
		// rb kept the pool it had: closed now, so the next call fails.
		t.Fatal("a rotator whose shared pool was closed still worked")
	}
}

// An admin password changed under the shared pools: the rotators built
// with the new DSN get a pool of their own, and the old pool, whose
// sessions logged in with the old password, closes with its last
// rotator instead of living until the pools are closed.
func TestSupersededAdminPoolCloses(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	f := newFixture(t, policy.ModeBlueGreen)
	admin := "adm_" + randHex(4)
	f.exec(t, "CREATE ROLE "+admin+" SUPERUSER LOGIN PASSWORD 'pw-one'")
	t.Cleanup(func() { f.dropRoles(admin) })
	withApp := func(dsn, app string) string {
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		return u.String()
	}
	sessions := func(app string) int {
		var n int
		f.queryRow(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = $2", []any{&n}, admin, app)
		return n
	}
	pools := postgres.NewPools()
	t.Cleanup(pools.Close)
	old := f.rotator(t, withApp(pgtest.UserDSN(f.dsn, admin, "pw-one"), "old"), postgres.WithPools(pools))
	_, err := old.Init(ctx)
	require.NoError(t, err)
	require.Positive(t, sessions("old"), "the old pool holds a session")

	f.exec(t, "ALTER ROLE "+admin+" PASSWORD 'pw-two'")
	fresh := f.rotator(t, withApp(pgtest.UserDSN(f.dsn, admin, "pw-two"), "new"), postgres.WithPools(pools))
	_, err = fresh.Init(ctx)
	require.NoError(t, err)
	require.Positive(t, sessions("new"))
	require.Positive(t, sessions("old"), "a rotator still holds the old pool: it stays open")

	old.Close()
	require.Eventually(t, func() bool { return sessions("old") == 0 }, 30*time.Second, 20*time.Millisecond,
		"the superseded pool's sessions were not closed with its last rotator")
	_, err = fresh.Init(ctx)
	require.NoError(t, err, "the new pool still works")
	require.Positive(t, sessions("new"))
}
