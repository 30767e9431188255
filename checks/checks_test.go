package checks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/checks"
	"github.com/rotator/rotator/rotation"
)

func serve(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	newV := rotation.VersionMeta{Number: 7, Fingerprint: "aaaaaaaaaaaa"}
	onNew := serve(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"version": 7, "fingerprint": "aaaaaaaaaaaa", "nested": {"fp": "aaaaaaaaaaaa"}}`)
	})
	onOld := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Secret-Fingerprint", "bbbbbbbbbbbb")
		fmt.Fprint(w, `{"version": 6, "fingerprint": "bbbbbbbbbbbb"}`)
	})
	broken := serve(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })
	for _, tc := range []struct {
		name   string
		check  checks.HTTP
		passed bool
		detail string
	}{
		{"all on new", checks.HTTP{URLs: []string{onNew, onNew}}, true, ""},
		{"by version", checks.HTTP{URLs: []string{onNew}, Match: checks.MatchVersion}, true, ""},
		{"json path", checks.HTTP{URLs: []string{onNew}, JSONPath: "nested.fp"}, true, ""},
		{"one behind", checks.HTTP{URLs: []string{onNew, onOld}}, false, "1 of 2 clients not on version 7: " + onOld + " reports fingerprint bbbbbbbbbbbb, not aaaaaaaaaaaa"},
		{"header", checks.HTTP{URLs: []string{onOld}, Header: "X-Secret-Fingerprint"}, false, "reports fingerprint bbbbbbbbbbbb"},
		{"missing header", checks.HTTP{URLs: []string{onNew}, Header: "X-Secret-Fingerprint"}, false, "no X-Secret-Fingerprint header"},
		{"broken", checks.HTTP{URLs: []string{broken}}, false, broken + ": HTTP 500"},
		{"down", checks.HTTP{URLs: []string{"http://127.0.0.1:1/v"}, Timeout: time.Second}, false, "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.check.Check(context.Background(), rotation.CheckRequest{New: newV})
			require.NoError(t, err)
			require.Equal(t, tc.passed, res.Passed, res.Detail)
			require.Contains(t, res.Detail, tc.detail)
		})
	}
}

type reporter struct {
	resp rotation.LastUsedResponse
	err  error
}

func (r reporter) LastUsed(context.Context, rotation.LastUsedRequest) (rotation.LastUsedResponse, error) {
	return r.resp, r.err
}

func TestLastUsed(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old := rotation.CredentialMeta{KeyID: "k1"}
	for _, tc := range []struct {
		name   string
		rep    reporter
		old    rotation.CredentialMeta
		passed bool
		err    bool
	}{
		{"recent", reporter{resp: rotation.LastUsedResponse{LastUsed: now.Add(-time.Minute)}}, old, false, false},
		{"long ago", reporter{resp: rotation.LastUsedResponse{LastUsed: now.Add(-2 * time.Hour)}}, old, true, false},
		{"never", reporter{resp: rotation.LastUsedResponse{Never: true}}, old, true, false},
		{"gone", reporter{err: fmt.Errorf("x: %w", rotation.ErrNotFound)}, old, true, false},
		{"no id", reporter{}, rotation.CredentialMeta{}, true, false},
		{"error", reporter{err: fmt.Errorf("HTTP 500")}, old, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &checks.LastUsed{Reporter: tc.rep, UnusedFor: time.Hour}
			res, err := c.Check(context.Background(), rotation.CheckRequest{Old: tc.old, Now: now})
			require.Equal(t, tc.err, err != nil, "%v", err)
			require.Equal(t, tc.passed, res.Passed, res.Detail)
		})
	}
}

// A last_used check that does not pass is polled at its interval, or
// looked at exactly when the key, left unused, would pass, if that is
// sooner; the http check is polled at its interval.
func TestLastUsedAndHTTPPace(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old := rotation.CredentialMeta{KeyID: "k1"}
	used := func(ago time.Duration) reporter {
		return reporter{resp: rotation.LastUsedResponse{LastUsed: now.Add(-ago)}}
	}
	c := &checks.LastUsed{Reporter: used(time.Minute), UnusedFor: time.Hour, Interval: 5 * time.Minute}
	require.Equal(t, 5*time.Minute, c.PollInterval())
	res, err := c.Check(context.Background(), rotation.CheckRequest{Old: old, Now: now})
	require.NoError(t, err)
	require.False(t, res.Passed)
	require.True(t, res.RecheckAt.IsZero(), "59m to go: polled at its interval")

	c.Reporter = used(58 * time.Minute)
	res, err = c.Check(context.Background(), rotation.CheckRequest{Old: old, Now: now})
	require.NoError(t, err)
	require.False(t, res.Passed)
	require.Equal(t, now.Add(2*time.Minute), res.RecheckAt, "passes in 2m, before the next poll")

	h := &checks.HTTP{URLs: []string{"http://127.0.0.1:1/v"}, Interval: 7 * time.Second}
	var p rotation.Poller = h
	require.Equal(t, 7*time.Second, p.PollInterval())
}

// What a client reports is bounded before it goes into the detail (the
// journal, logs, Slack): a 200 KB value with newlines becomes at most
// MaxReported bytes on one line, with the size it had.
func TestHTTPReportBounded(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x\n", 100<<10)
	body, _ := json.Marshal(map[string]string{"fingerprint": huge})
	chatty := serve(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) })
	res, err := (&checks.HTTP{URLs: []string{chatty}}).Check(context.Background(),
		rotation.CheckRequest{New: rotation.VersionMeta{Number: 7, Fingerprint: "aaaaaaaaaaaa"}})
	require.NoError(t, err)
	require.False(t, res.Passed)
	require.Less(t, len(res.Detail), 300, res.Detail)
	require.NotContains(t, res.Detail, "\n")
	require.Contains(t, res.Detail, fmt.Sprintf("(%d bytes in all)", len(huge)))
	require.Equal(t, "é?", checks.Bounded("é\x00"))
	require.Equal(t, "x"+strings.Repeat("é", 31)+"... (67 bytes in all)", checks.Bounded("x"+strings.Repeat("é", 33)), "cut on a rune boundary")
}

// A client endpoint that redirects to another origin is not followed
// (the check reports it as not on the new version); the other listener
// is never asked.
func TestHTTPNoCrossOriginRedirect(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	other := serve(t, func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		fmt.Fprint(w, `{"fingerprint": "aaaaaaaaaaaa"}`)
	})
	front := serve(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, other+"/v", http.StatusFound) })
	res, err := (&checks.HTTP{URLs: []string{front}}).Check(context.Background(),
		rotation.CheckRequest{New: rotation.VersionMeta{Number: 7, Fingerprint: "aaaaaaaaaaaa"}})
	require.NoError(t, err)
	require.False(t, res.Passed)
	require.Contains(t, res.Detail, "redirect refused")
	require.Zero(t, asked.Load())
}
