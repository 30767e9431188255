package apikey_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
)

// loadSpec parses a policies file with one http_api secret, as the loader
// leaves it (preset applied, defaults filled).
func loadSpec(t *testing.T, rotatorYAML string) *policy.HTTPAPISpec {
	t.Helper()
	doc := "stores: [{name: local, files: {dir: out}}]\nsecrets:\n  - id: api/openrouter\n    class: api_key\n    publish: [{store: local, path: api/openrouter.json}]\n    rotator:\n" + rotatorYAML
	f, err := policy.Parse(t.TempDir()+"/policies.yaml", []byte(doc))
	require.NoError(t, err)
	return f.Secrets[0].Rotator.HTTPAPI
}

func presetYAML(f *fakeOpenRouter) string {
	return fmt.Sprintf("      http_api: {preset: openrouter, base_url: %q, management: {env: OPENROUTER_MANAGEMENT_KEY}}\n", f.baseURL())
}

// genericYAML describes the same provider call by call, without the preset.
func genericYAML(f *fakeOpenRouter) string {
	return fmt.Sprintf(`      http_api:
        base_url: %q
        management: {env: M}
        name_prefix: rot-
        create: {method: POST, url: /keys, headers: {Authorization: "Bearer {management}"}, body: '{"name": "{name}", "limit": 5}', status: [201], key_path: key, id_path: data.hash}
        verify: {method: GET, url: /key, headers: {Authorization: "Bearer {key}"}}
        revoke: {method: DELETE, url: "/keys/{key_id}", headers: {Authorization: "Bearer {management}"}}
        list: {method: GET, url: "/keys?include_disabled=true", headers: {Authorization: "Bearer {management}"}, items_path: data, id_path: hash, name_path: name}
        last_used: {method: GET, url: "/keys/{key_id}", headers: {Authorization: "Bearer {management}"}, usage_path: data.usage}
`, f.baseURL())
}

func newProvider(t *testing.T, f *fakeOpenRouter, yaml string, logs *bytes.Buffer) *apikey.Provider {
	t.Helper()
	p, err := apikey.New(apikey.Config{
		Spec:       loadSpec(t, yaml),
		Management: func(context.Context) (secret.Value, error) { return secret.New(f.mgmt), nil },
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		Sleep:      func(context.Context, time.Duration) error { return nil },
	})
	require.NoError(t, err)
	return p
}

const runA = "11111111-1111-4111-8111-111111111111"
const runB = "22222222-2222-4222-8222-222222222222"

