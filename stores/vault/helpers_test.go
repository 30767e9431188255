package vault

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/syncbuf"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/stores/storetest"
)

func TestMain(m *testing.M) { os.Exit(vaultdev.Main(m)) }

// target is the Vault a test talks to: the package's shared
// `vault server -dev` (internal/vaultdev), or another Vault when
// VAULT_ADDR and VAULT_TOKEN are set (a root-like token; VAULT_TEST_MOUNT
// names its KV v2 mount, default "secret"). Tests that must control the
// server (seal it) use devServer, a dev server of their own, in every mode.
type target struct {
	addr  string
	token string // root-like token
	mount string
	dev   *vaultdev.Server // nil for another Vault
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
	v := vaultdev.Shared(t)
	return &target{addr: v.Addr, token: v.RootToken, mount: "secret", dev: v}
}

// devServer starts a dev server of the test's own.
func devServer(t *testing.T) *target {
	t.Helper()
	v := vaultdev.New(t, vaultdev.Options{})
	return &target{addr: v.Addr, token: v.RootToken, mount: "secret", dev: v}
}

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
	c.ClearNamespace()
	return c
}

// path returns a fresh secret path and deletes it (all versions) when the
// test ends.
func (tg *target) path(t *testing.T) string {
	t.Helper()
	p := "rotator-test/" + storetest.RunID()
	t.Cleanup(func() {
		_, _ = tg.client(t).Logical().Delete(tg.mount + "/metadata/" + p)
	})
	return p
}

// name returns a name no other test uses, for policies and mounts.
func name(prefix string) string {
	return prefix + strings.ReplaceAll(storetest.RunID()[:8], "-", "")
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

// writePolicy writes an ACL policy of path -> capabilities under a fresh
// name, deleted at cleanup, and returns the name.
func (tg *target) writePolicy(t *testing.T, rules map[string][]string) string {
	t.Helper()
	pol := name("rotator-test-")
	doc := map[string]any{"path": map[string]any{}}
	for p, caps := range rules {
		doc["path"].(map[string]any)[p] = map[string]any{"capabilities": caps}
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	c := tg.client(t)
	require.NoError(t, c.Sys().PutPolicy(pol, string(b)))
	t.Cleanup(func() { _ = c.Sys().DeletePolicy(pol) })
	return pol
}

// kvRules is what the store needs on the test mount.
func (tg *target) kvRules() map[string][]string {
	return map[string][]string{
		tg.mount + "/data/rotator-test/*":     {"create", "read", "update"},
		tg.mount + "/metadata/rotator-test/*": {"create", "read", "update"},
		tg.mount + "/delete/rotator-test/*":   {"update"},
	}
}

// tokenOptions describe a token newToken makes.
type tokenOptions struct {
	rules     map[string][]string
	ttl       time.Duration // 0: the mount's default
	maxTTL    time.Duration // explicit_max_ttl; 0: none
	renewable bool
}

// newToken creates a token (with the default policy) whose only other
// policy is o.rules, and revokes it at cleanup.
func (tg *target) newToken(t *testing.T, o tokenOptions) string {
	t.Helper()
	pol := tg.writePolicy(t, o.rules)
	renewable := o.renewable
	req := &api.TokenCreateRequest{Policies: []string{pol}, Renewable: &renewable}
	if o.ttl > 0 {
		req.TTL = o.ttl.String()
	}
	if o.maxTTL > 0 {
		req.ExplicitMaxTTL = o.maxTTL.String()
	}
	c := tg.client(t)
	sec, err := c.Auth().Token().Create(req)
	require.NoError(t, err)
	tok := sec.Auth.ClientToken
	t.Cleanup(func() { _ = c.Auth().Token().RevokeOrphan(tok) })
	return tok
}

// tokenAlive reports whether Vault still knows tok, and its TTL.
func (tg *target) tokenAlive(t *testing.T, tok string) (time.Duration, bool) {
	t.Helper()
	sec, err := tg.client(t).Auth().Token().Lookup(tok)
	if err != nil {
		return 0, false
	}
	ttl, err := sec.TokenTTL()
	require.NoError(t, err)
	return ttl, true
}

// tokenSpec is a spec that uses tok.
func (tg *target) tokenSpec(t *testing.T, tok string) *policy.VaultSpec {
	return tg.spec(t, policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: tokenRef(t, tok)}})
}

// enableKV mounts a KV engine of the given version at a fresh path.
func (tg *target) enableKV(t *testing.T, version int) string {
	t.Helper()
	m := name("rotator-kv")
	c := tg.client(t)
	require.NoError(t, c.Sys().Mount(m, &api.MountInput{Type: "kv", Options: map[string]string{"version": strconv.Itoa(version)}}))
	t.Cleanup(func() { _ = c.Sys().Unmount(m) })
	return m
}

// enableAuth enables an auth method of kind at a fresh mount path.
func (tg *target) enableAuth(t *testing.T, kind string) string {
	t.Helper()
	m := name(kind)
	c := tg.client(t)
	require.NoError(t, c.Sys().EnableAuthWithOptions(m, &api.EnableAuthOptions{Type: kind}))
	t.Cleanup(func() { _ = c.Sys().DisableAuth(m) })
	return m
}

// kvRead returns current_version, the data of version n (0: latest) and
// custom_metadata, read straight from Vault.
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

// logs captures a store's log lines (debug and up).
type logs struct {
	syncbuf.Buffer
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count returns how many log lines carry msg.
func (l *logs) count(msg string) int {
	return strings.Count(l.String(), `msg="`+msg+`"`)
}
