package vault

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/vaultdev"
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

func TestConformanceShared(t *testing.T) {
	tg := newTarget(t)
	s := tg.store(t)
	storetest.Run(t, storetest.Shared(func(t *testing.T) (rotation.DocStore, string) {
		return s, tg.path(t)
	}))
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
	tok := tg.newToken(t, tokenOptions{rules: map[string][]string{
		tg.mount + "/data/rotator-test/*":     {"read"},
		tg.mount + "/metadata/rotator-test/*": {"read"},
	}, ttl: time.Hour, renewable: true})
	s := tg.storeWith(t, Config{Spec: tg.tokenSpec(t, tok)})
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
	tg := newTarget(t)
	t.Setenv("VAULT_TOKEN", "")
	t.Setenv("HOME", t.TempDir())
	_, err := New(t.Context(), Config{Spec: &policy.VaultSpec{Address: tg.addr, Mount: tg.mount}})
	require.ErrorContains(t, err, "no vault token: set VAULT_TOKEN")
	require.True(t, rotation.IsPermanent(err))
}

func TestTokenFileMissing(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	spec := tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{File: "/nonexistent/rotator-token"}}})
	_, err := New(t.Context(), Config{Spec: spec})
	require.ErrorContains(t, err, "auth.token.token: read secret file: open /nonexistent/rotator-token")
}

// Sealing (vault operator seal) and unsealing with the dev server's key.
func TestSealed(t *testing.T) {
	t.Parallel()
	tg := devServer(t)
	tg.dev.Seal(t)
	_, err := New(t.Context(), Config{Spec: tg.spec(t, policy.VaultAuthSpec{})})
	require.ErrorIs(t, err, ErrSealed)
	require.Contains(t, err.Error(), "vault at "+tg.addr+" is sealed")
	require.False(t, rotation.IsPermanent(err), "unsealing fixes it: retry")

	tg.dev.Unseal(t)
	s, p := tg.store(t), tg.path(t)
	v := storetest.Version(t, 1, storetest.RunID())
	tg.dev.Seal(t)
	err = s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v})
	require.ErrorIs(t, err, ErrSealed)
	require.False(t, rotation.IsPermanent(err))
	tg.dev.Unseal(t)
	publish(t, s, p, v)
}

// An outage: a fault proxy in front of the server goes down and comes
// back.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	proxy := vaultdev.NewProxy(t, tg.addr)
	viaProxy := *tg
	viaProxy.addr = proxy.Addr
	s, p := viaProxy.store(t), tg.path(t)
	proxy.SetDown(true)
	v := storetest.Version(t, 1, storetest.RunID())
	err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v})
	require.ErrorIs(t, err, ErrUnreachable)
	require.False(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "vault at "+proxy.Addr+" is unreachable")
	require.Contains(t, err.Error(), "check the address (stores[].vault.address or VAULT_ADDR)")

	_, err = New(t.Context(), Config{Spec: viaProxy.spec(t, policy.VaultAuthSpec{})})
	require.ErrorIs(t, err, ErrUnreachable)

	proxy.SetDown(false)
	publish(t, s, p, v)
	cur, data, _ := tg.kvRead(t, p, 0)
	require.Equal(t, 1, cur)
	require.Equal(t, v.RunID, data[rotation.DataRunID])
}

func TestNoAddress(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	_, err := New(t.Context(), Config{Spec: &policy.VaultSpec{Mount: "secret"}})
	require.ErrorContains(t, err, "no address: set stores[].vault.address or VAULT_ADDR")
}