// The preset speaks OpenRouter's documented shapes: POST /keys with a
// name, the key and data.hash back; GET /key with the new key; DELETE
// /keys/{hash}; GET /keys to find strays.
func TestOpenRouterPreset(t *testing.T) {
	t.Parallel()
	f := newFakeOpenRouter(t)
	var logs bytes.Buffer
	p := newProvider(t, f, presetYAML(f), &logs)
	ctx := context.Background()

	r1, err := p.Generate(ctx, rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runA})
	require.NoError(t, err)
	c1 := r1.Credential
	require.True(t, strings.HasPrefix(c1.Secret.Reveal(), "sk-or-v1-"))
	require.Len(t, c1.KeyID, 64, "the key's hash is its id")
	require.Equal(t, "api_key", c1.Field)
	require.Equal(t, "rotator-api/openrouter-"+runA, c1.Extra["key_name"])
	require.Equal(t, []any{"name"}, keysOf(f.bodies[0]))
	require.Equal(t, []string{"GET /api/v1/keys", "POST /api/v1/keys", "GET /api/v1/key"}, f.calls)
	require.True(t, f.valid(c1.Secret.Reveal()))

	r2, err := p.Generate(ctx, rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runB, Current: c1.Meta()})
	require.NoError(t, err)
	c2 := r2.Credential
	require.NotEqual(t, c1.KeyID, c2.KeyID)
	require.True(t, f.valid(c1.Secret.Reveal()), "generate never touches the current key")
	require.NoError(t, p.Test(ctx, rotation.TestRequest{SecretID: "api/openrouter", Credential: c2}))

	// last_used: OpenRouter reports spend; a key is unused while it stays put.
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	lu, err := p.LastUsed(ctx, rotation.LastUsedRequest{SecretID: "api/openrouter", Credential: c1.Meta(), Now: t0})
	require.NoError(t, err)
	require.Equal(t, t0, lu.LastUsed, "the first look counts as a use")
	lu, err = p.LastUsed(ctx, rotation.LastUsedRequest{SecretID: "api/openrouter", Credential: c1.Meta(), Now: t0.Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, t0, lu.LastUsed, "unchanged usage: not used since")
	f.use(c1.KeyID, 0.25)
	lu, err = p.LastUsed(ctx, rotation.LastUsedRequest{SecretID: "api/openrouter", Credential: c1.Meta(), Now: t0.Add(2 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, t0.Add(2*time.Hour), lu.LastUsed, "spend moved: used now")

	// Retire twice: the second finds it gone, which is fine.
	retire := rotation.RetireRequest{SecretID: "api/openrouter", Old: c1.Meta(), New: c2.Meta()}
	require.NoError(t, p.Retire(ctx, retire))
	require.NoError(t, p.Retire(ctx, retire))
	require.False(t, f.valid(c1.Secret.Reveal()), "a revoked key stops verifying")
	require.Error(t, p.Test(ctx, rotation.TestRequest{SecretID: "api/openrouter", Credential: c1}))
	_, err = p.LastUsed(ctx, rotation.LastUsedRequest{SecretID: "api/openrouter", Credential: c1.Meta()})
	require.ErrorIs(t, err, rotation.ErrNotFound)

	// A revoked OpenRouter key cannot come back.
	err = p.Restore(ctx, rotation.RestoreRequest{SecretID: "api/openrouter", Old: c1.Meta(), Previous: &c1})
	require.ErrorIs(t, err, rotation.ErrNotRestorable)
	// A key that still works needs no restoring (a rollback before retire).
	require.NoError(t, p.Restore(ctx, rotation.RestoreRequest{SecretID: "api/openrouter", Old: c2.Meta(), Previous: &c2}))

	// Discard twice.
	discard := rotation.DiscardRequest{SecretID: "api/openrouter", New: c2.Meta()}
	require.NoError(t, p.Discard(ctx, discard))
	require.NoError(t, p.Discard(ctx, discard))
	require.Empty(t, f.live())
	noSecrets(t, f, logs.String())
}

func keysOf(m map[string]any) []any {
	var out []any
	for k := range m {
		out = append(out, k)
	}
	return out
}

// noSecrets fails when any key the provider ever made, or the management
// key, is in one of the outputs.
func noSecrets(t *testing.T, f *fakeOpenRouter, outputs ...string) {
	t.Helper()
	for _, k := range f.allKeys() {
		for i, out := range outputs {
			require.NotContains(t, out, k, "a key leaked into output %d", i)
		}
	}
}

// The generic provider: a new key that does not verify is revoked at once
// and the error names the call, not a secret, even when the provider
// echoes one back.
func TestGenericProviderBrokenKey(t *testing.T) {
	t.Parallel()
	f := newFakeOpenRouter(t)
	var logs bytes.Buffer
	p := newProvider(t, f, genericYAML(f), &logs)
	f.failNew, f.leaky = true, true
	_, err := p.Generate(context.Background(), rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runA})
	require.Error(t, err)
	require.ErrorContains(t, err, "verify call GET "+f.baseURL()+"/key: HTTP 401")
	require.ErrorContains(t, err, "REDACTED", "the echoed key was redacted")
	require.Empty(t, f.live(), "the broken key was revoked")
	require.Equal(t, map[string]any{"name": "rot-api/openrouter-" + runA, "limit": float64(5)}, f.bodies[0])

	// A wrong management key is Permanent: retrying will not fix it.
	f.failNew = false
	bad, err := apikey.New(apikey.Config{Spec: loadSpec(t, genericYAML(f)),
		Management: func(context.Context) (secret.Value, error) { return secret.New("sk-or-v1-wrong-management"), nil }})
	require.NoError(t, err)
	_, err = bad.Generate(context.Background(), rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runA})
	require.True(t, rotation.IsPermanent(err), "%v", err)
	require.NotContains(t, err.Error(), "sk-or-v1-wrong-management")
	noSecrets(t, f, logs.String(), err.Error())
}

