package daemon_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/daemon/statuspage"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// On the --listen address the status page is at / behind its token, while
// /healthz, /readyz and /metrics stay as they are (probes and scrapers
// carry no token).
func TestStatusPageOnTheListenAddress(t *testing.T) {
	t.Parallel()
	w := newHTTPWorld(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	d, err := daemon.New(ctx, daemon.Config{
		DB: w.db, Engine: &rotation.Engine{DB: w.db, Logger: slog.New(slog.DiscardHandler), Holder: "page-test"},
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
	})
	require.NoError(t, err)
	p, err := statuspage.New(statuspage.Config{DB: w.db, Source: d, Token: "page-token-1"})
	require.NoError(t, err)
	d.SetPage(p, "")
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
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		code, body := w.get(t, path)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
	code, _ := w.get(t, "/")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = w.get(t, "/secrets/tok/t001")
	require.Equal(t, http.StatusUnauthorized, code)
	req, _ := http.NewRequest("GET", "http://"+w.addr+"/secrets/tok/t001", nil)
	req.SetBasicAuth("me", "page-token-1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
