package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/storetest"
)

// tlsServer starts `vault server -dev-tls`, whose certificate (signed by
// a CA of its own, in CAFile) names localhost, 127.0.0.1 and vault.test.
func tlsServer(t *testing.T) (*vaultdev.Server, *target) {
	t.Helper()
	// The store must trust only what its spec says.
	t.Setenv("VAULT_CACERT", "")
	t.Setenv("VAULT_CAPATH", "")
	t.Setenv("VAULT_TLS_SERVER_NAME", "")
	t.Setenv("VAULT_SKIP_VERIFY", "")
	v := vaultdev.New(t, vaultdev.Options{TLS: true, TLSNames: []string{"vault.test"}})
	return v, &target{addr: v.Addr, token: v.RootToken, mount: "secret", dev: v}
}

func tlsSpec(t *testing.T, tg *target, caFile, serverName string) *policy.VaultSpec {
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.TLS = policy.VaultTLSSpec{CAFile: caFile, ServerName: serverName}
	return spec
}

// otherCA writes a CA certificate that signed nothing Vault has.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the vault CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "other-ca.pem")
	require.NoError(t, os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return f
}

// TestTLS runs the store over HTTPS with tls.ca_file and tls.server_name,
// and shows that a wrong CA or name is refused with a message that says
// which setting to check, and not retried.
func TestTLS(t *testing.T) {
	v, tg := tlsServer(t)

	t.Run("ca_file", func(t *testing.T) {
		s := tg.storeWith(t, Config{Spec: tlsSpec(t, tg, v.CAFile, "")})
		p := tg.path(t)
		publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))
		d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: p})
		require.NoError(t, err)
		require.Equal(t, int64(1), d.Current.Number)
	})

	t.Run("server_name", func(t *testing.T) {
		// The address names 127.0.0.1; the certificate is checked for
		// vault.test, as behind a load balancer or a port-forward.
		s := tg.storeWith(t, Config{Spec: tlsSpec(t, tg, v.CAFile, "vault.test")})
		publish(t, s, tg.path(t), storetest.Version(t, 1, storetest.RunID()))
	})

	t.Run("wrong name", func(t *testing.T) {
		_, err := New(t.Context(), Config{Spec: tlsSpec(t, tg, v.CAFile, "vault.example.com")})
		require.ErrorIs(t, err, ErrUnreachable)
		require.True(t, rotation.IsPermanent(err), "a certificate for another name is not fixed by retrying")
		require.Contains(t, err.Error(), "TLS to vault at "+v.Addr+" failed: ")
		require.Contains(t, err.Error(), "not vault.example.com")
		require.Contains(t, err.Error(), "check stores[].vault.tls.ca_file and tls.server_name")
	})

	t.Run("wrong CA", func(t *testing.T) {
		_, err := New(t.Context(), Config{Spec: tlsSpec(t, tg, otherCA(t), "")})
		require.ErrorIs(t, err, ErrUnreachable)
		require.True(t, rotation.IsPermanent(err))
		require.Contains(t, err.Error(), "TLS to vault at "+v.Addr+" failed: ")
		require.Contains(t, err.Error(), "certificate signed by unknown authority")
		require.Contains(t, err.Error(), "check stores[].vault.tls.ca_file")
	})

	t.Run("system roots only", func(t *testing.T) {
		_, err := New(t.Context(), Config{Spec: tlsSpec(t, tg, "", "")})
		require.ErrorIs(t, err, ErrUnreachable)
		require.True(t, rotation.IsPermanent(err))
		require.Contains(t, err.Error(), "certificate signed by unknown authority")
	})

	t.Run("ca_file missing", func(t *testing.T) {
		_, err := New(t.Context(), Config{Spec: tlsSpec(t, tg, "/nonexistent/ca.pem", "")})
		require.True(t, rotation.IsPermanent(err))
		require.ErrorContains(t, err, `vault store: tls (ca_file "/nonexistent/ca.pem")`)
	})

	t.Run("plain http to https", func(t *testing.T) {
		spec := tlsSpec(t, tg, v.CAFile, "")
		spec.Address = strings.Replace(v.Addr, "https://", "http://", 1)
		_, err := New(t.Context(), Config{Spec: spec})
		require.ErrorIs(t, err, ErrUnreachable)
		require.True(t, rotation.IsPermanent(err))
		require.ErrorContains(t, err, "speaks HTTPS and was asked in plain HTTP: use an https:// address")
	})
}
