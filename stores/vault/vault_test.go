package vault

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/vaulttest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/storetest"
)

func TestConformance(t *testing.T) {
	tg := newTarget(t)
	s := tg.store(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) (rotation.Store, string) {
			return s, tg.path(t)
		},
		Stages: false,
	})
}

func publish(t *testing.T, s *Store, p string, v rotation.Version) {
	t.Helper()
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v}))
}

func TestPublishSameRunTwiceMakesOneVersion(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	s, p := tg.store(t), tg.path(t)
	v1 := storetest.Version(t, 1, storetest.RunID())
	publish(t, s, p, v1)
	publish(t, s, p, v1)
	cur, data, custom := tg.kvRead(t, p, 0)
	require.Equal(t, 1, cur, "a retried publish must not add a KV version")
	require.Equal(t, v1.RunID, data[rotation.DataRunID])
	require.Equal(t, "1", data[rotation.DataVersion])
	require.Equal(t, v1.RunID, custom[MetaRunID], "custom_metadata names the latest run")
	require.Equal(t, "1", custom[MetaVersion])
	require.Equal(t, v1.Credential.Secret.Fingerprint(), custom[MetaFingerprint])
	require.Equal(t, v1.RotatedAt.UTC().Format(time.RFC3339Nano), custom[MetaRotatedAt])
}

func TestPublishKeepsOthersCustomMetadata(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	s, p := tg.store(t), tg.path(t)
	_, err := tg.client(t).Logical().Write(tg.mount+"/metadata/"+p, map[string]any{"custom_metadata": map[string]any{"owner": "team-db"}})
	require.NoError(t, err)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))
	_, _, custom := tg.kvRead(t, p, 0)
	require.Equal(t, "team-db", custom["owner"])
	require.Equal(t, "1", custom[MetaVersion])
}

func TestRollbackWritesNewVersionEqualToPrevious(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	s, p := tg.store(t), tg.path(t)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	publish(t, s, p, v1)
	publish(t, s, p, v2)
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: p, RunID: v2.RunID}))

	cur, data3, custom := tg.kvRead(t, p, 0)
	require.Equal(t, 3, cur, "rollback writes a new KV version; history is never rewritten")
	_, data1, _ := tg.kvRead(t, p, 1)
	require.Equal(t, data1, data3, "the new version is the previous version's data")
	_, data2, _ := tg.kvRead(t, p, 2)
	require.Equal(t, v2.RunID, data2[rotation.DataRunID], "the rolled-back version stays readable by number")
	require.Equal(t, v2.RunID, custom[MetaRolledBack])
	require.Equal(t, v1.RunID, custom[MetaRunID])

	// Undone already: nothing more is written.
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: p, RunID: v2.RunID}))
	cur, _, _ = tg.kvRead(t, p, 0)
	require.Equal(t, 3, cur)
}

func TestRollbackWithNumber(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	s, p := tg.store(t), tg.path(t)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	publish(t, s, p, v1)
	publish(t, s, p, v2)
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: p, RunID: v2.RunID, Number: 3}))
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Equal(t, int64(3), d.Current.Number)
	require.Equal(t, v1.Credential.Secret.Fingerprint(), d.Current.Fingerprint)
	require.Equal(t, int64(2), d.Previous.Number)
}