// A static token that expires: Vault forgets it, and the store says the
// token is expired or revoked, at a publish and at start-up.
func TestExpiredToken(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	tok := tg.newToken(t, tokenOptions{rules: tg.kvRules(), ttl: 3 * time.Second})
	s := tg.storeWith(t, Config{Spec: tg.tokenSpec(t, tok)})
	p := tg.path(t)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))

	require.Eventually(t, func() bool { _, ok := tg.tokenAlive(t, tok); return !ok }, 30*time.Second, 100*time.Millisecond,
		"vault expires the token after its TTL")
	err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: storetest.Version(t, 2, storetest.RunID())})
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.True(t, rotation.IsPermanent(err))
	require.True(t, strings.HasPrefix(err.Error(), "publish: vault token expired or revoked: "), err.Error())
	require.NotContains(t, err.Error(), tok)

	// At start-up too.
	_, err = New(t.Context(), Config{Spec: tg.tokenSpec(t, tok)})
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.Contains(t, err.Error(), "vault token expired or revoked")
}

func TestRevokedToken(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	tok := tg.newToken(t, tokenOptions{rules: tg.kvRules()})
	s := tg.storeWith(t, Config{Spec: tg.tokenSpec(t, tok)})
	require.NoError(t, tg.client(t).Auth().Token().RevokeOrphan(tok))
	_, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: tg.path(t)})
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.Contains(t, err.Error(), "vault token expired or revoked")
	require.NotContains(t, err.Error(), tok)
}

// A renewable token with a short TTL outlives it: the store renews it in
// the background.
func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	tok := tg.newToken(t, tokenOptions{rules: tg.kvRules(), ttl: 3 * time.Second, renewable: true})
	created := time.Now()
	var l logs
	s := tg.storeWith(t, Config{Spec: tg.tokenSpec(t, tok), Logger: l.logger()})
	require.Eventually(t, func() bool { return l.count("vault: token renewed") >= 2 && time.Since(created) > 4*time.Second },
		30*time.Second, 100*time.Millisecond, "the token is renewed in the background:\n%s", &l)
	// Alive more than 4 s after it was made with a 3 s TTL: only renewal
	// explains it. (Its remaining TTL is whole seconds and may read 0s
	// just before the next renewal, so it is not asserted.)
	_, ok := tg.tokenAlive(t, tok)
	require.True(t, ok, "the token outlived its first TTL")
	publish(t, s, tg.path(t), storetest.Version(t, 1, storetest.RunID()))
	require.NotContains(t, l.String(), tok)
}

// A renewable token whose max TTL is near: renewal cannot keep it, the
// store says so (and that a renewable token or a login method fixes it).
func TestTokenMaxTTL(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	tok := tg.newToken(t, tokenOptions{rules: tg.kvRules(), ttl: 2 * time.Second, maxTTL: 3 * time.Second, renewable: true})
	var l logs
	tg.storeWith(t, Config{Spec: tg.tokenSpec(t, tok), Logger: l.logger()})
	require.Eventually(t, func() bool {
		return l.count("vault: token can no longer be renewed (max TTL reached or renewal refused); give rotator a renewable token without a short max TTL, or use approle or kubernetes auth") == 1
	},
		30*time.Second, 100*time.Millisecond, "%s", &l)
}

// approle enables AppRole at a fresh mount with a role whose tokens get
// the test mount's rules, and returns the mount, role_id and a secret_id.
func (tg *target) approle(t *testing.T, role map[string]any) (mount, roleID, secretID string) {
	t.Helper()
	mount = tg.enableAuth(t, "approle")
	c := tg.client(t)
	body := map[string]any{"token_policies": tg.writePolicy(t, tg.kvRules())}
	for k, v := range role {
		body[k] = v
	}
	_, err := c.Logical().Write("auth/"+mount+"/role/rotator", body)
	require.NoError(t, err)
	sec, err := c.Logical().Read("auth/" + mount + "/role/rotator/role-id")
	require.NoError(t, err)
	roleID = sec.Data["role_id"].(string)
	sec, err = c.Logical().Write("auth/"+mount+"/role/rotator/secret-id", nil)
	require.NoError(t, err)
	return mount, roleID, sec.Data["secret_id"].(string)
}

func appRoleSpec(t *testing.T, tg *target, mount, roleID, secretID string) *policy.VaultSpec {
	return tg.spec(t, policy.VaultAuthSpec{AppRole: &policy.VaultAppRoleAuth{
		Mount: mount, RoleID: tokenRef(t, roleID), SecretID: tokenRef(t, secretID)}})
}

