package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
)

// comment reads the rotator's marker on role.
func (f *fixture) comment(t *testing.T, role string) string {
	t.Helper()
	var c *string
	f.queryRow(t, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", []any{&c}, role)
	if c == nil {
		return ""
	}
	return *c
}

// TestFenceBlueGreen: every destructive action (re-key, retire, restore,
// discard) carries the lease token; once a newer token has acted on the
// secret's roles, an action with an older one is refused by the server
// (rotation.ErrFenced, permanent) and changes nothing: the credential the
// newer holder made still logs in, LOGIN attributes and markers stay.
func TestFenceBlueGreen(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	blue, green := f.role+"_blue", f.role+"_green"
	old := rotation.Fence{Token: 100, RunID: "run-a"}
	cur := rotation.Fence{Token: 200, RunID: "run-b"}

	// The newer holder re-keys blue and retires the group role.
	g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/app", RunID: cur.RunID, Fence: cur})
	require.NoError(t, err)
	require.Equal(t, blue, g.Credential.Username)
	require.Equal(t, postgres.Marker(cur, "rekey"), f.comment(t, blue))
	require.Equal(t, postgres.Marker(cur, "rekey"), f.comment(t, green), "one action fences both roles of the pair")
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: rotation.CredentialMeta{Username: f.role}, New: g.Credential.Meta(), Fence: cur}))
	require.Equal(t, postgres.Marker(cur, "retire"), f.comment(t, blue))

	// The stale holder's actions, each refused.
	_, err = r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/app", RunID: old.RunID, Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.True(t, rotation.IsPermanent(err))
	require.ErrorContains(t, err, "names a newer lease than 100")
	err = r.Retire(ctx, rotation.RetireRequest{Old: g.Credential.Meta(), New: rotation.CredentialMeta{Username: green}, Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)
	err = r.Discard(ctx, rotation.DiscardRequest{New: g.Credential.Meta(), Current: rotation.CredentialMeta{Username: f.role}, Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)
	err = r.Restore(ctx, rotation.RestoreRequest{Old: rotation.CredentialMeta{Username: f.role}, Fence: old})
	require.ErrorIs(t, err, rotation.ErrFenced)

	require.NoError(t, f.login(t, blue, g.Credential.Secret.Reveal()), "the newer holder's credential still logs in")
	require.True(t, f.canLogin(t, blue))
	require.False(t, f.canLogin(t, green))
	require.False(t, f.canLogin(t, f.role))
	require.Equal(t, postgres.Marker(cur, "retire"), f.comment(t, blue), "a refused action moves no marker")

	// The same token again (a retry of the holder's own action) and a
	// newer one pass.
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: rotation.CredentialMeta{Username: f.role}, New: g.Credential.Meta(), Fence: cur}))
	next := rotation.Fence{Token: 300, RunID: "run-c"}
	g2, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/app", RunID: next.RunID, Current: g.Credential.Meta(), Fence: next})
	require.NoError(t, err)
	require.Equal(t, green, g2.Credential.Username)
	require.Equal(t, postgres.Marker(next, "rekey"), f.comment(t, green))
}

// TestFenceSingleRole: single-role re-key and put-back are fenced the same
// way, on the role's own comment.
func TestFenceSingleRole(t *testing.T) {
	f := newFixture(t, policy.ModeSingleRole)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	me := rotation.CredentialMeta{Username: f.role}
	cur := rotation.Fence{Token: 2000, RunID: "b"}
	g, err := r.Generate(ctx, rotation.GenerateRequest{Current: me, Fence: cur})
	require.NoError(t, err)
	require.Equal(t, postgres.Marker(cur, "rekey"), f.comment(t, f.role))

	stale := rotation.Fence{Token: 1000, RunID: "a"}
	_, err = r.Generate(ctx, rotation.GenerateRequest{Current: me, Fence: stale})
	require.ErrorIs(t, err, rotation.ErrFenced)
	prev := rotation.Credential{Username: f.role, Secret: secret.New(f.initPassword)}
	err = r.Restore(ctx, rotation.RestoreRequest{Old: me, Previous: &prev, Fence: stale})
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.NoError(t, f.login(t, f.role, g.Credential.Secret.Reveal()))
	requireRefused(t, f.login(t, f.role, f.initPassword), "the stale put-back changed nothing")

	// A comment that is not a rotator marker does not block, and is replaced.
	f.exec(t, "COMMENT ON ROLE "+f.role+" IS 'owned by team x'")
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: me, Previous: &prev, Fence: rotation.Fence{Token: 3000, RunID: "c"}}))
	require.NoError(t, f.login(t, f.role, f.initPassword))
}
