package postgres_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// adminGrants are the grants the documentation names as enough for an admin
// role that is not a superuser (see doc.go, "Privileges of the admin role").
// ROTATOR_TEST_ADMIN_GRANTS overrides them to find out what is needed.
func adminGrants(admin string) []string {
	if g := os.Getenv("ROTATOR_TEST_ADMIN_GRANTS"); g != "" {
		return strings.Split(strings.ReplaceAll(g, "ADMIN", admin), ";")
	}
	return []string{
		"ALTER ROLE " + admin + " CREATEROLE",
		"GRANT pg_signal_backend TO " + admin,
	}
}

// A whole blue/green life cycle (init, three rotations with a client held
// open and terminated, rollback, discard) run by an admin role that is not a
// superuser and has only the documented grants.
func TestNonSuperuserAdmin(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	admin, adminPW := "rotadm_"+randHex(4), "adm-"+randHex(12)
	f.exec(t, "CREATE ROLE "+admin+" LOGIN PASSWORD '"+adminPW+"'")
	t.Cleanup(func() { f.dropRoles(admin) })
	for _, g := range adminGrants(admin) {
		f.exec(t, g)
	}
	var super bool
	f.queryRow(t, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", []any{&super}, admin)
	require.False(t, super)

	r := f.rotator(t, userDSN(f.dsn, admin, adminPW))
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	_, err = r.Init(ctx)
	require.NoError(t, err)

	held := f.hold(t, f.role, f.initPassword)
	g1, err := r.Generate(ctx, rotation.GenerateRequest{})
	require.NoError(t, err)
	c1 := g1.Credential
	require.Eventually(t, func() bool {
		cl, err := r.Clients(ctx, rotation.ClientsRequest{Old: rotation.CredentialMeta{Username: f.role}})
		return err == nil && cl.Count == 1
	}, eventually, tick)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: rotation.CredentialMeta{Username: f.role}, New: c1.Meta(), Terminate: true}))
	_, err = held.Exec(ctx, "SELECT 1")
	require.Error(t, err, "the group's session was terminated")
	requireRefused(t, f.login(t, f.role, f.initPassword), "the group role after retire")

	prev := c1
	for i := 0; i < 2; i++ {
		g, err := r.Generate(ctx, rotation.GenerateRequest{Current: prev.Meta()})
		require.NoError(t, err)
		require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: prev.Meta(), New: g.Credential.Meta(), Terminate: true}))
		requireRefused(t, f.login(t, prev.Username, prev.Secret.Reveal()), "retired role")
		require.NoError(t, f.login(t, g.Credential.Username, g.Credential.Secret.Reveal()))
		require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: prev.Meta()}))
		require.NoError(t, f.login(t, prev.Username, prev.Secret.Reveal()), "restored role")
		require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: prev.Meta(), New: g.Credential.Meta()}))
		prev = g.Credential
	}
	g, err := r.Generate(ctx, rotation.GenerateRequest{Current: prev.Meta()})
	require.NoError(t, err)
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{New: g.Credential.Meta(), Current: prev.Meta()}))
	requireRefused(t, f.login(t, g.Credential.Username, g.Credential.Secret.Reveal()), "discarded credential")
	require.NoError(t, f.login(t, prev.Username, prev.Secret.Reveal()))
}

// Without CREATEROLE, the admin role gets a permanent error that says what
// it lacks.
func TestAdminWithoutCreateRole(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	_, err := r.Init(ctxT(t))
	require.NoError(t, err)

	admin, adminPW := "rotweak_"+randHex(4), "adm-"+randHex(12)
	f.exec(t, "CREATE ROLE "+admin+" LOGIN PASSWORD '"+adminPW+"'")
	t.Cleanup(func() { f.dropRoles(admin) })
	weak := f.rotator(t, userDSN(f.dsn, admin, adminPW))
	_, err = weak.Generate(ctxT(t), rotation.GenerateRequest{})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err), "permission denied is permanent: %v", err)
	require.Contains(t, err.Error(), "CREATEROLE")
}

// REASSIGN OWNED (only needed when blue or green owned objects before init)
// needs membership in both roles; init says so, and works once granted.
func TestInitReassignNeedsMembership(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	blue := f.role + "_blue"
	f.exec(t, "CREATE ROLE "+blue+" NOLOGIN")
	f.exec(t, "CREATE TABLE early (id int)")
	f.exec(t, "ALTER TABLE early OWNER TO "+blue)
	admin, adminPW := "rotadm_"+randHex(4), "adm-"+randHex(12)
	f.exec(t, "CREATE ROLE "+admin+" LOGIN PASSWORD '"+adminPW+"'")
	t.Cleanup(func() { f.dropRoles(admin) })
	for _, g := range adminGrants(admin) {
		f.exec(t, g)
	}
	r := f.rotator(t, userDSN(f.dsn, admin, adminPW))
	_, err := r.Init(ctxT(t))
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "GRANT "+f.role+", "+blue+" TO the admin role")

	f.exec(t, "GRANT "+f.role+", "+blue+" TO "+admin)
	rep, err := r.Init(ctxT(t))
	require.NoError(t, err)
	require.Contains(t, rep.String(), "reassigned 1 objects owned by "+blue)
	var owner string
	f.queryRow(t, "SELECT tableowner FROM pg_tables WHERE tablename = 'early'", []any{&owner})
	require.Equal(t, f.role, owner)
}
