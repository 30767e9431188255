package main_test

// "See it": the status page in a real browser, and the Grafana dashboard and
// the Prometheus alert rules against a real Prometheus scraping a live
// daemon. One daemon serves both: it rotates one secret (db/postgres,
// a blue/green Postgres pair), holds one (tok/held: its client keeps
// reporting the old version past the grace) and fails one (api/failed: its
// provider answers 503 to both tries of creating a key).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/rotator/rotator/internal/pgtest"
)

// seePolicy: every secret due at once (no jitter); tok/held's one check is
// a client that never moves to the new version; api/failed tries twice.
func seePolicy(clientURL, providerURL string) string {
	return fmt.Sprintf(`version: 1
defaults:
  jitter: 0s
  monitor: 0s
  retry: {attempts: 2, initial: 1s, max: 1s}
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}
        role: app
    publish: [{store: local, path: db/postgres.json}]
    grace: 30s
  - id: tok/held
    class: admin_token
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: tok/held.json}]
    checks: [{http: {urls: [%q]}}]
    grace: 1s
    on_timeout: hold
  - id: api/failed
    class: api_key
    rotator:
      http_api:
        base_url: %s
        management: {env: SEE_PROVIDER_ADMIN}
        create: {method: POST, url: /keys, headers: {Authorization: "Bearer {management}"}, key_path: key, id_path: id}
        verify: {method: GET, url: /whoami, headers: {Authorization: "Bearer {key}"}}
        revoke: {method: DELETE, url: "/keys/{key_id}", headers: {Authorization: "Bearer {management}"}}
    publish: [{store: local, path: api/failed.json}]
`, clientURL, providerURL)
}

// seeProviderAdmin is api/failed's management key.
const seeProviderAdmin = "mgmt-key-Zq81vT0pLx"

type seeWorld struct {
	e        *env
	d        *proc
	base     string // /healthz, /readyz, /metrics
	page     string // the status page
	appDSN   string
	stateDSN string
}

