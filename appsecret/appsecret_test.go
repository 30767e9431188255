package appsecret_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/vaultdev"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeDoc(t *testing.T, path string, version int, value string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	b, _ := json.Marshal(map[string]string{"api_key": value, "secret_field": "api_key", "version": fmt.Sprint(version),
		"key_id": "k" + fmt.Sprint(version), "run_id": "r", "rotated_at": "2026-03-01T02:00:00Z",
		"fingerprint": secret.New(value).Fingerprint()})
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// The fallback order: Vault (when VAULT_ADDR is set) -> environment
// variable -> file -> default -> not found.
func TestFallbackOrder(t *testing.T) {
	t.Parallel()
	v := vaultdev.New(t, vaultdev.Options{})
	client, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	require.NoError(t, err)
	client.SetToken(v.RootToken)
	_, err = client.KVv2("secret").Put(context.Background(), "api/inv", map[string]any{"api_key": "from-vault-1", "secret_field": "api_key", "version": "1"})
	require.NoError(t, err)
	_, err = client.KVv2("secret").Put(context.Background(), "api/inv", map[string]any{"api_key": "from-vault-2", "secret_field": "api_key", "version": "2"})
	require.NoError(t, err)

	dir := t.TempDir()
	file := filepath.Join(dir, "api", "inv")
	writeDoc(t, file, 7, "from-file-7")
	writeDoc(t, file+".previous", 6, "from-file-6")
	vaultEnv := map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": v.RootToken}

	for _, tc := range []struct {
		name             string
		env              map[string]string
		path, file, def  string
		required         bool
		want, wantSource string
		wantPrev         string
		wantNumber       int64
		err              string
	}{
		{name: "vault first", env: merge(vaultEnv, map[string]string{"API_INV": "from-env"}), path: "api/inv", file: file,
			want: "from-vault-2", wantSource: "vault", wantPrev: "from-vault-1", wantNumber: 2},
		{name: "vault not found falls back to env", env: merge(vaultEnv, map[string]string{"API_INV": "from-env", "API_INV_PREVIOUS": "old-env"}),
			path: "api/none", file: file, want: "from-env", wantSource: "env", wantPrev: "old-env"},
		{name: "no VAULT_ADDR: env", env: map[string]string{"API_INV": "from-env"}, file: file, want: "from-env", wantSource: "env"},
		{name: "file", env: map[string]string{}, file: file, want: "from-file-7", wantSource: "file", wantPrev: "from-file-6", wantNumber: 7},
		{name: "default", env: map[string]string{}, file: filepath.Join(dir, "missing"), def: "dflt", want: "dflt", wantSource: "default"},
		{name: "optional and missing", env: map[string]string{}, file: filepath.Join(dir, "missing")},
		{name: "required and missing", env: map[string]string{}, file: filepath.Join(dir, "missing"), required: true,
			err: "secret not found in environment variable API_INV, file " + filepath.Join(dir, "missing")},
		{name: "vault down is an error, not a fallback", env: map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "API_INV": "from-env"},
			file: file, err: "vault secret/api/inv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := appsecret.Open(context.Background(), appsecret.Options{Name: "api/inv", VaultPath: tc.path, File: tc.file,
				Default: tc.def, Required: tc.required, Getenv: env(tc.env)})
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			cur := s.Current()
			require.Equal(t, tc.want, cur.Reveal())
			require.Equal(t, tc.wantSource, cur.Source)
			require.Equal(t, tc.wantNumber, cur.Number)
			prev, ok := s.Previous()
			require.Equal(t, tc.wantPrev != "", ok)
			require.Equal(t, tc.wantPrev, prev.Reveal())
			if tc.want != "" {
				if tc.wantSource == "file" {
					require.Equal(t, secret.New(tc.want).Fingerprint(), cur.Fingerprint, "the rotator's recorded fingerprint")
				} else {
					// No recorded fingerprint: a keyed one, never the plain hash.
					require.NotEqual(t, secret.New(tc.want).Fingerprint(), cur.Fingerprint)
					require.Regexp(t, `^k-[0-9a-f]{16}$`, cur.Fingerprint)
				}
				for _, out := range []string{fmt.Sprint(cur), fmt.Sprintf("%+v %#v %s %q", cur, cur, cur, cur), mustJSON(t, cur)} {
					require.NotContains(t, out, tc.want)
				}
			}
		})
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// A rotated file reaches the application in the background, and OnChange
// is told once per change.
func TestBackgroundRefresh(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "db")
	writeDoc(t, file, 1, "first-secret-value")
	var mu sync.Mutex
	var changes []string
	var logs strings.Builder
	s, err := appsecret.Open(context.Background(), appsecret.Options{Name: "db", File: file, Getenv: env(nil), Refresh: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)),
		OnChange: func(old, new appsecret.Version) {
			mu.Lock()
			changes = append(changes, fmt.Sprintf("%d->%d", old.Number, new.Number))
			mu.Unlock()
		}})
	require.NoError(t, err)
	s.Start(context.Background())
	defer s.Close()
	time.Sleep(20 * time.Millisecond)
	writeDoc(t, file, 2, "second-secret-value")
	require.Eventually(t, func() bool { return s.Current().Number == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "second-secret-value", s.Current().Reveal())
	time.Sleep(30 * time.Millisecond)
	// A broken write keeps the version in use.
	require.NoError(t, os.WriteFile(file, []byte(`{"version": "3"}`), 0o600))
	time.Sleep(30 * time.Millisecond)
	require.Equal(t, int64(2), s.Current().Number)
	s.Close()
	mu.Lock()
	require.Equal(t, []string{"1->2"}, changes)
	mu.Unlock()
	require.NotContains(t, logs.String(), "secret-value")
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Validate accepts the current and the previous token, and the previous
// only within PreviousFor after the rotation when that is set.
func TestValidate(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "admin")
	writeDoc(t, file, 2, "adm_current_token_value")
	writeDoc(t, file+".previous", 1, "adm_previous_token_value")
	rotated := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	now := rotated.Add(5 * time.Minute)
	s, err := appsecret.Open(context.Background(), appsecret.Options{Name: "admin", File: file, Field: "api_key", Getenv: env(nil),
		PreviousFor: 15 * time.Minute, Now: func() time.Time { return now }})
	require.NoError(t, err)
	for _, tc := range []struct {
		token string
		ok    bool
	}{
		{"adm_current_token_value", true},
		{"adm_previous_token_value", true},
		{"adm_current_token_valu", false},
		{"adm_current_token_value ", false},
		{"", false},
		{"something else entirely", false},
	} {
		require.Equal(t, tc.ok, s.Validate(tc.token), "%q", tc.token)
	}
	now = rotated.Add(20 * time.Minute)
	require.False(t, s.Validate("adm_previous_token_value"), "the previous token is retired after PreviousFor")
	require.True(t, s.Validate("adm_current_token_value"))
}

