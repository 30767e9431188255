package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

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