func newSeeWorld(t *testing.T) *seeWorld {
	t.Helper()
	// tok/held's client: it reports a version nobody published.
	client := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprint(w, `{"fingerprint": "000000000000"}`)
	}))
	t.Cleanup(client.Close)
	// api/failed's provider is down.
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "provider unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(provider.Close)
	w := &seeWorld{appDSN: pgtest.NewDatabase(t), stateDSN: pgtest.NewDatabase(t)}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.appDSN)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='app') THEN CREATE ROLE app; END IF; END $$;
		ALTER ROLE app LOGIN PASSWORD 'see-initial-password'`)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	w.e = newEnv(t, w.stateDSN, seePolicy(client.URL, provider.URL), "ROTATOR_PG_ADMIN_DSN="+w.appDSN,
		"SEE_PROVIDER_ADMIN="+seeProviderAdmin)
	w.e.must("migrate")
	w.e.must("init", "--secret", "db/postgres")
	w.d, w.base = w.e.startDaemon("daemon", nil, "--tick", "@every 1s", "--status-page",
		"--status-page-listen", "127.0.0.1:0", "--status-page-refresh", "500ms", "--metrics-refresh", "1s")
	line, _ := w.d.waitLine(0, 10*time.Second, `"status page"`)
	var rec struct {
		Listen string `json:"listen"`
	}
	require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
	w.page = "http://" + rec.Listen
	eventually(t, 60*time.Second, "one success, one held, one failed", func() bool {
		return queryInt(t, w.stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'db/postgres' AND status = 'succeeded'`) == 1 &&
			queryInt(t, w.stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'tok/held' AND detail LIKE 'held:%'`) == 1 &&
			queryInt(t, w.stateDSN, `SELECT count(*) FROM rotator_runs WHERE secret_id = 'api/failed' AND status = 'failed'`) == 1
	})
	return w
}

// secretValues are every value the page must never show: what the stores
// publish (current and previous), the Postgres admin's and the state
// database's passwords, and the state key.
func (w *seeWorld) secretValues(t *testing.T) map[string]string {
	t.Helper()
	vals := map[string]string{}
	for _, p := range []string{"db/postgres.json", "tok/held.json"} {
		for _, f := range []string{p, p + ".previous"} {
			if _, err := os.Stat(filepath.Join(w.e.dir, "secrets", f)); err != nil {
				continue
			}
			m := published(t, w.e.dir, f)
			for _, k := range []string{"password", "token"} {
				if v := m[k]; v != "" {
					vals[f+" "+k] = v
				}
			}
		}
	}
	require.Contains(t, vals, "db/postgres.json password")
	require.Contains(t, vals, "tok/held.json token")
	for name, dsn := range map[string]string{"admin DSN password": w.appDSN, "state DSN password": w.stateDSN} {
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		pw, ok := u.User.Password()
		require.True(t, ok, "%s has a password", name)
		vals[name] = pw
	}
	for _, kv := range w.e.vars {
		if v, ok := strings.CutPrefix(kv, "ROTATOR_STATE_KEY="); ok {
			vals["state key"] = v
		}
	}
	require.Contains(t, vals, "state key")
	vals["provider management key"] = seeProviderAdmin
	return vals
}

func TestSeeIt(t *testing.T) {
	t.Parallel()
	w := newSeeWorld(t)
	t.Run("browser", func(t *testing.T) {
		t.Parallel()
		testStatusPageInBrowser(t, w)
	})
	t.Run("prometheus", func(t *testing.T) {
		t.Parallel()
		testDashboardAndAlertsAgainstPrometheus(t, w)
	})
}

// chromium finds Debian's chromium or fails saying how to install it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the status page's browser test needs Chromium: apt-get install -y chromium (or put chromium on PATH)")
	return ""
}

// testStatusPageInBrowser opens the page in headless Chromium with
// JavaScript disabled and checks what a person sees.
func testStatusPageInBrowser(t *testing.T, w *seeWorld) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()

	// Screenshots go to docs/img (which the README shows) with
	// ROTATOR_UPDATE_SCREENSHOTS=1 (make screenshots); otherwise to a
	// temporary directory, so that make test leaves the tree clean.
	shots := t.TempDir()
	if os.Getenv("ROTATOR_UPDATE_SCREENSHOTS") == "1" {
		shots = filepath.Join("..", "..", "docs", "img")
	}
	var doms []string
	capture := func(name, sel string) string {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))))
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		require.NoError(t, err)
		doms = append(doms, html)
		if name != "" {
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
			require.NoError(t, err)
			require.True(t, bytes.HasPrefix(png, []byte("\x89PNG")), "a PNG")
			require.NoError(t, os.WriteFile(filepath.Join(shots, name), png, 0o644))
		}
		return html
	}
	_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	require.NoError(t, err)

	// The list (cached for 500ms) once the daemon has held and failed.
	var list string
	eventually(t, 20*time.Second, "the list shows the held and the failed secret", func() bool {
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(w.page+"/")))
		list = capture("", "table.secrets")
		return strings.Contains(list, `data-secret="tok/held" data-cond="held"`) &&
			strings.Contains(list, `data-secret="api/failed" data-cond="failed"`)
	})
	list = capture("status-page.png", "table.secrets")
	require.Contains(t, list, `data-secret="db/postgres" data-cond="ok"`)
	require.Regexp(t, `data-count="held">held <b>1</b>`, list)
	require.Regexp(t, `data-count="failed">failed <b>1</b>`, list)
	require.Regexp(t, `data-count="ok">ok <b>1</b>`, list)
	require.Contains(t, list, `2 need a person`)
	// People-needing states first: held and failed before ok.
	rowsOf := func(html string) []string {
		var ids []string
		for _, m := range regexp.MustCompile(`<tr class="row[^"]*" data-secret="([^"]+)"`).FindAllStringSubmatch(html, -1) {
			ids = append(ids, m[1])
		}
		return ids
	}
	order := rowsOf(list)
	require.Len(t, order, 3)
	require.Equal(t, "db/postgres", order[2], "the healthy secret comes last")
	// The credential name, never a value.
	require.Regexp(t, `<code>app_(blue|green)</code>`, list)

	// Search and filter are a plain form: typed and submitted with
	// scripts off, it narrows the list through the query string.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), "tok/"),
		chromedp.Click(chromedp.CSS(`form.filter button`)),
		chromedp.WaitVisible(chromedp.CSS(`span.shown`))))
	searched := capture("", "table.secrets")
	require.Equal(t, []string{"tok/held"}, rowsOf(searched))
	require.Contains(t, searched, "1 of 3 shown")
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	require.Contains(t, loc, "q=tok")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(w.page+"/?state=attention")))
	require.ElementsMatch(t, []string{"tok/held", "api/failed"}, rowsOf(capture("", "table.secrets")))

	// The failed secret's page: its run, step by step, with the retry, the
	// redacted error and the commands.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(w.page+"/"),
		chromedp.WaitVisible(chromedp.CSS("table.secrets")),
		chromedp.Click(chromedp.CSS(`a[href="/secrets/api/failed"]`))))
	failed := capture("status-page-failed-run.png", "section.run")
	require.Contains(t, failed, `data-status="failed"`)
	require.Contains(t, failed, `data-step="generate" data-outcome="failed"><td>generate</td><td>#1</td>`)
	require.Contains(t, failed, `data-step="generate" data-outcome="failed"><td>generate</td><td>#2 <span class="retry">retry</span>`)
	require.Contains(t, failed, "1 retried step(s)")
	require.Regexp(t, `class="error"[^>]*>error: [^<]*503`, failed, "the (redacted) error")
	require.Contains(t, failed, "<rect", "the timeline has its bars")
	require.Contains(t, failed, "rotator run --secret api/failed")
	require.Contains(t, failed, "rotator rollback --secret api/failed")
	require.Contains(t, failed, "rotator resume --secret api/failed")
	require.Contains(t, failed, "rotator adopt --secret api/failed")

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(w.page+"/secrets/tok/held")))
	held := capture("", "section.run")
	require.Contains(t, held, `data-status="held"`)
	require.Contains(t, held, `data-step="verify" data-outcome="held"`)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(w.page+"/secrets/db/postgres")))
	ok := capture("", "section.run")
	require.Contains(t, ok, `data-status="succeeded"`)
	require.Contains(t, ok, `data-store="local:db/postgres.json"`)

	// No secret value anywhere: not in any DOM the browser built, not in
	// what the server sent.
	for _, p := range []string{"/", "/secrets/db/postgres", "/secrets/tok/held", "/secrets/api/failed", "/static/style.css"} {
		_, body := get(t, w.page+p)
		doms = append(doms, body)
	}
	all := strings.Join(doms, "\n")
	for name, v := range w.secretValues(t) {
		require.NotContains(t, all, v, "the status page shows the %s", name)
	}
}

