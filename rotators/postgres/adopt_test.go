package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
)

// Existing <role>_blue/_green roles that carry what the pair must not
// (LOGIN with someone else's password, CREATEDB, membership of
// pg_read_all_data, members of their own) are refused, naming what was
// found, and nothing is changed; --adopt-existing takes them as they are
// and says so.
func TestInitRefusesForeignRoles(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	blue, green := f.role+"_blue", f.role+"_green"
	other := f.role + "_other"
	t.Cleanup(func() { f.dropRoles(other) })
	f.exec(t, "CREATE ROLE "+blue+" LOGIN PASSWORD 'someone-elses-password' CREATEDB")
	f.exec(t, "GRANT pg_read_all_data TO "+blue)
	f.exec(t, "CREATE ROLE "+green+" NOLOGIN")
	f.exec(t, "CREATE ROLE "+other+" NOLOGIN")
	f.exec(t, "GRANT "+green+" TO "+other)

	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	for _, want := range []string{
		blue + " exists already with LOGIN (it can log in with a password rotator did not set), CREATEDB, membership of pg_read_all_data",
		green + " exists already with members of its own (" + other + ")",
		"nothing was changed", "--adopt-existing",
	} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), "someone-elses-password")
	var granted bool
	f.queryRow(t, `SELECT EXISTS (SELECT 1 FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
		JOIN pg_roles u ON u.oid = a.member WHERE g.rolname = $1 AND u.rolname = ANY($2))`, []any{&granted}, f.role, []string{blue, green})
	require.False(t, granted, "a refused init grants the application role to no one")

	rep, err := r.InitWith(ctx, postgres.InitRequest{AdoptExisting: true})
	require.NoError(t, err)
	require.Contains(t, rep.String(), "adopted as it is (--adopt-existing): "+blue+" exists already with LOGIN")
	require.Contains(t, rep.String(), "granted "+f.role+" to "+blue)
}

// A pair set up by init stays acceptable to init after rotations have
// given a member LOGIN and a password of rotator's.
func TestInitAgainAfterRotation(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	g, err := r.Generate(ctx, rotation.GenerateRequest{})
	require.NoError(t, err)
	require.True(t, f.canLogin(t, g.Credential.Username))
	rep, err := r.Init(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Notes[:len(rep.Notes)-1], "nothing adopted: %s", rep)

	// An extra attribute given later is found all the same.
	f.exec(t, "ALTER ROLE "+g.Credential.Username+" CREATEROLE")
	_, err = r.Init(ctx)
	require.ErrorContains(t, err, g.Credential.Username+" exists already with CREATEROLE")
}