func TestAppRoleLogin(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount, roleID, secretID := tg.approle(t, map[string]any{"token_ttl": "1h"})
	var l logs
	s := tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, mount, roleID, secretID), Logger: l.logger()})
	publish(t, s, tg.path(t), storetest.Version(t, 1, storetest.RunID()))
	require.Equal(t, 1, l.count("vault: logged in"))
	require.NotContains(t, l.String(), secretID)
	require.NotContains(t, l.String(), s.client.Token())
}

func TestAppRoleBadSecretID(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount, roleID, _ := tg.approle(t, nil)
	_, err := New(t.Context(), Config{Spec: appRoleSpec(t, tg, mount, roleID, "wrong-secret-id")})
	require.ErrorIs(t, err, ErrLogin)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "vault approle login at auth/"+mount+"/login refused (status 400): invalid role or secret ID")
	require.NotContains(t, err.Error(), "wrong-secret-id")
}

// A role_id that is only blanks is a configuration error, not a retry:
// Vault would answer 500 "failed to determine alias name".
func TestAppRoleBlankRoleID(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount, _, secretID := tg.approle(t, nil)
	_, err := New(t.Context(), Config{Spec: appRoleSpec(t, tg, mount, "  ", secretID)})
	require.ErrorIs(t, err, ErrLogin)
	require.True(t, rotation.IsPermanent(err), "a missing role_id is not retried")
	require.Contains(t, err.Error(), "role_id from file ")
	require.Contains(t, err.Error(), "is blank")
	require.NotContains(t, err.Error(), secretID)
}

// A token that Vault no longer knows is replaced by a new login, and the
// request is retried once.
func TestAppRoleReloginAfterRevoke(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount, roleID, secretID := tg.approle(t, map[string]any{"token_ttl": "1h"})
	var l logs
	s := tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, mount, roleID, secretID), Logger: l.logger()})
	p := tg.path(t)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))

	tok := s.client.Token()
	require.NoError(t, tg.client(t).Auth().Token().RevokeOrphan(tok))
	publish(t, s, p, storetest.Version(t, 2, storetest.RunID()))
	require.Equal(t, 2, l.count("vault: logged in"), "a revoked AppRole token is replaced by a new login")
	require.NotEqual(t, tok, s.client.Token())
}

// A batch token cannot be renewed: the store logs in again before it
// expires.
func TestAppRoleLoginWhenNotRenewable(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount, roleID, secretID := tg.approle(t, map[string]any{"token_type": "batch", "token_ttl": "3s"})
	var l logs
	s := tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, mount, roleID, secretID), Logger: l.logger()})
	require.Eventually(t, func() bool { return l.count("vault: logged in") >= 2 }, 30*time.Second, 100*time.Millisecond,
		"a non-renewable AppRole token is replaced by a new login in the background:\n%s", &l)
	publish(t, s, tg.path(t), storetest.Version(t, 1, storetest.RunID()))
}

// Renewal capped by the token's max TTL turns into a new login.
func TestAppRoleMaxTTLLogsInAgain(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount, roleID, secretID := tg.approle(t, map[string]any{"token_ttl": "2s", "token_max_ttl": "4s"})
	var l logs
	s := tg.storeWith(t, Config{Spec: appRoleSpec(t, tg, mount, roleID, secretID), Logger: l.logger()})
	first := s.client.Token()
	require.Eventually(t, func() bool { return l.count("vault: logged in") >= 2 }, 30*time.Second, 100*time.Millisecond,
		"renewal capped by max TTL turns into a new login:\n%s", &l)
	require.GreaterOrEqual(t, l.count("vault: token renewed"), 1)
	require.NotEqual(t, first, s.client.Token())
	publish(t, s, tg.path(t), storetest.Version(t, 1, storetest.RunID()))
}

