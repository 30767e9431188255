package daemon_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// httpWorld is a daemon over a fresh state database and a policies file of
// n token secrets, built read-only (no rotation can start: the test is
// about the HTTP server).
type httpWorld struct {
	dsn  string
	db   *state.DB
	path string
	addr string
}

func newHTTPWorld(t *testing.T, n int) *httpWorld {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString("stores: [{name: local, files: {dir: s}}]\nsecrets:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {id: tok/t%03d, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t%03d}]}\n", i, i)
	}
	w := &httpWorld{dsn: pgtest.NewDatabase(t), path: filepath.Join(t.TempDir(), "policies.yaml")}
	require.NoError(t, os.WriteFile(w.path, []byte(b.String()), 0o600))
	db, err := state.Open(ctx, w.dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	w.db = db
	g := w.load(t)
	require.NoError(t, g.Sync(ctx, db, time.Now()))
	return w
}

func (w *httpWorld) load(t *testing.T) *daemon.Generation {
	f, err := policy.Load(w.path)
	require.NoError(t, err)
	g, err := daemon.NewGeneration(f, nil)
	require.NoError(t, err)
	return g
}

// start runs the daemon until the test ends.
func (w *httpWorld) start(t *testing.T, mod func(*daemon.Config)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	cfg := daemon.Config{
		DB: w.db, Engine: &rotation.Engine{DB: w.db, Logger: slog.New(slog.DiscardHandler), Holder: "http-test"},
		Logger: slog.New(slog.DiscardHandler),
		Load: func(daemon.LoadRequest) (*daemon.Generation, error) {
			f, err := policy.Load(w.path)
			if err != nil {
				return nil, err
			}
			return daemon.NewGeneration(f, nil)
		},
		PoliciesPath: w.path, Listen: "127.0.0.1:0", Tick: "@every 1h", Shutdown: 5 * time.Second,
		Registry: prometheus.NewRegistry(), Ready: func(addr string) { ready <- addr },
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := daemon.New(ctx, cfg)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case w.addr = <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not listen within 30s")
	}
}

func (w *httpWorld) get(t *testing.T, path string) (int, string) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + w.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// value is the value of the metric line that starts with prefix.
func value(t *testing.T, body, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			return strings.TrimPrefix(l, prefix+" ")
		}
	}
	t.Fatalf("no %s in\n%s", prefix, body)
	return ""
}