func TestDescribeSkipsDeletedPrevious(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	s, p := tg.store(t), tg.path(t)
	v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
	publish(t, s, p, v1)
	publish(t, s, p, v2)
	publish(t, s, p, v3)
	_, err := tg.client(t).Logical().Write(tg.mount+"/delete/"+p, map[string]any{"versions": []int{2}})
	require.NoError(t, err)

	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Equal(t, v3.RunID, d.Current.RunID)
	require.Equal(t, v1.RunID, d.Previous.RunID, "a soft-deleted version is skipped")
	prev, err := s.Read(t.Context(), rotation.ReadRequest{Path: p, Which: rotation.Previous})
	require.NoError(t, err)
	require.True(t, v1.Credential.Secret.Equal(prev.Credential.Secret))

	// A deleted latest version is what clients see: nothing current.
	_, err = tg.client(t).Logical().Delete(tg.mount + "/data/" + p)
	require.NoError(t, err)
	d, err = s.Describe(t.Context(), rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Nil(t, d.Current)
	_, err = s.Read(t.Context(), rotation.ReadRequest{Path: p, Which: rotation.Current})
	require.ErrorIs(t, err, rotation.ErrNotFound)
}

func TestCASConflictIsRetryable(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	p := tg.path(t)
	c := tg.client(t)
	raced := false
	s := tg.storeWith(t, Config{Spec: tg.spec(t, policy.VaultAuthSpec{}), beforeWrite: func() {
		if raced {
			return
		}
		raced = true
		// Another writer gets in between the store's read and its write.
		_, err := c.Logical().Write(tg.mount+"/data/"+p, map[string]any{"data": map[string]any{"password": "someone-else"}})
		require.NoError(t, err)
	}})
	v1 := storetest.Version(t, 1, storetest.RunID())
	err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v1})
	require.ErrorIs(t, err, ErrConflict)
	require.False(t, rotation.IsPermanent(err), "a CAS conflict is worth retrying")
	require.Contains(t, err.Error(), "another writer changed "+tg.mount+"/data/"+p)
	require.NotContains(t, err.Error(), v1.Credential.Secret.Reveal())
	cur, data, _ := tg.kvRead(t, p, 0)
	require.Equal(t, 1, cur)
	require.Equal(t, "someone-else", data["password"], "the other writer's version was not overwritten")

	publish(t, s, p, v1) // the engine's retry
	cur, data, _ = tg.kvRead(t, p, 0)
	require.Equal(t, 2, cur)
	require.Equal(t, v1.RunID, data[rotation.DataRunID])
}

func TestPermissionDenied(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	p := tg.path(t)
	tok := tg.tokenWithPolicy(t, map[string][]string{
		tg.mount + "/data/rotator-test/*":     {"read"},
		tg.mount + "/metadata/rotator-test/*": {"read"},
	}, time.Hour, true)
	s := tg.storeWith(t, Config{Spec: tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: tokenRef(t, tok)}})})
	v1 := storetest.Version(t, 1, storetest.RunID())
	err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v1})
	require.ErrorIs(t, err, ErrPermissionDenied)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "permission denied: need create/update on "+tg.mount+"/data/"+p)
	require.NotContains(t, err.Error(), tok)
	require.NotContains(t, err.Error(), v1.Credential.Secret.Reveal())

	// Reading is allowed: an empty path describes as nothing.
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Nil(t, d.Current)
}

func TestMissingMount(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Mount = "rotator-no-such-mount"
	_, err := New(t.Context(), Config{Spec: spec})
	require.ErrorIs(t, err, ErrMountNotFound)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "mount rotator-no-such-mount/ not found")
}

func TestMountInsideMount(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Mount = tg.mount + "/app"
	_, err := New(t.Context(), Config{Spec: spec})
	require.ErrorIs(t, err, ErrMountNotFound)
	require.Contains(t, err.Error(), "is not a mount but a path inside mount "+tg.mount+"/")
}

func TestKVv1Mount(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	m := tg.enableKV(t, 1)
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Mount = m
	_, err := New(t.Context(), Config{Spec: spec})
	require.ErrorIs(t, err, ErrNotKVv2)
	require.True(t, rotation.IsPermanent(err))
	require.EqualError(t, err, "mount "+m+"/ is KV version 1; rotator needs KV v2: vault kv enable-versioning "+m+"/")
}

func TestTokenFromEnv(t *testing.T) {
	// Not parallel: it sets VAULT_TOKEN.
	tg := newTarget(t)
	t.Setenv("VAULT_TOKEN", tg.token)
	s := tg.storeWith(t, Config{Spec: &policy.VaultSpec{Address: tg.addr, Mount: tg.mount}})
	p := tg.path(t)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))
}

func TestNoTokenAnywhere(t *testing.T) {
	tg := testServer(t)
	t.Setenv("VAULT_TOKEN", "")
	t.Setenv("HOME", t.TempDir())
	_, err := New(t.Context(), Config{Spec: &policy.VaultSpec{Address: tg.addr, Mount: tg.mount}})
	require.ErrorContains(t, err, "no vault token: set VAULT_TOKEN")
	require.True(t, rotation.IsPermanent(err))
}

