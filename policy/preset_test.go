package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPresetCallsShared: the secrets that use a preset share its calls
// (one set per process, not one per secret), and the calls are the
// preset's; a call the file writes is the secret's own.
func TestPresetCallsShared(t *testing.T) {
	f, err := Parse("policies.yaml", []byte(`version: 1
stores:
  - {name: local, files: {dir: out}}
secrets:
  - {id: api/a, class: api_key, rotator: {http_api: {preset: openrouter, management: {env: K}}}, publish: [{store: local, path: a}]}
  - {id: api/b, class: api_key, rotator: {http_api: {preset: openrouter, management: {env: K}}}, publish: [{store: local, path: b}]}
  - id: api/c
    class: api_key
    rotator:
      http_api:
        preset: openrouter
        management: {env: K}
        verify: {method: GET, url: /whoami, headers: {Authorization: "Bearer {key}"}}
    publish: [{store: local, path: c}]
`))
	require.NoError(t, err)
	fresh := newPresetCalls(PresetOpenRouter)
	var specs []*HTTPAPISpec
	for _, id := range []string{"api/a", "api/b", "api/c"} {
		s, ok := f.Secret(id)
		require.True(t, ok)
		specs = append(specs, s.Rotator.HTTPAPI)
	}
	a, b, c := specs[0], specs[1], specs[2]
	for name, got := range map[string][3]*HTTPCallSpec{
		"create":    {a.Create, b.Create, c.Create},
		"revoke":    {a.Revoke, b.Revoke, c.Revoke},
		"list":      {a.List, b.List, c.List},
		"last_used": {a.LastUsed, b.LastUsed, c.LastUsed},
	} {
		require.Equal(t, fresh[name], got[0], "%s: the preset's call", name)
		require.Same(t, got[0], got[1], "%s: shared", name)
		require.Same(t, got[0], got[2], "%s: shared", name)
	}
	require.Equal(t, fresh["verify"], a.Verify)
	require.Same(t, a.Verify, b.Verify)
	require.Equal(t, "/whoami", c.Verify.URL, "the file's own call")
	require.Nil(t, a.Restore, "the preset has none")
	require.Equal(t, openRouterBaseURL, a.BaseURL)
}