// Issue 15 item 5: scrapes are served from memory. While another session
// holds every table the metrics read locked (so any query on them would
// wait), 48 parallel scrapes all answer at once, /readyz stays 200 all
// along, and the state database is read no more often than before: the
// refresh count does not move with the scrapes. The aggregates count the
// secrets in drift and the runs needing attention.
func TestScrapesDoNotQueryTheStateDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newHTTPWorld(t, 40)
	_, err := w.db.Pool().Exec(ctx, `UPDATE rotator_secrets SET status = 'drift' WHERE id IN ('tok/t001', 'tok/t002')`)
	require.NoError(t, err)
	_, err = w.db.Pool().Exec(ctx, `INSERT INTO rotator_runs (id, secret_id, trigger, status, step, version, wait_until)
		VALUES ('run-na', 'tok/t003', 'schedule', 'needs_attention', 'compensate', 2, now() + interval '1 day')`)
	require.NoError(t, err)
	w.start(t, func(c *daemon.Config) { c.MetricsRefresh = time.Hour; c.MaxScrapes = 8 })

	code, body := w.get(t, "/metrics")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `rotator_secret_age_seconds{class="admin_token",secret="tok/t039"}`)
	require.Equal(t, "2", value(t, body, "rotator_secrets_drift"))
	require.Equal(t, "1", value(t, body, "rotator_runs_needs_attention"))
	refreshes := value(t, body, "rotator_metrics_refreshes_total")
	require.Equal(t, "1", refreshes, "one read at start")
	// The first tick (at start) has ended: nothing else reads the tables.
	require.Eventually(t, func() bool {
		_, body := w.get(t, "/metrics")
		return value(t, body, "rotator_last_tick_timestamp_seconds") != "0"
	}, 20*time.Second, 20*time.Millisecond)

	locker, err := pgx.Connect(ctx, w.dsn)
	require.NoError(t, err)
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `LOCK TABLE rotator_secrets, rotator_runs IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	const scrapes = 48
	var wg sync.WaitGroup
	codes := make(chan int, scrapes)
	for range scrapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := w.get(t, "/metrics")
			if code == http.StatusOK && !strings.Contains(body, "rotator_secret_age_seconds") {
				code = -1
			}
			codes <- code
		}()
	}
	scraped := make(chan struct{})
	go func() { wg.Wait(); close(scraped) }()
	probes := 0
	for done := false; !done; probes++ {
		select {
		case <-scraped:
			done = true
		default:
		}
		code, body := w.get(t, "/readyz")
		require.Equal(t, http.StatusOK, code, "/readyz during the scrapes: %s", body)
		code, _ = w.get(t, "/healthz")
		require.Equal(t, http.StatusOK, code)
	}
	close(codes)
	ok := 0
	for c := range codes {
		// 503 is the cap on scrapes in flight; anything else is wrong.
		require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, c)
		if c == http.StatusOK {
			ok++
		}
	}
	require.Positive(t, ok)
	_, body = w.get(t, "/metrics")
	require.Equal(t, refreshes, value(t, body, "rotator_metrics_refreshes_total"), "scrapes do not read the state database")
	t.Logf("%d scrapes (%d answered 200) and %d probes while the tables were locked", scrapes, ok, probes)
}

// Issue 15 item 5: an idle keep-alive connection is closed by the server
// after IdleTimeout (the test waits for the close, up to 30s).
func TestIdleConnectionIsClosed(t *testing.T) {
	t.Parallel()
	w := newHTTPWorld(t, 1)
	w.start(t, func(c *daemon.Config) { c.IdleTimeout = 300 * time.Millisecond })

	conn, err := net.Dial("tcp", w.addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: rotator\r\n\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.False(t, resp.Close, "the response keeps the connection alive")

	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	_, err = r.ReadByte()
	require.True(t, errors.Is(err, io.EOF), "the server closes the idle connection (got %v after %s)", err, time.Since(start))
}

// Per-secret series are opt-in at scale: with PerSecretMetrics off no
// series carries a secret label (rotator_rotations_total is summed over
// the secrets), and the aggregates say what the per-secret series would
// (overdue, failing published credentials, disagreeing stores). With
// auto and few secrets, both are there. (The results are recorded before
// the daemon starts, which sets the engine's mode at its first load.)
func TestPerSecretMetricsOptIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		mode daemon.PerSecret
		per  bool
	}{{daemon.PerSecretOff, false}, {daemon.PerSecretAuto, true}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			w := newHTTPWorld(t, 40)
			// tok/t000 last rotated 40 days ago (admin_token: every 30d):
			// overdue; tok/t001 yesterday.
			_, err := w.db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = now() - interval '40 days' WHERE id = 'tok/t000'`)
			require.NoError(t, err)
			_, err = w.db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = now() - interval '1 day' WHERE id = 'tok/t001'`)
			require.NoError(t, err)
			reg := prometheus.NewRegistry()
			m := rotation.NewMetrics(reg)
			m.SetPerSecret(tc.per)
			m.Rotated("tok/t000", "admin_token", "succeeded")
			m.Rotated("tok/t001", "admin_token", "succeeded")
			m.Rotated("tok/t001", "admin_token", "failed")
			m.Published("tok/t000", "local", false, false)
			m.Published("tok/t001", "local", true, false)
			m.Agreed("tok/t000", false)
			m.Agreed("tok/t001", true)
			w.start(t, func(c *daemon.Config) {
				c.Registry, c.Engine.Metrics, c.PerSecretMetrics = reg, m, tc.mode
				c.MetricsRefresh = time.Hour
			})
			code, body := w.get(t, "/metrics")
			require.Equal(t, http.StatusOK, code, body)
			require.Equal(t, "40", value(t, body, "rotator_secrets_managed"))
			require.Equal(t, "1", value(t, body, "rotator_secrets_overdue"))
			require.Equal(t, "1", value(t, body, "rotator_published_credentials_failing"))
			require.Equal(t, "1", value(t, body, "rotator_published_stores_disagree"))
			if !tc.per {
				require.NotContains(t, body, `secret="`, "no series labelled by secret")
				require.Equal(t, "2", value(t, body, `rotator_rotations_total{class="admin_token",outcome="succeeded"}`))
				require.Equal(t, "1", value(t, body, `rotator_rotations_total{class="admin_token",outcome="failed"}`))
				return
			}
			require.Contains(t, body, `rotator_secret_age_seconds{class="admin_token",secret="tok/t039"}`)
			require.Contains(t, body, `rotator_secret_next_due_timestamp_seconds{class="admin_token",secret="tok/t039"}`)
			require.Equal(t, "0", value(t, body, `rotator_published_credential_ok{secret="tok/t000",store="local"}`))
			require.Equal(t, "0", value(t, body, `rotator_published_stores_agree{secret="tok/t000"}`))
			require.Equal(t, "1", value(t, body, `rotator_rotations_total{class="admin_token",outcome="succeeded",secret="tok/t001"}`))
		})
	}
}

// After a write to the secrets, a refresh reads them again (the
// fingerprint moved); without one, it reads only two counts.
func TestMetricsRefreshSeesWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newHTTPWorld(t, 3)
	w.start(t, func(c *daemon.Config) { c.MetricsRefresh = 50 * time.Millisecond })
	_, body := w.get(t, "/metrics")
	require.Equal(t, "0", value(t, body, "rotator_secrets_quarantined"))
	_, err := w.db.Pool().Exec(ctx, `UPDATE rotator_secrets SET status = 'quarantined', updated_at = now() WHERE id = 'tok/t001'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, body := w.get(t, "/metrics")
		return value(t, body, "rotator_secrets_quarantined") == "1"
	}, 20*time.Second, 20*time.Millisecond)
}
