package policy

import (
	"sync"
	"time"
)

// Presets of the http_api rotator, by name.
const (
	PresetOpenRouter = "openrouter"
)

// Defaults of the http_api and token rotators and of the checks.
const (
	DefaultNamePrefix    = "rotator-"
	DefaultAPIKeyField   = "api_key"
	DefaultHTTPTimeout   = 30 * time.Second
	DefaultTokenLength   = 40
	DefaultTokenField    = "token"
	MinTokenLength       = 24
	MaxTokenLength       = 256
	DefaultCheckTimeout  = 5 * time.Second
	MatchFingerprint     = "fingerprint"
	MatchVersion         = "version"
	openRouterBaseURL    = "https://openrouter.ai/api/v1"
	openRouterJSONHeader = "application/json"
)

// The keyring rotator's defaults and bounds (KeyringSpec).
const (
	DefaultKeyringField     = "keyring"
	DefaultKeyringAlgorithm = "HS256"
	MaxKeyringSize          = 1024
)

// Presets lists the preset names.
func Presets() []string { return []string{PresetOpenRouter} }

// preset returns the calls of a preset. They are made once and shared by
// every secret that uses the preset (read-only, as the rest of a loaded
// File): fresh calls for each secret were 2.6 KB of headers and strings a
// secret, 53 MB of a File of 20,000 http_api secrets (docs/performance.md).
//
// openrouter is OpenRouter's key provisioning API
// (https://openrouter.ai/docs/features/provisioning-api-keys), with a
// management (provisioning) key as bearer token:
//
//	create     POST   /keys         {"name": ...} -> 201 {"data": {"hash": ..., "name": ...}, "key": "sk-or-v1-..."}
//	verify     GET    /key          with the new key as bearer -> 200 {"data": {"label": ..., "usage": ...}}, 401 if invalid
//	revoke     DELETE /keys/{hash}  -> 200 {"deleted": true}; 404 when it does not exist
//	list       GET    /keys?include_disabled=true -> {"data": [{"hash": ..., "name": ..., "disabled": ...}]}
//	last_used  GET    /keys/{hash}  -> {"data": {"usage": ...}}: OpenRouter reports spend, not a
//	                                   last-used time, so a key is unused while its usage stays put
//
// A deleted key cannot be restored, so there is no restore call.
func preset(name string) (base string, calls map[string]*HTTPCallSpec) {
	return presetBase(name), presetCalls()[name]
}

// presetCalls are the calls of every preset, by preset and call name,
// made on first use.
var presetCalls = sync.OnceValue(func() map[string]map[string]*HTTPCallSpec {
	all := map[string]map[string]*HTTPCallSpec{}
	for _, name := range Presets() {
		all[name] = newPresetCalls(name)
	}
	return all
})

// presetBase is a preset's base_url.
func presetBase(name string) string {
	if name == PresetOpenRouter {
		return openRouterBaseURL
	}
	return ""
}

// newPresetCalls makes the calls of a preset.
func newPresetCalls(name string) map[string]*HTTPCallSpec {
	switch name {
	case PresetOpenRouter:
		mgmt := func() map[string]string {
			return map[string]string{"Authorization": "Bearer {management}", "Accept": openRouterJSONHeader}
		}
		create := mgmt()
		create["Content-Type"] = openRouterJSONHeader
		return map[string]*HTTPCallSpec{
			"create": {Method: "POST", URL: "/keys", Headers: create, Body: `{"name": "{name}"}`,
				KeyPath: "key", IDPath: "data.hash"},
			"verify": {Method: "GET", URL: "/key",
				Headers: map[string]string{"Authorization": "Bearer {key}", "Accept": openRouterJSONHeader}},
			"revoke":    {Method: "DELETE", URL: "/keys/{key_id}", Headers: mgmt()},
			"list":      {Method: "GET", URL: "/keys?include_disabled=true", Headers: mgmt(), ItemsPath: "data", IDPath: "hash", NamePath: "name"},
			"last_used": {Method: "GET", URL: "/keys/{key_id}", Headers: mgmt(), UsagePath: "data.usage"},
		}
	}
	return nil
}

// applyPreset fills base_url and the calls the file leaves out from the
// spec's preset. A call the file writes replaces the preset's whole.
func (h *HTTPAPISpec) applyPreset() {
	base, calls := preset(h.Preset)
	if calls == nil {
		return
	}
	if h.BaseURL == "" {
		h.BaseURL = base
	}
	for name, slot := range map[string]**HTTPCallSpec{"create": &h.Create, "verify": &h.Verify, "revoke": &h.Revoke,
		"restore": &h.Restore, "list": &h.List, "last_used": &h.LastUsed} {
		if *slot == nil && calls[name] != nil {
			*slot = calls[name]
		}
	}
}

// presetHas reports whether the preset defines the call.
func presetHas(name, call string) bool {
	_, calls := preset(name)
	return calls[call] != nil
}
