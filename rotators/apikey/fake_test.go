package apikey_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOpenRouter is a provider served by a local HTTP server, speaking the
// shapes of OpenRouter's key provisioning API
// (https://openrouter.ai/docs/api-reference/api-keys): a management key
// creates, lists, reads and deletes keys; a key calls GET /api/v1/key on
// itself. Keys have real state: a deleted key stops verifying.
type fakeOpenRouter struct {
	t    *testing.T
	srv  *httptest.Server
	mgmt string

	mu      sync.Mutex
	keys    map[string]*fakeKey // hash -> key
	order   []string
	calls   []string
	bodies  []map[string]any
	leaky   bool // 401 answers echo the Authorization header (to test redaction)
	failNew bool // new keys fail GET /key (to test a key that does not verify)
	seen    []string
}

type fakeKey struct {
	Hash     string
	Name     string
	Key      string
	Disabled bool
	Usage    float64
	Created  time.Time
}

func newFakeOpenRouter(t *testing.T) *fakeOpenRouter {
	f := &fakeOpenRouter{t: t, mgmt: "sk-or-v1-mgmt-" + randHex(16), keys: map[string]*fakeKey{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenRouter) baseURL() string { return f.srv.URL + "/api/v1" }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (f *fakeOpenRouter) fail(w http.ResponseWriter, code int, msg string, r *http.Request) {
	if f.leaky {
		msg += " (got " + r.Header.Get("Authorization") + ")"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "metadata": nil}, "user_id": nil})
}

func (k *fakeKey) data() map[string]any {
	return map[string]any{"hash": k.Hash, "name": k.Name, "label": k.Key[:12] + "..." + k.Key[len(k.Key)-4:],
		"disabled": k.Disabled, "limit": nil, "limit_remaining": nil, "limit_reset": nil, "include_byok_in_limit": false,
		"usage": k.Usage, "usage_daily": k.Usage, "usage_weekly": k.Usage, "usage_monthly": k.Usage,
		"byok_usage": 0, "byok_usage_daily": 0, "byok_usage_weekly": 0, "byok_usage_monthly": 0,
		"created_at": k.Created.UTC().Format(time.RFC3339), "updated_at": nil, "expires_at": nil,
		"creator_user_id": "user_2dHFtVWx2n56w6HkM0000000000", "workspace_id": "0df9e665-d932-5740-b2c7-b52af166bc11"}
}

func (f *fakeOpenRouter) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	path := strings.TrimPrefix(r.URL.Path, "/api/v1")
	if path == "/key" && r.Method == http.MethodGet {
		for _, k := range f.keys {
			if k.Key == auth && !k.Disabled && !f.failNew {
				reply(200, map[string]any{"data": map[string]any{"label": k.Name, "limit": nil, "usage": k.Usage,
					"is_free_tier": false, "is_management_key": false, "is_provisioning_key": false, "limit_remaining": nil,
					"limit_reset": nil, "include_byok_in_limit": false, "expires_at": nil}})
				return
			}
		}
		f.fail(w, 401, "Missing or invalid authentication", r)
		return
	}
	if auth != f.mgmt {
		f.fail(w, 401, "Missing or invalid authentication", r)
		return
	}
	switch {
	case (path == "/keys" || path == "/keys/") && r.Method == http.MethodPost:
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.fail(w, 400, "Invalid JSON", r)
			return
		}
		f.bodies = append(f.bodies, body)
		name, _ := body["name"].(string)
		if name == "" {
			f.fail(w, 400, "name is required", r)
			return
		}
		k := &fakeKey{Key: "sk-or-v1-" + randHex(32), Name: name, Created: time.Now()}
		sum := sha256.Sum256([]byte(k.Key))
		k.Hash = hex.EncodeToString(sum[:])
		f.keys[k.Hash] = k
		f.order = append(f.order, k.Hash)
		f.seen = append(f.seen, k.Key)
		reply(201, map[string]any{"data": k.data(), "key": k.Key})
	case path == "/keys" && r.Method == http.MethodGet:
		all := r.URL.Query().Get("include_disabled") == "true"
		list := []any{}
		for i := len(f.order) - 1; i >= 0; i-- {
			if k := f.keys[f.order[i]]; k != nil && (all || !k.Disabled) {
				list = append(list, k.data())
			}
		}
		reply(200, map[string]any{"data": list})
	case strings.HasPrefix(path, "/keys/"):
		k := f.keys[strings.TrimPrefix(path, "/keys/")]
		if k == nil {
			f.fail(w, 404, "API key does not exist", r)
			return
		}
		switch r.Method {
		case http.MethodGet:
			reply(200, map[string]any{"data": k.data()})
		case http.MethodDelete:
			delete(f.keys, k.Hash)
			reply(200, map[string]any{"deleted": true})
		default:
			f.fail(w, 405, "Method not allowed", r)
		}
	default:
		f.fail(w, 404, "Not Found", r)
	}
}

// valid reports whether key would authenticate now.
func (f *fakeOpenRouter) valid(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		if k.Key == key && !k.Disabled {
			return true
		}
	}
	return false
}

// live returns the names of the keys that exist.
func (f *fakeOpenRouter) live() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, h := range f.order {
		if k := f.keys[h]; k != nil {
			out = append(out, k.Name)
		}
	}
	return out
}

// allKeys returns every key ever created, to search outputs for.
func (f *fakeOpenRouter) allKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{f.mgmt}, f.seen...)
}

// use records spend on a key, as a request through OpenRouter would.
func (f *fakeOpenRouter) use(hash string, usd float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := f.keys[hash]; k != nil {
		k.Usage += usd
	}
}
