package main_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/pgtest"
)

// A key ring rotated from a policies file through the CLI: each `rotator
// run` publishes a ring whose signing key is the one the previous ring
// announced; `rotator check` tests the published ring; a ring broken by
// hand is reported, never built on (the run fails and publishes nothing),
// and `rotator rollback` puts the previous ring back.
func TestCLIRotatesAKeyRing(t *testing.T) {
	t.Parallel()
	policy := `version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: auth/jwt
    class: admin_token
    rotator:
      keyring: {max_token_lifetime: 1h}
    publish:
      - store: local
        path: auth/jwt.json
    checks:
      - delay: 1s
    grace: 30s
    monitor: 0s
    retry: {attempts: 1}
`
	e := newEnv(t, pgtest.NewDatabase(t), policy)
	e.must("validate")
	e.must("migrate")
	file := filepath.Join(e.dir, "secrets", "auth", "jwt.json")
	published := func() (map[string]string, appsecret.Ring) {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		var d map[string]string
		require.NoError(t, json.Unmarshal(raw, &d))
		r, err := appsecret.ParseRing(d["keyring"])
		require.NoError(t, err)
		return d, r
	}
	var outputs string
	out := e.must("run", "--secret", "auth/jwt")
	outputs += out.stdout + out.stderr
	d1, r1 := published()
	next1, _ := r1.Next()
	s1, _ := r1.Signing()
	require.Equal(t, "keyring", d1["secret_field"])
	require.Equal(t, s1.ID, d1["key_id"])

	out = e.must("run", "--secret", "auth/jwt")
	outputs += out.stdout + out.stderr
	d2, r2 := published()
	s2, _ := r2.Signing()
	require.Equal(t, next1.ID, s2.ID, "the announced key signs")
	_, ok := r2.Key(s1.ID)
	require.True(t, ok, "the old signing key is still accepted")
	out = e.must("check", "--secret", "auth/jwt")
	outputs += out.stdout + out.stderr
	require.Contains(t, out.stdout, "ok")

	// Someone breaks the published ring by hand.
	bad := `{"format":1,"alg":"HS256","keys":[]}`
	d2["keyring"] = bad
	raw, err := json.Marshal(d2)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, raw, 0o600))
	r := e.run(nil, "check", "--secret", "auth/jwt")
	outputs += r.stdout + r.stderr
	require.Equal(t, 7, r.code, r.stdout+r.stderr)
	r = e.run(nil, "run", "--secret", "auth/jwt")
	outputs += r.stdout + r.stderr
	require.NotEqual(t, 0, r.code, "a rotation never starts a fresh ring over a published one it cannot read:\n%s\n%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout+r.stderr, "the published ring cannot be built on")
	raw, err = os.ReadFile(file)
	require.NoError(t, err)
	var now map[string]string
	require.NoError(t, json.Unmarshal(raw, &now))
	require.Equal(t, bad, now["keyring"], "nothing was published over it")

	out = e.must("rollback", "--secret", "auth/jwt")
	outputs += out.stdout + out.stderr
	_, back := published()
	require.Equal(t, r1.KeyIDs(), back.KeyIDs(), "the previous ring is current again")
	out = e.must("run", "--secret", "auth/jwt")
	outputs += out.stdout + out.stderr
	_, r3 := published()
	s3, _ := r3.Signing()
	require.Equal(t, next1.ID, s3.ID, "built on the ring rolled back to: its announced key signs")
	for _, ring := range []appsecret.Ring{r1, r2, r3} {
		for _, k := range ring.Keys {
			require.NotContains(t, outputs, base64.StdEncoding.EncodeToString(k.Material()))
		}
	}
}
