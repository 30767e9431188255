package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/syncbuf"
)

// exchange is one HTTP request a sink made, with the answer it got.
type exchange struct {
	Method   string
	URL      *url.URL
	Header   http.Header
	Body     []byte
	Status   int
	RespBody []byte
}

// recorder is an http.RoundTripper that keeps every request and response
// body it carries, so tests can inspect exactly what left the process.
type recorder struct {
	mu   sync.Mutex
	ex   []exchange
	next http.RoundTripper
}

func newRecorder() *recorder { return &recorder{next: http.DefaultTransport} }

func (r *recorder) client() *http.Client { return &http.Client{Transport: r} }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	ex := exchange{Method: req.Method, URL: req.URL, Header: req.Header.Clone(), Body: body}
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		rb, rerr := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		resp.Body = io.NopCloser(bytes.NewReader(rb))
		ex.Status, ex.RespBody = resp.StatusCode, rb
	}
	r.mu.Lock()
	r.ex = append(r.ex, ex)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) all() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange(nil), r.ex...)
}

// postMessages returns the chat.postMessage calls seen.
func (r *recorder) postMessages() []exchange {
	var out []exchange
	for _, e := range r.all() {
		if e.URL.Path == "/chat.postMessage" {
			out = append(out, e)
		}
	}
	return out
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

func jsonLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// logLines decodes the JSON log lines.
func logLines(t *testing.T, buf *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader([]byte(buf.String())))
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m))
		out = append(out, m)
	}
	return out
}

// counter reads rotator_notifications_total for the labels.
func counter(t *testing.T, reg *prometheus.Registry, sink string, kind Kind, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "rotator_notifications_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["sink"] == sink && l["kind"] == string(kind) && l["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// fastRetry keeps tests quick: real backoff, tiny waits.
var fastRetry = RetryPolicy{Attempts: 3, Initial: time.Millisecond, Max: 5 * time.Millisecond, Timeout: 30 * time.Second} // long: a loaded CI machine must not turn a slow answer into a retried (duplicate) post

// slackServer is a slacktest server (Slack's Web API) that also serves an
// incoming webhook at webhookPath and records what that webhook received.
type slackServer struct {
	*slacktest.Server
	mu       sync.Mutex
	webhooks [][]byte
}

const webhookPath = "/services/T000/B000/hooksecretpart"

func newSlackServer(t *testing.T, binders ...slacktest.Binder) *slackServer {
	t.Helper()
	s := &slackServer{}
	binders = append(binders, func(c slacktest.Customize) {
		c.Handle(webhookPath, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.webhooks = append(s.webhooks, b)
			s.mu.Unlock()
			_, _ = w.Write([]byte("ok"))
		})
	})
	s.Server = slacktest.NewTestServer(binders...)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func (s *slackServer) webhookURL() string {
	return "http://" + s.ServerAddr + webhookPath
}

func (s *slackServer) webhookMessages(t *testing.T) []slack.WebhookMessage {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []slack.WebhookMessage
	for _, b := range s.webhooks {
		var m slack.WebhookMessage
		require.NoError(t, json.Unmarshal(b, &m), string(b))
		out = append(out, m)
	}
	return out
}

// receiver is a generic webhook endpoint that keeps what it received.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []exchange
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, exchange{Method: r.Method, URL: r.URL, Header: r.Header.Clone(), Body: b})
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() []exchange {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]exchange(nil), rc.reqs...)
}

func (rc *receiver) payloads(t *testing.T) []WebhookPayload {
	t.Helper()
	var out []WebhookPayload
	seen := map[string]bool{}
	for _, e := range rc.received() {
		// Delivery is at least once: a retry after a timed-out answer
		// repeats the delivery id, and receivers drop repeats (doc.go).
		// Distinct events have distinct ids, so this hides no double post.
		if id := e.Header.Get(HeaderDelivery); id != "" {
			if seen[id] {
				continue
			}
			seen[id] = true
		}
		var p WebhookPayload
		require.NoError(t, json.Unmarshal(e.Body, &p), string(e.Body))
		out = append(out, p)
	}
	return out
}

// closedURL returns an http URL on a loopback port nothing listens on.
func closedURL(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr + path
}

func closeNotifier(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, n.Close(ctx))
}

// postedBlocks decodes the blocks and form of a chat.postMessage call.
func postedBlocks(t *testing.T, ex exchange) (url.Values, slack.Blocks) {
	t.Helper()
	v, err := url.ParseQuery(string(ex.Body))
	require.NoError(t, err)
	var b slack.Blocks
	require.NoError(t, json.Unmarshal([]byte(v.Get("blocks")), &b), v.Get("blocks"))
	return v, b
}

// postResponse decodes Slack's answer to chat.postMessage.
func postResponse(t *testing.T, ex exchange) (channel, ts string) {
	t.Helper()
	var r struct {
		OK      bool   `json:"ok"`
		Channel string `json:"channel"`
		TS      string `json:"ts"`
	}
	require.NoError(t, json.Unmarshal(ex.RespBody, &r), string(ex.RespBody))
	require.True(t, r.OK, string(ex.RespBody))
	return r.Channel, r.TS
}

// funcSink is a Sink whose Send is a function; it accepts every kind.
type funcSink struct {
	name string
	send func(context.Context, SendRequest) (Receipt, error)
	mu   sync.Mutex
	n    int
}

func (f *funcSink) Name() string      { return f.name }
func (f *funcSink) Accepts(Kind) bool { return true }
func (f *funcSink) Send(ctx context.Context, req SendRequest) (Receipt, error) {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	return f.send(ctx, req)
}
func (f *funcSink) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}
