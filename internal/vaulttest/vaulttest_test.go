package vaulttest_test

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/vaulttest"
)

func client(t *testing.T, s *vaulttest.Server, token string) *api.Client {
	t.Helper()
	conf := api.DefaultConfig()
	conf.Address = s.Addr
	conf.MaxRetries = 0
	c, err := api.NewClient(conf)
	require.NoError(t, err)
	c.SetToken(token)
	return c
}

func requireStatus(t *testing.T, err error, code int, msg string) {
	t.Helper()
	var re *api.ResponseError
	require.ErrorAs(t, err, &re)
	require.Equal(t, code, re.StatusCode, "%v", re.Errors)
	if msg != "" {
		require.Contains(t, re.Errors[0], msg)
	}
}

func TestKVv2CheckAndSet(t *testing.T) {
	t.Parallel()
	s := vaulttest.New(t)
	c := client(t, s, s.RootToken)
	kv := c.KVv2("secret")

	_, err := kv.Put(t.Context(), "app", map[string]any{"password": "a"}, api.WithCheckAndSet(0))
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "app", map[string]any{"password": "b"}, api.WithCheckAndSet(0))
	requireStatus(t, err, 400, "check-and-set parameter did not match the current version")
	v, err := kv.Put(t.Context(), "app", map[string]any{"password": "b"}, api.WithCheckAndSet(1))
	require.NoError(t, err)
	require.Equal(t, 2, v.VersionMetadata.Version)

	got, err := kv.GetVersion(t.Context(), "app", 1)
	require.NoError(t, err)
	require.Equal(t, "a", got.Data["password"])

	require.NoError(t, kv.DeleteVersions(t.Context(), "app", []int{1}))
	// Vault answers 404 for a deleted version, with its metadata; the
	// client turns that into a secret without data.
	got, err = kv.GetVersion(t.Context(), "app", 1)
	require.NoError(t, err)
	require.Nil(t, got.Data, "a deleted version's data is not returned")
	require.False(t, got.VersionMetadata.DeletionTime.IsZero())

	require.NoError(t, kv.PutMetadata(t.Context(), "app", api.KVMetadataPutInput{CustomMetadata: map[string]any{"owner": "x"}}))
	md, err := kv.GetMetadata(t.Context(), "app")
	require.NoError(t, err)
	require.Equal(t, 2, md.CurrentVersion)
	require.Equal(t, "x", md.CustomMetadata["owner"])
	require.Len(t, md.Versions, 2)
	require.False(t, md.Versions["1"].DeletionTime.IsZero())

	_, err = kv.Get(t.Context(), "missing")
	require.ErrorIs(t, err, api.ErrSecretNotFound)
}

func TestTokensAndPolicies(t *testing.T) {
	t.Parallel()
	s := vaulttest.New(t)
	s.SetPolicy("ro", map[string][]string{"secret/data/app/*": {"read"}, "secret/data/app/deny": {"deny"}})
	tok := s.CreateToken(vaulttest.TokenOptions{Policies: []string{"ro"}, TTL: time.Hour, Renewable: true})
	c := client(t, s, tok)

	_, err := c.Logical().Write("secret/data/app/x", map[string]any{"data": map[string]any{"a": "b"}})
	requireStatus(t, err, 403, "permission denied")
	_, err = c.Logical().Read("secret/data/app/x")
	require.NoError(t, err, "read is allowed (nothing there: nil secret)")
	_, err = c.Logical().Read("secret/data/app/deny")
	requireStatus(t, err, 403, "permission denied")

	sec, err := c.Auth().Token().LookupSelf()
	require.NoError(t, err)
	ttl, err := sec.TokenTTL()
	require.NoError(t, err)
	require.Greater(t, ttl, 59*time.Minute)

	_, err = c.Auth().Token().RenewSelf(3600)
	require.NoError(t, err)

	s.ExpireToken(tok)
	_, err = c.Auth().Token().LookupSelf()
	requireStatus(t, err, 403, "invalid token")
}

func TestSealedAndUnreachable(t *testing.T) {
	t.Parallel()
	s := vaulttest.New(t)
	c := client(t, s, s.RootToken)
	s.Seal()
	_, err := c.Logical().Read("secret/data/x")
	requireStatus(t, err, 503, "Vault is sealed")
	st, err := c.Sys().SealStatus()
	require.NoError(t, err)
	require.True(t, st.Sealed)
	s.Unseal()

	s.SetUnreachable(true)
	_, err = c.Logical().Read("secret/data/x")
	require.Error(t, err)
	s.SetUnreachable(false)
	_, err = c.Logical().Read("secret/data/x")
	require.NoError(t, err)
}

func TestLogins(t *testing.T) {
	t.Parallel()
	s := vaulttest.New(t)
	roleID, secretID := s.AddAppRole("r", vaulttest.AppRoleOptions{Token: vaulttest.TokenOptions{TTL: time.Minute}})
	c := client(t, s, "")
	sec, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	require.NoError(t, err)
	require.NotEmpty(t, sec.Auth.ClientToken)
	require.Equal(t, 60, sec.Auth.LeaseDuration)
	_, err = c.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID, "secret_id": "nope"})
	requireStatus(t, err, 400, "invalid role or secret ID")

	s.AddKubernetesRole("k", vaulttest.KubernetesRole{JWT: "jwt"})
	_, err = c.Logical().Write("auth/kubernetes/login", map[string]any{"role": "k", "jwt": "jwt"})
	require.NoError(t, err)
	_, err = c.Logical().Write("auth/kubernetes/login", map[string]any{"role": "nope", "jwt": "jwt"})
	requireStatus(t, err, 400, "invalid role name")
}

func TestMountsAndNamespaces(t *testing.T) {
	t.Parallel()
	s := vaulttest.New(t)
	s.EnableKV("", "old", 1)
	s.EnableKV("ns1", "kv", 2)
	c := client(t, s, s.RootToken)

	sec, err := c.Logical().Read("sys/internal/ui/mounts/secret/app")
	require.NoError(t, err)
	require.Equal(t, "secret/", sec.Data["path"])
	require.Equal(t, "2", sec.Data["options"].(map[string]any)["version"])
	sec, err = c.Logical().Read("sys/internal/ui/mounts/old")
	require.NoError(t, err)
	require.Nil(t, sec.Data["options"])
	_, err = c.Logical().Read("sys/internal/ui/mounts/nope")
	requireStatus(t, err, 403, "permission denied")

	_, err = c.Logical().Write("old/data/x", map[string]any{"data": map[string]any{"a": "b"}})
	require.NoError(t, err)
	require.Equal(t, []string{"data/x"}, s.KV1("", "old"), "KV v1 takes data/x as a plain key, as Vault does")

	_, err = c.Logical().Write("kv/data/x", map[string]any{"data": map[string]any{"a": "b"}})
	requireStatus(t, err, 404, "no handler for route")
	c.SetNamespace("ns1")
	_, err = c.Logical().Write("kv/data/x", map[string]any{"data": map[string]any{"a": "b"}})
	require.NoError(t, err)
	require.Equal(t, 1, s.CurrentVersion("ns1", "kv", "x"))
}
