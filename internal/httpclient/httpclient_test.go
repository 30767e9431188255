package httpclient_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/httpclient"
)

// recorder is the listener a hostile redirect points at; it records
// everything it is sent.
type recorder struct {
	mu   sync.Mutex
	seen []string
	srv  *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		b, _ := io.ReadAll(q.Body)
		r.mu.Lock()
		r.seen = append(r.seen, q.Header.Get("Authorization")+" "+q.Header.Get("X-Api-Key")+" "+string(b))
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func redirector(t *testing.T, to string, code int) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		if q.URL.Path == "/final" {
			w.WriteHeader(http.StatusOK)
			return
		}
		target := to
		if target == "" {
			target = "/final"
		}
		http.Redirect(w, q, target, code)
	}))
	t.Cleanup(s.Close)
	return s
}

func post(c *http.Client, url string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"key":"sk-body-secret"}`))
	req.Header.Set("Authorization", "Bearer mgmt-secret")
	req.Header.Set("X-Api-Key", "mgmt-secret")
	return c.Do(req)
}

// A redirect to another listener (another port of the same host, so Go
// itself would keep Authorization) is refused: the other listener
// receives nothing, and the error names both URLs without the query.
func TestRedirectToOtherOriginRefused(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		rec := newRecorder(t)
		src := redirector(t, rec.srv.URL+"/steal?token=leaked-in-query", code)
		for name, c := range map[string]*http.Client{"New": httpclient.New(0), "Safe(default)": httpclient.Safe(&http.Client{})} {
			resp, err := post(c, src.URL+"/keys?x=secret-query")
			if resp != nil {
				resp.Body.Close()
			}
			require.Error(t, err, "%s %d", name, code)
			require.True(t, errors.Is(err, httpclient.ErrRedirect), "%s: %v", name, err)
			re, ok := httpclient.Refused(err)
			require.True(t, ok)
			require.Equal(t, src.URL+"/keys", re.From)
			require.Equal(t, rec.srv.URL, re.To)
			require.NotContains(t, err.Error(), "leaked-in-query", "the *url.Error does not quote the Location")
			require.NotContains(t, err.Error(), "/steal")
			require.NotContains(t, re.Error(), "secret-query")
		}
		require.Empty(t, rec.requests(), "the other listener received a request (code %d)", code)
	}
}

// A downgrade from https to http on the same host is refused.
func TestRedirectDowngradeRefused(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		http.Redirect(w, q, rec.srv.URL+"/x", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(tlsSrv.Close)
	c := httpclient.Safe(tlsSrv.Client())
	_, err := post(c, tlsSrv.URL+"/keys")
	require.ErrorIs(t, err, httpclient.ErrRedirect)
	require.Contains(t, err.Error(), "another scheme")
	require.Empty(t, rec.requests())
}

// A redirect on the same scheme, host and port is followed, a bounded
// number of times.
func TestSameOriginRedirectFollowed(t *testing.T) {
	t.Parallel()
	src := redirector(t, "", http.StatusTemporaryRedirect)
	resp, err := post(httpclient.New(0), src.URL+"/keys")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	loop := redirector(t, "/again", http.StatusFound)
	_, err = post(httpclient.New(0), loop.URL+"/keys")
	require.ErrorIs(t, err, httpclient.ErrRedirect)
	require.Contains(t, err.Error(), "more than 5 redirects")
}