func TestTokenFileMissing(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	spec := tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{File: "/nonexistent/rotator-token"}}})
	_, err := New(t.Context(), Config{Spec: spec})
	require.ErrorContains(t, err, "auth.token.token: read secret file: open /nonexistent/rotator-token")
}

// --- tests that control the server ---

func TestSealed_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.Seal()
	_, err := New(t.Context(), Config{Spec: tg.spec(t, policy.VaultAuthSpec{})})
	require.ErrorIs(t, err, ErrSealed)
	require.Contains(t, err.Error(), "vault at "+tg.addr+" is sealed")
	require.False(t, rotation.IsPermanent(err), "unsealing fixes it: retry")

	tg.srv.Unseal()
	s, p := tg.store(t), tg.path(t)
	tg.srv.Seal()
	err = s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: storetest.Version(t, 1, storetest.RunID())})
	require.ErrorIs(t, err, ErrSealed)
	tg.srv.Unseal()
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))
}

func TestUnreachable_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	s, p := tg.store(t), tg.path(t)
	tg.srv.SetUnreachable(true)
	v := storetest.Version(t, 1, storetest.RunID())
	err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v})
	require.ErrorIs(t, err, ErrUnreachable)
	require.False(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "vault at "+tg.addr+" is unreachable")
	require.Contains(t, err.Error(), "check the address (stores[].vault.address or VAULT_ADDR)")

	_, err = New(t.Context(), Config{Spec: tg.spec(t, policy.VaultAuthSpec{})})
	require.ErrorIs(t, err, ErrUnreachable)

	tg.srv.SetUnreachable(false)
	publish(t, s, p, v)
}

func TestNoAddress(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	_, err := New(t.Context(), Config{Spec: &policy.VaultSpec{Mount: "secret"}})
	require.ErrorContains(t, err, "no address: set stores[].vault.address or VAULT_ADDR")
}

func TestExpiredToken_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tok := tg.srv.CreateToken(vaulttest.TokenOptions{Policies: []string{"root-like"}, TTL: time.Hour, Renewable: true})
	tg.srv.SetPolicy("root-like", map[string][]string{"secret/*": {"create", "read", "update", "delete", "list"}})
	s := tg.storeWith(t, Config{Spec: tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: tokenRef(t, tok)}})})
	p := tg.path(t)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))

	tg.srv.ExpireToken(tok)
	err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: storetest.Version(t, 2, storetest.RunID())})
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.True(t, rotation.IsPermanent(err))
	require.True(t, strings.HasPrefix(err.Error(), "publish: vault token expired or revoked: "), err.Error())
	require.NotContains(t, err.Error(), tok)

	// At start-up too.
	_, err = New(t.Context(), Config{Spec: tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: tokenRef(t, tok)}})})
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.Contains(t, err.Error(), "vault token expired or revoked")
}

func TestRevokedToken_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tok := tg.srv.CreateToken(vaulttest.TokenOptions{Policies: []string{"kv"}})
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"create", "read", "update"}})
	s := tg.storeWith(t, Config{Spec: tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: tokenRef(t, tok)}})})
	tg.srv.RevokeToken(tok)
	_, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: tg.path(t)})
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.Contains(t, err.Error(), "vault token expired or revoked")
}

func TestTokenRenewal_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"create", "read", "update"}})
	tok := tg.srv.CreateToken(vaulttest.TokenOptions{Policies: []string{"kv"}, TTL: 2 * time.Second, Renewable: true})
	s := tg.storeWith(t, Config{Spec: tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: tokenRef(t, tok)}})})
	time.Sleep(3 * time.Second) // past the original TTL
	ttl, ok := tg.srv.TokenTTL(tok)
	require.True(t, ok, "the token was renewed in the background before it expired")
	require.Greater(t, ttl, time.Duration(0))
	require.GreaterOrEqual(t, tg.srv.Renewals(), 2)
	publish(t, s, tg.path(t), storetest.Version(t, 1, storetest.RunID()))
}

func appRoleSpec(t *testing.T, tg *target, roleID, secretID string) *policy.VaultSpec {
	return tg.spec(t, policy.VaultAuthSpec{AppRole: &policy.VaultAppRoleAuth{
		RoleID: tokenRef(t, roleID), SecretID: tokenRef(t, secretID)}})
}

