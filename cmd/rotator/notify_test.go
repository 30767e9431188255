package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/notify"
)

type hookReceiver struct {
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, b)
	h.heads = append(h.heads, r.Header.Clone())
	h.mu.Unlock()
}

func (h *hookReceiver) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.bodies) }

// slackRecorder sits in front of a slacktest server (which answers as
// Slack's Web API does) and keeps each chat.postMessage call and answer.
type slackRecorder struct {
	mu    sync.Mutex
	posts []slackPost
	raw   []string
}

type slackPost struct {
	Channel, ThreadTS, TS string
	Blocks                string
}

func newSlackRecorder(t *testing.T, s *slacktest.Server) (*slackRecorder, string) {
	t.Helper()
	target, err := url.Parse(s.GetAPIURL())
	require.NoError(t, err)
	rec := &slackRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "chat.postMessage") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		var answer struct{ TS string }
		_ = json.Unmarshal(b, &answer)
		form, _ := resp.Request.Context().Value(formKey{}).(url.Values)
		rec.mu.Lock()
		rec.posts = append(rec.posts, slackPost{Channel: form.Get("channel"), ThreadTS: form.Get("thread_ts"), TS: answer.TS, Blocks: form.Get("blocks")})
		rec.raw = append(rec.raw, form.Encode())
		rec.mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(b))
		r.Body = io.NopCloser(bytes.NewReader(b))
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), formKey{}, form)))
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL + target.Path
}

type formKey struct{}

func (r *slackRecorder) messages() []slackPost {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slackPost(nil), r.posts...)
}