// promQuery evaluates expr through Prometheus' HTTP API.
func promQuery(t *testing.T, prom, expr string) (int, error) {
	resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("%s: %s", expr, out.Error)
	}
	return len(out.Data.Result), nil
}

// dashboardExprs are every query of the Grafana dashboard.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana/rotator-dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &dash))
	out := map[string]string{}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			if tg.Expr != "" {
				out[fmt.Sprintf("%s #%d", p.Title, i)] = tg.Expr
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

// alertExprs are the alert rules' expressions by alert name.
func alertExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &f))
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	require.NotEmpty(t, out)
	return out
}

var metricName = regexp.MustCompile(`\b(rotator_[a-z0-9_]+|up)\b`)

// testDashboardAndAlertsAgainstPrometheus runs Prometheus scraping the
// daemon with the alert rules loaded, then evaluates every dashboard
// query and every alert expression: each must be valid, each dashboard
// query must return series, and every metric an alert names must exist
// (a renamed metric fails here). The alerts this world provokes (a failed
// rotation) must fire.
func testDashboardAndAlertsAgainstPrometheus(t *testing.T, w *seeWorld) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("the dashboard and alert test needs Prometheus: apt-get install -y prometheus (Debian's package ships prometheus and promtool)")
	}
	rules, err := filepath.Abs("../../deploy/prometheus/rotator-rules.yaml")
	require.NoError(t, err)
	dir := t.TempDir()
	target := strings.TrimPrefix(w.base, "http://")
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: rotator
    static_configs: [{targets: [%q]}]
`, rules, target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", logs.String())
		}
	})
	prom := "http://" + addr
	// Three scrapes at least, so rates and increases have samples.
	eventually(t, 60*time.Second, "Prometheus has scraped the daemon three times", func() bool {
		n, err := promQuery(t, prom, `count_over_time(up{job="rotator"}[1m]) >= 3`)
		return err == nil && n == 1
	})
	eventually(t, 20*time.Second, "the rules are evaluated", func() bool {
		n, err := promQuery(t, prom, `ALERTS{alertname="RotatorRotationFailed"}`)
		return err == nil && n > 0
	})

	for name, expr := range dashboardExprs(t) {
		n, err := promQuery(t, prom, expr)
		require.NoError(t, err, "dashboard panel %s", name)
		require.Positive(t, n, "dashboard panel %s returns no series: %s", name, expr)
	}
	for name, expr := range alertExprs(t, rules) {
		_, err := promQuery(t, prom, expr)
		require.NoError(t, err, "alert %s", name)
		for _, m := range metricName.FindAllString(expr, -1) {
			n, err := promQuery(t, prom, m)
			require.NoError(t, err)
			require.Positive(t, n, "alert %s names %s, which the daemon does not export", name, m)
		}
	}
	n, err := promQuery(t, prom, `ALERTS{alertname="RotatorRotationFailed", secret="api/failed", alertstate="firing"}`)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the failed rotation fires RotatorRotationFailed")
	n, err = promQuery(t, prom, `rotator_runs_held == 1`)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the held run is counted")
}