func TestAppRoleLogin_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"create", "read", "update"}})
	roleID, secretID := tg.srv.AddAppRole("rotator", vaulttest.AppRoleOptions{Token: vaulttest.TokenOptions{Policies: []string{"kv"}, TTL: time.Hour, Renewable: true}})
	s := tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, roleID, secretID)})
	p := tg.path(t)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))
	require.Equal(t, 1, tg.srv.Logins())
}

func TestAppRoleBadSecretID_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	roleID, _ := tg.srv.AddAppRole("rotator", vaulttest.AppRoleOptions{})
	_, err := New(t.Context(), Config{Spec: appRoleSpec(t, tg, roleID, "wrong-secret-id")})
	require.ErrorIs(t, err, ErrLogin)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "vault approle login at auth/approle/login refused (status 400): invalid role or secret ID")
	require.NotContains(t, err.Error(), "wrong-secret-id")
}

func TestAppRoleReloginAfterExpiry_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"create", "read", "update"}})
	roleID, secretID := tg.srv.AddAppRole("rotator", vaulttest.AppRoleOptions{Token: vaulttest.TokenOptions{Policies: []string{"kv"}, TTL: time.Hour}})
	s := tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, roleID, secretID)})
	p := tg.path(t)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))

	tok := s.client.Token()
	tg.srv.ExpireToken(tok)
	publish(t, s, p, storetest.Version(t, 2, storetest.RunID()))
	require.Equal(t, 2, tg.srv.Logins(), "an expired AppRole token is replaced by a new login")
	require.NotEqual(t, tok, s.client.Token())
}

func TestAppRoleLoginWhenNotRenewable_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"create", "read", "update"}})
	roleID, secretID := tg.srv.AddAppRole("rotator", vaulttest.AppRoleOptions{Token: vaulttest.TokenOptions{Policies: []string{"kv"}, TTL: 2 * time.Second}})
	s := tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, roleID, secretID)})
	require.Eventually(t, func() bool { return tg.srv.Logins() >= 2 }, 5*time.Second, 50*time.Millisecond,
		"a non-renewable AppRole token is replaced by a new login in the background")
	_, ok := tg.srv.TokenTTL(s.client.Token())
	require.True(t, ok)
}

func TestAppRoleMaxTTLLogsInAgain_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"create", "read", "update"}})
	roleID, secretID := tg.srv.AddAppRole("rotator", vaulttest.AppRoleOptions{Token: vaulttest.TokenOptions{
		Policies: []string{"kv"}, TTL: 2 * time.Second, MaxTTL: 3 * time.Second, Renewable: true}})
	tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, roleID, secretID)})
	require.Eventually(t, func() bool { return tg.srv.Logins() >= 2 }, 6*time.Second, 50*time.Millisecond,
		"renewal capped by max TTL turns into a new login")
	require.GreaterOrEqual(t, tg.srv.Renewals(), 1)
}

func k8sSpec(t *testing.T, tg *target, role, jwt string) *policy.VaultSpec {
	f := filepath.Join(t.TempDir(), "sa-token")
	require.NoError(t, os.WriteFile(f, []byte(jwt), 0o600))
	return tg.spec(t, policy.VaultAuthSpec{Kubernetes: &policy.VaultKubernetesAuth{Role: role, JWTFile: f}})
}

func TestKubernetesLogin_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"create", "read", "update"}})
	tg.srv.AddKubernetesRole("rotator", vaulttest.KubernetesRole{JWT: "eyJ.sa.jwt", Token: vaulttest.TokenOptions{Policies: []string{"kv"}, TTL: time.Hour}})
	s := tg.storeWith(t, Config{Spec: k8sSpec(t, tg, "rotator", "eyJ.sa.jwt")})
	publish(t, s, tg.path(t), storetest.Version(t, 1, storetest.RunID()))

	_, err := New(t.Context(), Config{Spec: k8sSpec(t, tg, "rotator", "eyJ.wrong.jwt")})
	require.ErrorIs(t, err, ErrLogin)
	require.Contains(t, err.Error(), "vault kubernetes login at auth/kubernetes/login refused (status 403): permission denied")
	require.NotContains(t, err.Error(), "eyJ.wrong.jwt")

	spec := tg.spec(t, policy.VaultAuthSpec{Kubernetes: &policy.VaultKubernetesAuth{Role: "rotator", JWTFile: "/nonexistent/sa-token"}})
	_, err = New(t.Context(), Config{Spec: spec})
	require.ErrorContains(t, err, "read service-account token /nonexistent/sa-token")
}

