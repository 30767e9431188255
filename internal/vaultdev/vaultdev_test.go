package vaultdev_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/vaultdev"
)

func TestMain(m *testing.M) { os.Exit(vaultdev.Main(m)) }

// Without a binary anywhere, the error says how to get one.
func TestNoBinary(t *testing.T) {
	t.Setenv("VAULT_BIN", "")
	t.Setenv("PATH", t.TempDir())
	t.Setenv("VAULT_CACHE_DIR", t.TempDir())
	_, err := vaultdev.Binary()
	require.ErrorContains(t, err, "vaultdev: no vault binary")
	require.ErrorContains(t, err, "make vault")
	require.ErrorContains(t, err, "HashiCorp's packages")

	t.Setenv("VAULT_BIN", filepath.Join(t.TempDir(), "vault"))
	_, err = vaultdev.Binary()
	require.ErrorContains(t, err, "VAULT_BIN=")
}

func TestDevServer(t *testing.T) {
	v := vaultdev.Shared(t)
	c := v.Client(t)
	_, err := c.KVv2("secret").Put(t.Context(), "vaultdev/test", map[string]any{"a": "b"})
	require.NoError(t, err)
	got, err := c.KVv2("secret").Get(t.Context(), "vaultdev/test")
	require.NoError(t, err)
	require.Equal(t, "b", got.Data["a"])
	require.Same(t, v, vaultdev.Shared(t))
}

func TestSealUnseal(t *testing.T) {
	t.Parallel()
	v := vaultdev.New(t, vaultdev.Options{})
	c := v.Client(t)
	v.Seal(t)
	st, err := c.Sys().SealStatus()
	require.NoError(t, err)
	require.True(t, st.Sealed)
	v.Unseal(t)
	_, err = c.KVv2("secret").Put(t.Context(), "x", map[string]any{"a": "b"})
	require.NoError(t, err)
}

func TestTLS(t *testing.T) {
	t.Parallel()
	v := vaultdev.New(t, vaultdev.Options{TLS: true, TLSNames: []string{"vault.test"}})
	require.FileExists(t, v.CAFile)
	h, err := v.Client(t).Sys().Health()
	require.NoError(t, err)
	require.False(t, h.Sealed)
}

func TestProxy(t *testing.T) {
	t.Parallel()
	v := vaultdev.Shared(t)
	p := vaultdev.NewProxy(t, v.Addr)
	get := func() error {
		resp, err := http.Get(p.Addr + "/v1/sys/health")
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}
	require.NoError(t, get())
	p.SetDown(true)
	require.Error(t, get())
	p.SetDown(false)
	require.NoError(t, get())
}