func k8sSpec(t *testing.T, tg *target, mount, role, jwt string) *policy.VaultSpec {
	f := filepath.Join(t.TempDir(), "sa-token")
	require.NoError(t, os.WriteFile(f, []byte(jwt), 0o600))
	return tg.spec(t, policy.VaultAuthSpec{Kubernetes: &policy.VaultKubernetesAuth{Mount: mount, Role: role, JWTFile: f}})
}

// saJWT is a well-formed (unsigned) service-account token for
// rotator/rotator, so that Vault goes as far as asking the Kubernetes API
// to review it.
func saJWT() string {
	enc := base64.RawURLEncoding.EncodeToString
	header := enc([]byte(`{"alg":"RS256","kid":"rotator-test"}`))
	claims := enc([]byte(`{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"rotator",` +
		`"kubernetes.io/serviceaccount/service-account.name":"rotator","kubernetes.io/serviceaccount/service-account.uid":"0d6e1f5e-0000-4000-8000-000000000000",` +
		`"sub":"system:serviceaccount:rotator:rotator"}`))
	return header + "." + claims + "." + enc([]byte("not-a-signature"))
}

// Kubernetes auth as far as a Vault without a Kubernetes API goes: the
// login reaches Vault's kubernetes method, which cannot have the token
// reviewed and refuses it with the same 403 as a bad token; the store says
// both causes, keeps the JWT out of the message, and stops retrying.
func TestKubernetesLoginRefused(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount := tg.enableAuth(t, "kubernetes")
	c := tg.client(t)
	// Nothing listens at port 1: the TokenReview cannot be made.
	_, err := c.Logical().Write("auth/"+mount+"/config", map[string]any{
		"kubernetes_host": "https://127.0.0.1:1", "disable_local_ca_jwt": true})
	require.NoError(t, err)
	_, err = c.Logical().Write("auth/"+mount+"/role/rotator", map[string]any{
		"bound_service_account_names": "rotator", "bound_service_account_namespaces": "rotator",
		"token_policies": tg.writePolicy(t, tg.kvRules())})
	require.NoError(t, err)

	jwt := saJWT()
	_, err = New(t.Context(), Config{Spec: k8sSpec(t, tg, mount, "rotator", jwt)})
	require.ErrorIs(t, err, ErrLogin)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "vault kubernetes login at auth/"+mount+"/login refused (status 403): permission denied")
	require.Contains(t, err.Error(), "or Vault cannot reach the Kubernetes API to review it (auth/"+mount+"/config kubernetes_host)")
	require.NotContains(t, err.Error(), jwt)

	// A role Vault does not know.
	_, err = New(t.Context(), Config{Spec: k8sSpec(t, tg, mount, "nope", jwt)})
	require.ErrorIs(t, err, ErrLogin)
	require.Contains(t, err.Error(), "refused (status 400)")
	require.NotContains(t, err.Error(), jwt)

	spec := tg.spec(t, policy.VaultAuthSpec{Kubernetes: &policy.VaultKubernetesAuth{Mount: mount, Role: "rotator", JWTFile: "/nonexistent/sa-token"}})
	_, err = New(t.Context(), Config{Spec: spec})
	require.ErrorContains(t, err, "read service-account token /nonexistent/sa-token")
	require.True(t, rotation.IsPermanent(err))
}

// Open-source Vault ignores X-Vault-Namespace: a configured namespace is
// refused before anything is read or written, instead of landing in the
// root namespace.
func TestNamespaceNeedsEnterprise(t *testing.T) {
	// Not parallel: a subtest sets VAULT_NAMESPACE.
	tg := newTarget(t)
	h, err := tg.client(t).Sys().Health()
	require.NoError(t, err)
	if hasNamespaces(h) {
		t.Fatalf("this test needs a Vault without namespaces; %s is Vault Enterprise %s", tg.addr, h.Version)
	}
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Namespace = "team-a"
	_, err = New(t.Context(), Config{Spec: spec})
	require.ErrorIs(t, err, ErrNamespaceUnsupported)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "vault at "+tg.addr+" is not Vault Enterprise (version "+h.Version+
		"): it has no namespaces and would use the root namespace instead of namespace \"team-a\"; remove stores[].vault.namespace")

	// VAULT_NAMESPACE is a configured namespace too.
	t.Run("from env", func(t *testing.T) {
		t.Setenv("VAULT_NAMESPACE", "team-b")
		_, err := New(t.Context(), Config{Spec: tg.spec(t, policy.VaultAuthSpec{})})
		require.ErrorIs(t, err, ErrNamespaceUnsupported)
	})
}