func TestNamespace_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.EnableKV("team-a", "kv", 2)
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Mount, spec.Namespace = "kv", "team-a"
	s := tg.storeWith(t, Config{Spec: spec})
	p := tg.path(t)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))
	require.Equal(t, 1, tg.srv.CurrentVersion("team-a", "kv", p))

	spec2 := tg.spec(t, policy.VaultAuthSpec{})
	spec2.Mount = "kv" // same mount, root namespace: not there
	_, err := New(t.Context(), Config{Spec: spec2})
	require.ErrorIs(t, err, ErrMountNotFound)
}

// TestNoDataPathOnKV1_TestServer shows why the mount check matters: on a
// KV v1 mount a write to <mount>/data/<path> would create a secret named
// "data/<path>". The store refuses before writing anything.
func TestNoDataPathOnKV1_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.EnableKV("", "legacy", 1)
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Mount = "legacy"
	_, err := New(t.Context(), Config{Spec: spec})
	require.ErrorIs(t, err, ErrNotKVv2)
	require.Empty(t, tg.srv.KV1("", "legacy"))
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ref := policy.Ref{Env: "X"}
	tests := []struct {
		name string
		spec *policy.VaultSpec
		want string
	}{
		{"ok token default", &policy.VaultSpec{Mount: "secret"}, ""},
		{"ok approle", &policy.VaultSpec{Mount: "secret", Auth: policy.VaultAuthSpec{AppRole: &policy.VaultAppRoleAuth{RoleID: ref, SecretID: ref}}}, ""},
		{"nil", nil, "no vault settings"},
		{"no mount", &policy.VaultSpec{}, "mount is required"},
		{"dot mount", &policy.VaultSpec{Mount: "a/../b"}, "is not a clean path"},
		{"bad address", &policy.VaultSpec{Mount: "secret", Address: "vault:8200"}, "is not an http(s) URL"},
		{"two auths", &policy.VaultSpec{Mount: "secret", Auth: policy.VaultAuthSpec{
			Token: &policy.VaultTokenAuth{Token: ref}, Kubernetes: &policy.VaultKubernetesAuth{Role: "r"}}}, "at most one of"},
		{"approle without secret", &policy.VaultSpec{Mount: "secret", Auth: policy.VaultAuthSpec{AppRole: &policy.VaultAppRoleAuth{RoleID: ref}}}, "auth.approle.secret_id: set env or file"},
		{"k8s without role", &policy.VaultSpec{Mount: "secret", Auth: policy.VaultAuthSpec{Kubernetes: &policy.VaultKubernetesAuth{}}}, "auth.kubernetes.role is required"},
		{"token ref both", &policy.VaultSpec{Mount: "secret", Auth: policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{Env: "A", File: "b"}}}}, "set only one of env and file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Validate(tc.spec)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestBadPath(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	s := tg.store(t)
	for _, p := range []string{"", "/", "a/../b", "a//b"} {
		err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: storetest.Version(t, 1, storetest.RunID())})
		require.ErrorContains(t, err, "bad secret path", "path %q", p)
	}
}

func TestCloseStopsRenewal_TestServer(t *testing.T) {
	t.Parallel()
	tg := testServer(t)
	tg.srv.SetPolicy("kv", map[string][]string{"secret/*": {"read"}})
	roleID, secretID := tg.srv.AddAppRole("rotator", vaulttest.AppRoleOptions{Token: vaulttest.TokenOptions{Policies: []string{"kv"}, TTL: time.Hour, Renewable: true}})
	s, err := New(context.Background(), Config{Spec: appRoleSpec(t, tg, roleID, secretID)})
	require.NoError(t, err)
	tok := s.client.Token()
	s.Close()
	s.Close()
	_, ok := tg.srv.TokenTTL(tok)
	require.False(t, ok, "Close revokes the token the store logged in for")
}