// A failing rotation alerts Slack and the webhook once per failure episode,
// across processes (each `rotator run` is a new one, as in a CronJob); the
// next success posts "resolved" in the alert's thread; no payload holds a
// secret; an unreachable Slack neither fails nor holds up a rotation.
func TestCLINotifications(t *testing.T) {
	sl := slacktest.NewTestServer()
	sl.Start()
	defer sl.Stop()
	rec, apiURL := newSlackRecorder(t, sl)
	hooks := &hookReceiver{}
	hook := httptest.NewServer(hooks)
	defer hook.Close()

	c := newCLI(t)
	role := "notified"
	policy := strings.Replace(policyYAML, "role: app", "role: "+role, 1) + `
notify:
  slack:
    token: {env: SLACK_BOT_TOKEN}
    channel: "#ops"
    api_url: ` + apiURL + `
    events: [rotation_failed, rollback, quarantined, overdue, resolved]
  webhooks:
    - name: pager
      url: ` + hook.URL + `
      secret: {env: HOOK_KEY}
`
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(policy), 0o600))
	const hookKey = "webhook-hmac-key-0123456789"
	c.env = append(c.env, "SLACK_BOT_TOKEN=xoxb-test-token", "HOOK_KEY="+hookKey)
	require.Equal(t, 0, c.run("migrate").code)

	// The role does not exist: generate fails (the old credential, whatever
	// it is, is untouched) and people are told.
	r := c.run("run", "--secret", "db/postgres")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Eventually(t, func() bool { return len(rec.messages()) == 1 && hooks.count() == 1 }, 10*time.Second, 50*time.Millisecond,
		"slack saw %d, webhook %d\n%s", len(rec.messages()), hooks.count(), r.stderr)
	alert := rec.messages()[0]
	require.Equal(t, "#ops", alert.Channel)
	require.NotEmpty(t, alert.TS)
	for _, want := range []string{"db/postgres", "generate", "rotator run --secret db/postgres", "database"} {
		require.Contains(t, alert.Blocks, want)
	}

	// The webhook's JSON is signed.
	hooks.mu.Lock()
	body, head := hooks.bodies[0], hooks.heads[0]
	hooks.mu.Unlock()
	require.NoError(t, notify.VerifySignature(secret.New(hookKey), head.Get(notify.HeaderTimestamp), body,
		head.Get(notify.HeaderSignature), time.Now(), time.Minute))
	require.Error(t, notify.VerifySignature(secret.New("another key"), head.Get(notify.HeaderTimestamp), body,
		head.Get(notify.HeaderSignature), time.Now(), time.Minute))
	var payload map[string]any
	require.NoError(t, json.Unmarshal(body, &payload))
	require.Equal(t, "rotation_failed", payload["kind"])

	// A second failure in the same episode, in another process: no new post.
	r = c.run("run", "--secret", "db/postgres")
	require.Equal(t, 3, r.code)
	time.Sleep(300 * time.Millisecond) // give a wrongly sent message time to arrive
	require.Len(t, rec.messages(), 1, "a failure episode posts once")
	require.Equal(t, 1, hooks.count())

	// Fixed: the role exists, init, the next run succeeds and resolves the episode.
	appDSN := c.envValue("ROTATOR_PG_ADMIN_DSN")
	conn, err := pgx.Connect(context.Background(), appDSN)
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), `CREATE ROLE `+role+` LOGIN PASSWORD 'notified-initial-pw'`)
	require.NoError(t, err)
	conn.Close(context.Background())
	require.Equal(t, 0, c.run("init", "--secret", "db/postgres").code)
	r = c.run("run", "--secret", "db/postgres")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Eventually(t, func() bool { return len(rec.messages()) == 2 }, 10*time.Second, 50*time.Millisecond)
	resolved := rec.messages()[1]
	require.Equal(t, alert.TS, resolved.ThreadTS, "resolved is threaded under the alert")
	require.Contains(t, resolved.Blocks, "db/postgres")

	// No payload holds a secret.
	var published map[string]string
	b, err := os.ReadFile(filepath.Join(c.dir, "secrets/db/postgres.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &published))
	rec.mu.Lock()
	all := strings.Join(rec.raw, "\n")
	rec.mu.Unlock()
	hooks.mu.Lock()
	for _, b := range hooks.bodies {
		all += string(b)
	}
	hooks.mu.Unlock()
	for _, s := range []string{published["password"], "notified-initial-pw", hookKey} {
		require.NotContains(t, all, s, "a message payload holds a secret")
	}
	// (Slack's API takes the bot token in the request; it must not reach
	// rotator's own output.)
	for _, s := range []string{published["password"], "notified-initial-pw", hookKey, "xoxb-test-token"} {
		require.NotContains(t, c.all.String(), s, "rotator's output holds a secret")
	}

	// Slack unreachable: the rotation succeeds as usual; the failed
	// deliveries are logged, not fatal.
	port, err := pgtest.FreePort()
	require.NoError(t, err)
	dead := strings.Replace(policy, apiURL, "http://127.0.0.1:"+strconv.Itoa(port)+"/api/", 1)
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(dead), 0o600))
	r = c.run("run", "--secret", "db/postgres")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "rotated")
}

func (c *cli) envValue(name string) string {
	for _, kv := range c.env {
		if strings.HasPrefix(kv, name+"=") {
			return strings.TrimPrefix(kv, name+"=")
		}
	}
	return ""
}

// `rotator notify test` reports what every sink answered, and fails when
// one failed.
func TestCLINotifyTest(t *testing.T) {
	hooks := &hookReceiver{}
	hook := httptest.NewServer(hooks)
	defer hook.Close()
	port, err := pgtest.FreePort()
	require.NoError(t, err)
	c := &cli{t: t, dir: t.TempDir(), env: append(os.Environ(), "ROTATOR_POLICIES=", "SLACK_BOT_TOKEN=xoxb-x", "HOOK_KEY=k")}
	policy := policyYAML + `
notify:
  slack:
    token: {env: SLACK_BOT_TOKEN}
    channel: "#ops"
    api_url: http://127.0.0.1:` + strconv.Itoa(port) + `/api/
  webhooks:
    - name: pager
      url: ` + hook.URL + `
      secret: {env: HOOK_KEY}
`
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "policies.yaml"), []byte(policy), 0o600))
	r := c.run("notify", "test")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "pager: ok")
	require.Contains(t, r.stdout, "slack: FAILED")
	require.Contains(t, r.stderr, "1 sink(s) failed")
	require.Equal(t, 1, hooks.count())
	require.NotContains(t, c.all.String(), "xoxb-x")
}