func TestHasNamespaces(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		h    api.HealthResponse
		want bool
	}{
		{api.HealthResponse{Version: "1.21.4"}, false},
		{api.HealthResponse{Version: "1.21.4", Enterprise: false}, false},
		{api.HealthResponse{Version: "1.21.4+ent", Enterprise: true}, true},
		{api.HealthResponse{Version: "1.15.2+ent"}, true}, // before the enterprise field (1.16)
		{api.HealthResponse{Version: "1.17.0+ent.hsm", Enterprise: true}, true},
	} {
		require.Equal(t, tc.want, hasNamespaces(&tc.h), "%+v", tc.h)
	}
}

// TestNoDataPathOnKV1 shows why the mount check matters: on a KV v1 mount
// a write to <mount>/data/<path> would create a secret named
// "data/<path>". The store refuses before writing anything.
func TestNoDataPathOnKV1(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	m := tg.enableKV(t, 1)
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Mount = m
	_, err := New(t.Context(), Config{Spec: spec})
	require.ErrorIs(t, err, ErrNotKVv2)
	list, err := tg.client(t).Logical().List(m)
	require.NoError(t, err)
	require.Nil(t, list, "nothing was written to the KV v1 mount")
}

// A mount disabled while the store runs is named as such, not taken for a
// secret that does not exist yet (the client library's parsed reads and
// KVv2 helpers say "not found" for both; the store reads the raw answer).
func TestMountRemovedWhileRunning(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	m := tg.enableKV(t, 2)
	spec := tg.spec(t, policy.VaultAuthSpec{})
	spec.Mount = m
	s := tg.storeWith(t, Config{Spec: spec})
	require.NoError(t, tg.client(t).Sys().Unmount(m))
	_, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: "app/db"})
	require.ErrorIs(t, err, ErrMountNotFound)
	require.True(t, rotation.IsPermanent(err))
	err = s.Publish(t.Context(), rotation.PublishRequest{Path: "app/db", Version: storetest.Version(t, 1, storetest.RunID())})
	require.ErrorIs(t, err, ErrMountNotFound)
}

// Settings others keep in the secret's metadata survive a publish (the
// store sends custom_metadata alone; KVv2.PutMetadata would reset them).
func TestPublishKeepsOthersMetadataSettings(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	s, p := tg.store(t), tg.path(t)
	_, err := tg.client(t).Logical().Write(tg.mount+"/metadata/"+p, map[string]any{
		"max_versions": 7, "delete_version_after": "240h", "cas_required": true})
	require.NoError(t, err)
	publish(t, s, p, storetest.Version(t, 1, storetest.RunID()))
	publish(t, s, p, storetest.Version(t, 2, storetest.RunID()))
	meta, err := tg.client(t).KVv2(tg.mount).GetMetadata(t.Context(), p)
	require.NoError(t, err)
	require.Equal(t, 7, meta.MaxVersions)
	require.Equal(t, 240*time.Hour, meta.DeleteVersionAfter)
	require.True(t, meta.CASRequired)
	require.Equal(t, "2", meta.CustomMetadata[MetaVersion])
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
	tg := newTarget(t)
	s := tg.store(t)
	for _, p := range []string{"", "/", "a/../b", "a//b"} {
		err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: storetest.Version(t, 1, storetest.RunID())})
		require.ErrorContains(t, err, "bad secret path", "path %q", p)
	}
}

