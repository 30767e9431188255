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
func (s source) LastCheck(id string) (rotation.CheckSummary, bool) {
	r, ok := s.checks[id]
	return r.Summary(), ok
}

// newPage is a status page over a fresh state database holding n token
// secrets (synced, never rotated).
func newPage(t *testing.T, n int, token string, checks ...rotation.CheckReport) (*statuspage.Page, *httptest.Server) {
	t.Helper()
	return newPageRows(t, n, 0, token, checks...)
}

// newPageRows is newPage showing rows secrets a view (0: the default).
func newPageRows(t *testing.T, n, rows int, token string, checks ...rotation.CheckReport) (*statuspage.Page, *httptest.Server) {
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
	p, err := statuspage.New(statuspage.Config{DB: db, Source: src, Refresh: time.Hour, Token: token, Rows: rows})
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

// The list shows Rows secrets a view, the ones that need a person first;
// the others are on the next pages, whose links keep the search and the
// filter.
func TestListInPages(t *testing.T) {
	t.Parallel()
	broken := rotation.CheckReport{SecretID: "tok/t011", Stores: []rotation.StoreCheck{{Store: "local", Path: "t011", Status: rotation.CheckBroken}}}
	_, srv := newPageRows(t, 12, 5, "", broken)
	get := func(path string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		code, body, _ := fetch(t, req)
		require.Equal(t, http.StatusOK, code, body)
		return body
	}
	ids := func(body string) []string {
		var out []string
		for _, part := range strings.Split(body, `<tr class="row`)[1:] {
			_, rest, _ := strings.Cut(part, `data-secret="`)
			id, _, _ := strings.Cut(rest, `"`)
			out = append(out, id)
		}
		return out
	}
	body := get("/")
	require.Len(t, ids(body), 5)
	require.Equal(t, "tok/t011", ids(body)[0], "the broken secret first")
	require.Contains(t, body, "secrets 1–5 of 12 (page 1 of 3)")
	require.Contains(t, body, `href="/?page=2" rel="next"`)
	require.NotContains(t, body, `rel="prev"`)

	seen := map[string]bool{}
	for page, want := range map[int]int{1: 5, 2: 5, 3: 2} {
		for _, id := range ids(get(fmt.Sprintf("/?page=%d", page))) {
			require.False(t, seen[id], "%s on two pages", id)
			seen[id] = true
		}
		require.Len(t, ids(get(fmt.Sprintf("/?page=%d", page))), want, "page %d", page)
	}
	require.Len(t, seen, 12, "every secret is on one page")
	last := get("/?page=3")
	require.Contains(t, last, `href="/?page=2" rel="prev"`)
	require.NotContains(t, last, `rel="next"`)
	require.Equal(t, ids(last), ids(get("/?page=99")), "past the end: the last page")
	require.Equal(t, ids(body), ids(get("/?page=x")), "not a number: the first page")
	require.Equal(t, ids(body), ids(get("/?page=0")), "0: the first page")
	require.Equal(t, ids(body), ids(get("/?page=-2")), "below 1: the first page")
	require.Equal(t, ids(last), ids(get("/?page=99999999999999999999")), "past the end, beyond an int: the last page")
	require.Contains(t, get("/?page=99999999999999999999"), `href="/?page=2" rel="prev"`)
	// The search is kept as typed (case, /) in the links, and a link
	// followed gives the next matches.
	upper := get("/?q=TOK/T00")
	require.Contains(t, upper, "secrets 1–5 of 10 (page 1 of 2)")
	require.Contains(t, upper, `href="/?page=2&amp;q=TOK%2FT00" rel="next"`)
	require.Len(t, ids(get("/?page=2&q=TOK%2FT00")), 5)
	require.Contains(t, get("/?state=no-such-state"), "No secret matches.")

	// The filter and the search narrow before the pages: 11 secrets are
	// ok (one is broken), and the links keep the filter.
	filtered := get("/?state=ok&page=2")
	require.Contains(t, filtered, "secrets 6–10 of 11 (page 2 of 3)")
	require.Contains(t, filtered, `href="/?page=3&amp;state=ok" rel="next"`)
	require.Contains(t, filtered, `href="/?state=ok" rel="prev"`)
	one := get("/?q=t003")
	require.Equal(t, []string{"tok/t003"}, ids(one))
	require.NotContains(t, one, `id="page-range"`, "one page: no page links")
}

// A secret's page reads that secret (its row and its runs), not the list
// of every secret: viewed first, it costs one read and shows the
// secret's condition; the list is read when the list is viewed.
func TestSecretPageReadsOneSecret(t *testing.T) {
	t.Parallel()
	p, srv := newPage(t, 30, "", rotation.CheckReport{SecretID: "tok/t007", CheckedAt: time.Now(),
		Stores: []rotation.StoreCheck{{Store: "local", Path: "t007", Status: rotation.CheckBroken, Reason: "the token is malformed"}}})
	req, _ := http.NewRequest("GET", srv.URL+"/secrets/tok/t007", nil)
	code, body, _ := fetch(t, req)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `<tr class="suggested"><th>roll back</th>`, "the broken condition, from the secret's own read")
	require.Equal(t, int64(1), p.Reads(), "one read: the secret's")
	req, _ = http.NewRequest("GET", srv.URL+"/secrets/tok/t003", nil)
	code, body, _ = fetch(t, req)
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, `<tr class="suggested"><th>roll back</th>`)
	require.Equal(t, int64(2), p.Reads())
	req, _ = http.NewRequest("GET", srv.URL+"/", nil)
	_, body, _ = fetch(t, req)
	require.Equal(t, 30, strings.Count(body, `<tr class="row`))
	require.Equal(t, int64(3), p.Reads(), "the list, read when it is viewed")
}
