package vault

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/vaulttest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/stores/storetest"
)

// target is the Vault a test talks to: a real one when VAULT_ADDR and
// VAULT_TOKEN are set (VAULT_TEST_MOUNT names its KV v2 mount, default
// "secret"), the in-process test server otherwise. Tests that must control
// the server (seal it, expire tokens, fake Kubernetes) use testServer and
// end their name in _TestServer; they run in every mode.
type target struct {
	addr  string
	token string // root-like token
	mount string
	srv   *vaulttest.Server // nil for a real Vault
}

func newTarget(t *testing.T) *target {
	t.Helper()
	addr, tok := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN")
	if addr != "" && tok != "" {
		mount := os.Getenv("VAULT_TEST_MOUNT")
		if mount == "" {
			mount = "secret"
		}
		return &target{addr: addr, token: tok, mount: mount}
	}
	return testServer(t)
}

// testServer always returns the in-process test server.
func testServer(t *testing.T) *target {
	t.Helper()
	srv := vaulttest.New(t)
	return &target{addr: srv.Addr, token: srv.RootToken, mount: "secret", srv: srv}
}

func (tg *target) real() bool { return tg.srv == nil }

// client is an API client with the root-like token, for setting up and
// inspecting what the store did.
func (tg *target) client(t *testing.T) *api.Client {
	t.Helper()
	conf := api.DefaultConfig()
	conf.Address = tg.addr
	conf.MaxRetries = 0
	c, err := api.NewClient(conf)
	require.NoError(t, err)
	c.SetToken(tg.token)
	return c
}

// path returns a fresh secret path and deletes it (all versions) when the
// test ends.
func (tg *target) path(t *testing.T) string {
	t.Helper()
	p := "rotator-test/" + storetest.RunID()
	t.Cleanup(func() {
		if tg.real() {
			_, _ = tg.client(t).Logical().Delete(tg.mount + "/metadata/" + p)
		}
	})
	return p
}

// tokenRef writes tok to a file and returns a Ref to it.
func tokenRef(t *testing.T, tok string) policy.Ref {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(f, []byte(tok+"\n"), 0o600))
	return policy.Ref{File: f}
}

func (tg *target) spec(t *testing.T, auth policy.VaultAuthSpec) *policy.VaultSpec {
	t.Helper()
	if auth.Token == nil && auth.AppRole == nil && auth.Kubernetes == nil {
		auth.Token = &policy.VaultTokenAuth{Token: tokenRef(t, tg.token)}
	}
	return &policy.VaultSpec{Address: tg.addr, Mount: tg.mount, Auth: auth}
}

// store builds a store with the root-like token.
func (tg *target) store(t *testing.T) *Store {
	t.Helper()
	return tg.storeWith(t, Config{Spec: tg.spec(t, policy.VaultAuthSpec{})})
}

func (tg *target) storeWith(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// tokenWithPolicy creates a token whose only policy (besides default) is
// rules: path -> capabilities.
func (tg *target) tokenWithPolicy(t *testing.T, rules map[string][]string, ttl time.Duration, renewable bool) string {
	t.Helper()
	name := "rotator-test-" + storetest.RunID()[:8]
	if !tg.real() {
		tg.srv.SetPolicy(name, rules)
		return tg.srv.CreateToken(vaulttest.TokenOptions{Policies: []string{name}, TTL: ttl, Renewable: renewable})
	}
	doc := map[string]any{"path": map[string]any{}}
	for p, caps := range rules {
		doc["path"].(map[string]any)[p] = map[string]any{"capabilities": caps}
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	c := tg.client(t)
	_, err = c.Logical().Write("sys/policies/acl/"+name, map[string]any{"policy": string(b)})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = c.Logical().Delete("sys/policies/acl/" + name) })
	req := map[string]any{"policies": []string{name}, "renewable": renewable}
	if ttl > 0 {
		req["ttl"] = ttl.String()
	}
	sec, err := c.Logical().Write("auth/token/create", req)
	require.NoError(t, err)
	return sec.Auth.ClientToken
}

// enableKV mounts a KV engine of the given version at a fresh path.
func (tg *target) enableKV(t *testing.T, version int) string {
	t.Helper()
	name := "rotator-kv" + strings.ReplaceAll(storetest.RunID()[:8], "-", "")
	if !tg.real() {
		tg.srv.EnableKV("", name, version)
		return name
	}
	c := tg.client(t)
	require.NoError(t, c.Sys().Mount(name, &api.MountInput{Type: "kv", Options: map[string]string{"version": strconv.Itoa(version)}}))
	t.Cleanup(func() { _ = c.Sys().Unmount(name) })
	return name
}

// kvVersion returns current_version and the data of version n (0: latest)
// read straight from Vault.
func (tg *target) kvRead(t *testing.T, p string, n int) (int, map[string]any, map[string]any) {
	t.Helper()
	c := tg.client(t)
	meta, err := c.Logical().Read(tg.mount + "/metadata/" + p)
	require.NoError(t, err)
	require.NotNil(t, meta, "no metadata at %s", p)
	cur := int(jsonInt(meta.Data["current_version"]))
	custom, _ := meta.Data["custom_metadata"].(map[string]any)
	q := map[string][]string{}
	if n > 0 {
		q["version"] = []string{strconv.Itoa(n)}
	}
	sec, err := c.Logical().ReadWithData(tg.mount+"/data/"+p, q)
	require.NoError(t, err)
	require.NotNil(t, sec)
	data, _ := sec.Data["data"].(map[string]any)
	return cur, data, custom
}
