package seal_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/seal"
)

func TestSealRoundTripAndBinding(t *testing.T) {
	t.Parallel()
	text, err := seal.Generate(nil)
	require.NoError(t, err)
	k, err := seal.Parse(text)
	require.NoError(t, err)

	pt := []byte("the-generated-password")
	box := k.Seal(pt, "run-1")
	require.False(t, bytes.Contains(box, pt))
	got, err := k.Open(box, "run-1")
	require.NoError(t, err)
	require.Equal(t, pt, got)

	_, err = k.Open(box, "run-2")
	require.ErrorContains(t, err, "sealed for another run")

	other, _ := seal.Generate(nil)
	k2, _ := seal.Parse(other)
	_, err = k2.Open(box, "run-1")
	require.ErrorIs(t, err, seal.ErrWrongKey)

	box[len(box)-1] ^= 1
	_, err = k.Open(box, "run-1")
	require.Error(t, err)
}

func TestKeyMissing(t *testing.T) {
	os.Unsetenv(seal.EnvKey)
	os.Unsetenv(seal.EnvKeyFile)
	t.Cleanup(func() { os.Unsetenv(seal.EnvKey); os.Unsetenv(seal.EnvKeyFile) })
	_, err := seal.FromEnv()
	require.ErrorIs(t, err, seal.ErrNoKey)
	require.ErrorContains(t, err, "rotator keygen")
}

func TestKeyErrors(t *testing.T) {
	for name, tc := range map[string]struct{ env, file, want string }{
		"empty":     {want: "ROTATOR_STATE_KEY is set but empty"},
		"both":      {env: "x", file: "/y", want: "both ROTATOR_STATE_KEY and ROTATOR_STATE_KEY_FILE are set"},
		"not b64":   {env: "!!!", want: "not base64"},
		"too short": {env: "c2hvcnQ=", want: "is 5 bytes, want 32"},
		"no file":   {file: "/nonexistent/key", want: "read /nonexistent/key"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(seal.EnvKey, tc.env)
			t.Setenv(seal.EnvKeyFile, tc.file)
			_, err := seal.FromEnv()
			require.ErrorContains(t, err, tc.want)
			if name != "both" {
				require.ErrorContains(t, err, "rotator keygen")
			}
		})
	}
}