func TestCloseRevokesLoginToken(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	mount, roleID, secretID := tg.approle(t, map[string]any{"token_ttl": "1h"})
	s, err := New(context.Background(), Config{Spec: appRoleSpec(t, tg, mount, roleID, secretID)})
	require.NoError(t, err)
	tok := s.client.Token()
	_, ok := tg.tokenAlive(t, tok)
	require.True(t, ok)
	s.Close()
	s.Close()
	_, ok = tg.tokenAlive(t, tok)
	require.False(t, ok, "Close revokes the token the store logged in for")
}

// TestStalePublishRaceRefusedByCAS: another writer publishes between the
// store's compare (its expectation holds) and its write. Vault refuses the
// write (cas on the version compared): ErrConflict, retryable; the retry,
// as the engine's, compares again and is refused as ErrStoreMoved. The
// other writer's version stays current.
func TestStalePublishRaceRefusedByCAS(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	p := tg.path(t)
	other := tg.store(t)
	v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
	publish(t, other, p, v1)
	raced := false
	s := tg.storeWith(t, Config{Spec: tg.spec(t, policy.VaultAuthSpec{}), beforeWrite: func() {
		if raced {
			return
		}
		raced = true
		require.NoError(t, other.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v2, Expect: &rotation.Expect{RunID: v1.RunID}}))
	}})
	req := rotation.PublishRequest{Path: p, Version: v3, Expect: &rotation.Expect{RunID: v1.RunID}}
	err := s.Publish(t.Context(), req)
	require.True(t, raced)
	require.ErrorIs(t, err, ErrConflict, "cas on the compared version refuses the write")
	err = s.Publish(t.Context(), req)
	require.ErrorIs(t, err, rotation.ErrStoreMoved, "the retry compares again")
	require.True(t, rotation.IsPermanent(err))
	require.ErrorContains(t, err, v1.RunID)
	require.ErrorContains(t, err, v2.RunID)
	require.ErrorContains(t, err, "KV version 2")
	require.NotContains(t, err.Error(), v3.Credential.Secret.Reveal())
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Equal(t, v2.RunID, d.Current.RunID)
	require.Equal(t, v1.RunID, d.Previous.RunID)
}

// TestDiscardDeletesTheDiscardedVersions: a discarding rollback leaves the
// discarded version and the older copy of the restored one soft-deleted
// (not readable, not previous for any reader), the rest of the history
// alone; an interrupted discard (its deletes lost) is finished by the next.
func TestDiscardDeletesTheDiscardedVersions(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	p := tg.path(t)
	s := tg.store(t)
	v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
	for _, v := range []rotation.Version{v1, v2, v3} {
		publish(t, s, p, v)
	}
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: p, RunID: v3.RunID, Discard: true}))
	deleted := func() map[int]bool {
		sec, err := tg.client(t).Logical().Read(tg.mount + "/metadata/" + p)
		require.NoError(t, err)
		out := map[int]bool{}
		for k, raw := range sec.Data["versions"].(map[string]any) {
			var n int
			_, _ = fmt.Sscan(k, &n)
			out[n] = raw.(map[string]any)["deletion_time"] != ""
		}
		return out
	}
	require.Equal(t, map[int]bool{1: false, 2: true, 3: true, 4: false}, deleted(), "KV versions 2 (v2's first copy) and 3 (v3, discarded) are deleted")
	cur, data, _ := tg.kvRead(t, p, 0)
	require.Equal(t, 4, cur)
	require.Equal(t, v2.RunID, data[rotation.DataRunID])

	// An interrupted discard: undelete (as if the deletes were lost), then
	// discard again.
	_, err := tg.client(t).Logical().Write(tg.mount+"/undelete/"+p, map[string]any{"versions": []int{2, 3}})
	require.NoError(t, err)
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: p, RunID: v3.RunID, Discard: true}))
	require.Equal(t, map[int]bool{1: false, 2: true, 3: true, 4: false}, deleted(), "the next discard finishes it")
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Equal(t, v1.RunID, d.Previous.RunID)
}
