package apikey_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/httpclient"
	"github.com/rotator/rotator/rotation"
)

// thief is another listener a redirect points at: it records whatever
// reaches it (headers and body).
type thief struct {
	mu  sync.Mutex
	got []string
	srv *httptest.Server
}

func newThief(t *testing.T) *thief {
	th := &thief{}
	th.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		th.mu.Lock()
		th.got = append(th.got, fmt.Sprint(r.Header)+string(b))
		th.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"key":"stolen","data":{"hash":"h"}}`))
	}))
	t.Cleanup(th.srv.Close)
	return th
}

func (th *thief) received() []string {
	th.mu.Lock()
	defer th.mu.Unlock()
	return append([]string(nil), th.got...)
}

// sendTo answers every request with a 307 to the thief.
func sendTo(t *testing.T, th *thief) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, th.srv.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(s.Close)
	return s
}

// A provider (or something in front of it) that redirects the create call
// to another host gets a refusal: neither the management key (header and
// body) nor anything else reaches the other listener, the call fails
// permanently and the error names the URLs, not the secrets.
func TestCreateRedirectRefused(t *testing.T) {
	t.Parallel()
	f := newFakeOpenRouter(t)
	th := newThief(t)
	front := sendTo(t, th)
	yaml := fmt.Sprintf(`      http_api:
        base_url: %q
        management: {env: M}
        create: {method: POST, url: /keys, headers: {X-Mgmt: "{management}", Authorization: "Bearer {management}"}, body: '{"name": "{name}", "m": "{management}"}', key_path: key, id_path: data.hash}
        verify: {method: GET, url: /key, headers: {Authorization: "Bearer {key}"}}
        revoke: {method: DELETE, url: "/keys/{key_id}", headers: {Authorization: "Bearer {management}"}}
`, front.URL)
	var logs bytes.Buffer
	p := newProvider(t, f, yaml, &logs)
	_, err := p.Generate(context.Background(), rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runA})
	require.Error(t, err)
	require.ErrorIs(t, err, httpclient.ErrRedirect)
	require.True(t, rotation.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "create call POST "+front.URL+"/keys")
	require.ErrorContains(t, err, "redirected to "+th.srv.URL+" (another host or port)")
	require.Empty(t, th.received(), "the redirect target received a request")
	require.NotContains(t, err.Error(), f.mgmt)
	require.NotContains(t, logs.String(), f.mgmt)
}

// A verify call redirected elsewhere does not carry the new key there:
// the key counts as not working and is revoked at the real provider.
func TestVerifyRedirectRefused(t *testing.T) {
	t.Parallel()
	f := newFakeOpenRouter(t)
	th := newThief(t)
	front := sendTo(t, th)
	yaml := fmt.Sprintf(`      http_api:
        base_url: %q
        management: {env: M}
        create: {method: POST, url: /keys, headers: {Authorization: "Bearer {management}"}, body: '{"name": "{name}"}', status: [201], key_path: key, id_path: data.hash}
        verify: {method: POST, url: %q, headers: {Authorization: "Bearer {key}"}, body: '{"key": "{key}"}'}
        revoke: {method: DELETE, url: "/keys/{key_id}", headers: {Authorization: "Bearer {management}"}}
`, f.baseURL(), front.URL+"/key")
	var logs bytes.Buffer
	p := newProvider(t, f, yaml, &logs)
	_, err := p.Generate(context.Background(), rotation.GenerateRequest{SecretID: "api/openrouter", RunID: runA})
	require.ErrorIs(t, err, httpclient.ErrRedirect)
	require.ErrorContains(t, err, "does not work (revoked it)")
	require.Empty(t, th.received(), "the redirect target received the new key")
	require.Empty(t, f.live(), "the unverified key was revoked")
	noSecrets(t, f, logs.String(), err.Error())
}
