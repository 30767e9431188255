package mysql_test

import (
	"errors"
	"testing"

	driver "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
	"github.com/rotator/rotator/rotators/rotatortest"
)

func TestConformance(t *testing.T) {
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator { return newFixture(t).initialized(t) },
		Login: func(t *testing.T, c rotation.Credential) error {
			return login(c.Username, c.Secret.Reveal())
		},
		CanCountClients: true,
		CanRestore:      true,
	})
}

// TestNativeHash: the hash is MariaDB's own PASSWORD() of the same text.
func TestNativeHash(t *testing.T) {
	f := newFixture(t)
	for _, pw := range []string{"a", "correct horse battery staple", "Zx9-._~"} {
		var want string
		require.NoError(t, f.root.QueryRow("SELECT PASSWORD(?)", pw).Scan(&want))
		require.Equal(t, want, mysql.NativeHash(secret.New(pw)), pw)
	}
}

// TestInitIdempotent: a second init creates nothing and the pair is
// locked, has the role and uses it by default.
func TestInitIdempotent(t *testing.T) {
	f := newFixture(t)
	r := f.rotator(t, "")
	rep, err := r.Init(ctxT(t))
	require.NoError(t, err)
	require.Contains(t, rep.String(), "created role "+f.role)
	require.Contains(t, rep.String(), "created user '"+f.role+"_blue'@'%' (locked)")
	rep2, err := r.Init(ctxT(t))
	require.NoError(t, err)
	require.NotContains(t, rep2.String(), "created")
	require.Contains(t, rep2.String(), f.role+"_green already has role "+f.role)
	for _, u := range []string{f.role + "_blue", f.role + "_green"} {
		require.True(t, f.locked(t, u), u)
		var def string
		require.NoError(t, f.root.QueryRow("SELECT JSON_VALUE(Priv, '$.default_role') FROM mysql.global_priv WHERE User = ? AND Host = '%'", u).Scan(&def))
		require.Equal(t, f.role, def)
	}
}

// TestRetiredUserRefused: a retired (locked) user cannot log in, with
// MariaDB's "account is locked" error, not a wrong password; restore
// lets it in again with the same password.
func TestRetiredUserRefused(t *testing.T) {
	f := newFixture(t)
	r := f.initialized(t)
	ctx := ctxT(t)
	a, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "r1"})
	require.NoError(t, err)
	require.Empty(t, a.Replaces.Username, "before the first rotation both users are locked: nothing to replace")
	b, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "r2", Current: a.Credential.Meta()})
	require.NoError(t, err)
	require.Equal(t, a.Credential.Username, b.Replaces.Username)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "db/m", Old: a.Credential.Meta(), New: b.Credential.Meta()}))
	err = login(a.Credential.Username, a.Credential.Secret.Reveal())
	var me *driver.MySQLError
	require.True(t, errors.As(err, &me), "%v", err)
	require.EqualValues(t, 4151, me.Number, "refused because locked: %v", err)
	require.NoError(t, login(b.Credential.Username, b.Credential.Secret.Reveal()))
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{SecretID: "db/m", Old: a.Credential.Meta()}))
	require.NoError(t, login(a.Credential.Username, a.Credential.Secret.Reveal()))
}
