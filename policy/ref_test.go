package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRefResolveEnv sets process environment variables, so it does not run
// in parallel; each variable name is unique to it.
func TestRefResolveEnv(t *testing.T) {
	const value = "postgres://admin:s3cr3t-value@db/app"
	t.Setenv("POLICY_TEST_DSN", value)
	t.Setenv("POLICY_TEST_EMPTY", "")

	f, err := Parse("policies.yaml", []byte(edit(t, "{env: PG_DSN}", "{env: POLICY_TEST_DSN}")))
	require.NoError(t, err)
	ref := f.Secrets[0].Rotator.Postgres.AdminDSN
	require.Equal(t, "env POLICY_TEST_DSN", ref.String())
	require.Equal(t, Position{File: "policies.yaml", Line: 9, Column: 20}, ref.Pos)
	require.False(t, ref.IsZero())
	v, err := ref.Resolve()
	require.NoError(t, err)
	require.Equal(t, value, v.Reveal())

	tests := []struct {
		name string
		ref  Ref
		want string
	}{
		{"unset", Ref{Env: "POLICY_TEST_UNSET", Pos: Position{File: "p.yaml", Line: 3, Column: 7}},
			"environment variable POLICY_TEST_UNSET (p.yaml:3:7) is not set: export it before starting rotator"},
		{"empty", Ref{Env: "POLICY_TEST_EMPTY"},
			"environment variable POLICY_TEST_EMPTY is empty: give it the secret"},
		{"zero", Ref{}, "secret reference is empty: use {env: NAME} or {file: PATH}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.ref.Resolve()
			require.EqualError(t, err, tt.want)
			require.NotContains(t, err.Error(), value)
		})
	}
}

func TestRefResolveFile(t *testing.T) {
	t.Parallel()
	const value = "file-s3cr3t-value"
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "dsn"), []byte(value+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "blank"), []byte("\n"), 0o600))
	path := filepath.Join(dir, "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(edit(t, "{env: PG_DSN}", "{file: secrets/dsn}")), 0o600))

	// Load from another working directory: the relative file is resolved
	// against the policies file's directory, not the process's.
	f, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, dir, f.Dir())
	ref := f.Secrets[0].Rotator.Postgres.AdminDSN
	require.Equal(t, "file "+filepath.Join(dir, "secrets", "dsn"), ref.String())
	v, err := ref.Resolve()
	require.NoError(t, err)
	require.Equal(t, value, v.Reveal(), "trailing newline trimmed")

	_, err = Ref{File: "secrets/missing", Dir: dir, Pos: Position{File: path, Line: 9, Column: 20}}.Resolve()
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Contains(t, err.Error(), filepath.Join(dir, "secrets", "missing"))
	require.Contains(t, err.Error(), path+":9:20")

	_, err = Ref{File: "secrets/blank", Dir: dir}.Resolve()
	require.EqualError(t, err, "secret file "+filepath.Join(dir, "secrets", "blank")+" is empty: write the secret into it")
	require.NotContains(t, err.Error(), value)
}

func TestRefInlineNeverQuoted(t *testing.T) {
	t.Parallel()
	for _, inline := range []string{"hunter2-inline", "{env: hunter2-inline}"} {
		_, err := Parse("p.yaml", []byte(edit(t, "{env: PG_DSN}", inline)))
		require.Error(t, err)
		require.NotContains(t, err.Error(), "hunter2")
	}
}