// The handler reports the version and fingerprint, never the secret, as
// the rotator's http check asks.
func TestHandler(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "api")
	writeDoc(t, file, 7, "sk-handler-secret-7")
	writeDoc(t, file+".previous", 6, "sk-handler-secret-6")
	s, err := appsecret.Open(context.Background(), appsecret.Options{Name: "api/openrouter", File: file, Getenv: env(nil)})
	require.NoError(t, err)
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	fp := secret.New("sk-handler-secret-7").Fingerprint()
	require.Equal(t, map[string]any{"name": "api/openrouter", "version": float64(7), "fingerprint": fp, "source": "file",
		"rotated_at": "2026-03-01T02:00:00Z", "previous_version": float64(6),
		"previous_fingerprint": secret.New("sk-handler-secret-6").Fingerprint()}, body)
	require.Equal(t, "7", resp.Header.Get("X-Secret-Version"))
	require.Equal(t, fp, resp.Header.Get("X-Secret-Fingerprint"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	resp2, err := http.Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	resp2.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp2.StatusCode)
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "API_OPENROUTER", appsecret.EnvName("api/openrouter"))
	require.Equal(t, "DB_POSTGRES_1", appsecret.EnvName("db/postgres-1"))
}

// A value the rotator did not publish (a password someone chose, in env or
// as Default, or a document whose recorded fingerprint does not belong to
// its value) is reported with a keyed fingerprint: no hash of the value
// that could be checked against guesses. The same key gives the same
// fingerprint (replicas agree); another key another one.
func TestHandlerRevealsNothingGuessable(t *testing.T) {
	t.Parallel()
	const chosen = "hunter2"
	key := []byte("per-deployment-key-0123456789abc")
	open := func(opts appsecret.Options) appsecret.Status {
		t.Helper()
		opts.Name = "db/app"
		if opts.Getenv == nil {
			opts.Getenv = env(nil)
		}
		if opts.File == "" {
			opts.File = filepath.Join(t.TempDir(), "missing")
		}
		s, err := appsecret.Open(context.Background(), opts)
		require.NoError(t, err)
		srv := httptest.NewServer(s)
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		sum := sha256.Sum256([]byte(chosen))
		for _, out := range []string{string(raw), fmt.Sprint(resp.Header)} {
			require.NotContains(t, out, chosen)
			require.NotContains(t, out, hex.EncodeToString(sum[:])[:8], "a plain SHA-256 prefix of the value")
		}
		var st appsecret.Status
		require.NoError(t, json.Unmarshal(raw, &st))
		require.Equal(t, st.Fingerprint, resp.Header.Get("X-Secret-Fingerprint"))
		return st
	}
	fromEnv := open(appsecret.Options{Getenv: env(map[string]string{"DB_APP": chosen}), FingerprintKey: key})
	require.Regexp(t, `^k-[0-9a-f]{16}$`, fromEnv.Fingerprint)
	require.Equal(t, fromEnv.Fingerprint, open(appsecret.Options{Default: chosen, FingerprintKey: key}).Fingerprint, "same key, same fingerprint")
	require.NotEqual(t, fromEnv.Fingerprint, open(appsecret.Options{Default: chosen, FingerprintKey: []byte("another-key")}).Fingerprint)
	require.NotEqual(t, fromEnv.Fingerprint, open(appsecret.Options{Default: chosen}).Fingerprint, "a random key by default")

	// A document claiming a fingerprint that is not its value's is not
	// believed (the check would otherwise pass on a lie).
	file := filepath.Join(t.TempDir(), "app")
	b, _ := json.Marshal(map[string]string{"password": chosen, "version": "3", "run_id": "r", "fingerprint": "aaaaaaaaaaaa"})
	require.NoError(t, os.WriteFile(file, b, 0o600))
	st := open(appsecret.Options{File: file, FingerprintKey: key})
	require.Equal(t, int64(3), st.Version)
	require.Equal(t, fromEnv.Fingerprint, st.Fingerprint)
}