// Keys a crashed run created are found by name and revoked; keys of other
// secrets (even with a similar id) and the current key are left alone.
func TestSweepStrays(t *testing.T) {
	t.Parallel()
	f := newFakeOpenRouter(t)
	var logs bytes.Buffer
	p := newProvider(t, f, genericYAML(f), &logs)
	other := newProvider(t, f, genericYAML(f), &logs)
	ctx := context.Background()
	cur, err := p.Generate(ctx, rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runA})
	require.NoError(t, err)
	// A sibling secret whose id starts like this one's.
	sib, err := other.Generate(ctx, rotation.GenerateRequest{SecretID: "api/openrouter-x", RunID: runA})
	require.NoError(t, err)
	// A stray: created, then the run died.
	stray, err := p.Generate(ctx, rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runB, Current: cur.Credential.Meta()})
	require.NoError(t, err)
	// The same run again (resumed at generate): the stray goes, a new key comes.
	again, err := p.Generate(ctx, rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runB, Current: cur.Credential.Meta()})
	require.NoError(t, err)
	require.False(t, f.valid(stray.Credential.Secret.Reveal()), "the stray is revoked")
	require.True(t, f.valid(again.Credential.Secret.Reveal()))
	require.True(t, f.valid(cur.Credential.Secret.Reveal()), "the current key is kept")
	require.True(t, f.valid(sib.Credential.Secret.Reveal()), "another secret's key is kept")
	require.Contains(t, logs.String(), "revoked a stray api key")
	noSecrets(t, f, logs.String())
}

func TestToken(t *testing.T) {
	t.Parallel()
	tok, err := apikey.NewToken(&policy.TokenSpec{Prefix: "adm_", Length: 48})
	require.NoError(t, err)
	ctx := context.Background()
	a, err := tok.Generate(ctx, rotation.GenerateRequest{SecretID: "admin/registration", RunID: runA})
	require.NoError(t, err)
	b, err := tok.Generate(ctx, rotation.GenerateRequest{SecretID: "admin/registration", RunID: runB, Current: a.Credential.Meta()})
	require.NoError(t, err)
	for _, c := range []rotation.Credential{a.Credential, b.Credential} {
		s := c.Secret.Reveal()
		require.True(t, strings.HasPrefix(s, "adm_"))
		require.Len(t, s, 4+48)
		require.Regexp(t, `^adm_[A-Za-z0-9]{48}$`, s)
		require.Equal(t, "token", c.Field)
		require.NoError(t, tok.Test(ctx, rotation.TestRequest{Credential: c}))
	}
	require.NotEqual(t, a.Credential.Secret.Reveal(), b.Credential.Secret.Reveal())
	for range 2 {
		require.NoError(t, tok.Retire(ctx, rotation.RetireRequest{Old: a.Credential.Meta(), New: b.Credential.Meta()}))
		require.NoError(t, tok.Discard(ctx, rotation.DiscardRequest{New: b.Credential.Meta()}))
		require.NoError(t, tok.Restore(ctx, rotation.RestoreRequest{Old: a.Credential.Meta()}))
	}
	err = tok.Test(ctx, rotation.TestRequest{Credential: rotation.Credential{Secret: secret.New("adm_short-secret-value"), KeyID: "x"}})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "short-secret-value")
	_, err = tok.Clients(ctx, rotation.ClientsRequest{})
	require.ErrorIs(t, err, rotation.ErrUnsupported)

	// Uniform over the alphabet: every character shows up in enough draws.
	seen := map[rune]bool{}
	for i := range 40 {
		r, err := tok.Generate(ctx, rotation.GenerateRequest{RunID: fmt.Sprint(i)})
		require.NoError(t, err)
		for _, c := range strings.TrimPrefix(r.Credential.Secret.Reveal(), "adm_") {
			seen[c] = true
		}
	}
	require.Len(t, seen, 62)
}

// A create answer with a status the policy does not list may carry the new
// key, which is not known yet and cannot be redacted: it is never quoted.
func TestCreateAnswerNeverQuoted(t *testing.T) {
	t.Parallel()
	f := newFakeOpenRouter(t)
	var logs bytes.Buffer
	p := newProvider(t, f, strings.Replace(genericYAML(f), "status: [201]", "status: [202]", 1), &logs)
	_, err := p.Generate(context.Background(), rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runA})
	require.Error(t, err)
	require.ErrorContains(t, err, "create call POST "+f.baseURL()+"/keys: HTTP 201")
	require.NotEmpty(t, f.allKeys(), "the provider did create a key")
	noSecrets(t, f, logs.String(), err.Error())
}
