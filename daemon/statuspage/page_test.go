package statuspage_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/daemon/statuspage"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// source is a fixed generation and fixed check reports.
type source struct {
	g      *daemon.Generation
	checks map[string]rotation.CheckReport
}

func (s source) UseGeneration() (*daemon.Generation, func()) { return s.g, func() {} }
func (s source) LastCheck(id string) (rotation.CheckReport, bool) {
	r, ok := s.checks[id]
	return r, ok
}

// newPage is a status page over a fresh state database holding n token
// secrets (synced, never rotated).
func newPage(t *testing.T, n int, token string, checks ...rotation.CheckReport) (*statuspage.Page, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString("stores: [{name: local, files: {dir: s}}]\nsecrets:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {id: tok/t%03d, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t%03d}]}\n", i, i)
	}
	path := filepath.Join(t.TempDir(), "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	f, err := policy.Load(path)
	require.NoError(t, err)
	g, err := daemon.NewGeneration(f, nil)
	require.NoError(t, err)
	require.NoError(t, g.Sync(ctx, db, time.Now()))
	src := source{g: g, checks: map[string]rotation.CheckReport{}}
	for _, c := range checks {
		src.checks[c.SecretID] = c
	}
	p, err := statuspage.New(statuspage.Config{DB: db, Source: src, Refresh: time.Hour, Token: token})
	require.NoError(t, err)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

func fetch(t *testing.T, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

// Many viewers at once cost one read of the state database; later views
// within the refresh interval cost none, and a secret that is not in the
// policies none either.
func TestViewsShareOneRead(t *testing.T) {
	t.Parallel()
	p, srv := newPage(t, 20, "")
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for range 40 {
		wg.Go(func() {
			resp, err := http.Get(srv.URL + "/")
			if err == nil {
				codes <- resp.StatusCode
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		require.Equal(t, http.StatusOK, c)
	}
	require.Equal(t, int64(1), p.Reads(), "40 concurrent views, one read")
	req, _ := http.NewRequest("GET", srv.URL+"/secrets/no/such", nil)
	code, _, _ := fetch(t, req)
	require.Equal(t, http.StatusNotFound, code)
	req, _ = http.NewRequest("GET", srv.URL+"/secrets/tok/t003", nil)
	code, body, _ := fetch(t, req)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "rotator resume --secret tok/t003")
	code, _, _ = fetch(t, req)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, int64(2), p.Reads(), "the list once, the secret's runs once")
}

// The page needs no script: no <script>, a policy that forbids scripts and
// outside resources; filters are query parameters.
func TestPageIsInertAndFiltersWithoutScript(t *testing.T) {
	t.Parallel()
	_, srv := newPage(t, 3, "")
	req, _ := http.NewRequest("GET", srv.URL+"/?q=T001", nil)
	code, body, h := fetch(t, req)
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, strings.ToLower(body), "<script")
	require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, body, `data-secret="tok/t001"`)
	require.NotContains(t, body, `data-secret="tok/t002"`, "the search filters rows")
	require.Contains(t, body, "1 of 3 shown")

	req, _ = http.NewRequest("GET", srv.URL+"/?state=ok", nil)
	_, body, _ = fetch(t, req)
	require.Equal(t, 3, strings.Count(body, `class="row c-ok"`), "never-rotated secrets wait for their jittered first due time:\n%s", body)
	req, _ = http.NewRequest("GET", srv.URL+"/?state=held", nil)
	_, body, _ = fetch(t, req)
	require.Contains(t, body, "No secret matches.")

	req, _ = http.NewRequest("GET", srv.URL+"/static/style.css", nil)
	code, css, h := fetch(t, req)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, h.Get("Content-Type"), "text/css")
	require.Contains(t, css, ".badge")
}

// With a token, every request (the stylesheet too) needs it, as a bearer
// token or as the basic-auth password.
func TestToken(t *testing.T) {
	t.Parallel()
	_, srv := newPage(t, 1, "s3cret-page-token")
	for _, path := range []string{"/", "/static/style.css", "/secrets/tok/t000"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		code, _, h := fetch(t, req)
		require.Equal(t, http.StatusUnauthorized, code, path)
		require.Contains(t, h.Get("WWW-Authenticate"), "Basic")
		req.Header.Set("Authorization", "Bearer wrong")
		code, _, _ = fetch(t, req)
		require.Equal(t, http.StatusUnauthorized, code, path)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer s3cret-page-token")
	code, body, _ := fetch(t, req)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, body, "s3cret-page-token")
	req, _ = http.NewRequest("GET", srv.URL+"/", nil)
	req.SetBasicAuth("anyone", "s3cret-page-token")
	code, _, _ = fetch(t, req)
	require.Equal(t, http.StatusOK, code)
}

// A secret whose published credential the daemon's last check found
// broken comes first, marked broken, and its page says which store and why.
func TestBrokenPublishedCredentialFirst(t *testing.T) {
	t.Parallel()
	_, srv := newPage(t, 3, "", rotation.CheckReport{SecretID: "tok/t002", CheckedAt: time.Now(),
		Stores: []rotation.StoreCheck{{Store: "local", Path: "t002", Status: rotation.CheckBroken, Reason: "the token is malformed",
			Current: &rotation.VersionMeta{Number: 4}}}})
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	_, body, _ := fetch(t, req)
	first := strings.Index(body, `<tr class="row`)
	require.Positive(t, first)
	require.True(t, strings.HasPrefix(body[first:], `<tr class="row c-broken" data-secret="tok/t002" data-cond="broken"`), body[first:first+120])
	require.Contains(t, body, "1 need a person")
	req, _ = http.NewRequest("GET", srv.URL+"/secrets/tok/t002", nil)
	_, body, _ = fetch(t, req)
	require.Contains(t, body, `<tr class="s-broken" data-store="local:t002"><td><code>local:t002</code></td><td>broken</td><td>4</td><td>the token is malformed</td></tr>`)
	require.Contains(t, body, `<tr class="suggested"><th>roll back</th>`)
}
