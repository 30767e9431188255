package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
)

func TestWebhookSignature(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 204)
	key := secret.New("the-hmac-key")
	wh, err := NewWebhook("ops", rcv.URL, key, WebhookOptions{Now: func() time.Time { return testAt }})
	require.NoError(t, err)
	n, err := New(Config{Retry: fastRetry}, wh)
	require.NoError(t, err)
	n.Notify(fullEvent(KindRotationFailed))
	closeNotifier(t, n)

	got := rcv.received()
	require.Len(t, got, 1)
	body := got[0].Body
	ts := got[0].Header.Get(HeaderTimestamp)
	sig := got[0].Header.Get(HeaderSignature)
	require.Equal(t, strconv.FormatInt(testAt.Unix(), 10), ts)
	require.Equal(t, "application/json", got[0].Header.Get("Content-Type"))

	// Computed independently, as a receiver in any language would.
	m := hmac.New(sha256.New, []byte("the-hmac-key"))
	m.Write([]byte(ts + "." + string(body)))
	require.Equal(t, "sha256="+hex.EncodeToString(m.Sum(nil)), sig)

	now := testAt.Add(30 * time.Second)
	require.NoError(t, VerifySignature(key, ts, body, sig, now, 5*time.Minute))
	require.ErrorIs(t, VerifySignature(secret.New("another-key"), ts, body, sig, now, 5*time.Minute), ErrBadSignature)
	tampered := []byte(strings.Replace(string(body), "db/postgres", "db/other", 1))
	require.ErrorIs(t, VerifySignature(key, ts, tampered, sig, now, 5*time.Minute), ErrBadSignature)
	// Replay: a fresh timestamp on a captured body and signature fails...
	fresh := strconv.FormatInt(testAt.Add(time.Hour).Unix(), 10)
	require.ErrorIs(t, VerifySignature(key, fresh, body, sig, testAt.Add(time.Hour), 5*time.Minute), ErrBadSignature)
	// ...and so does the original one, once it is old.
	require.ErrorIs(t, VerifySignature(key, ts, body, sig, testAt.Add(time.Hour), 5*time.Minute), ErrStale)
}

func TestWebhookStatusHandling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status    int
		tries     int
		permanent bool
	}{
		{http.StatusBadRequest, 1, true},
		{http.StatusUnauthorized, 1, true},
		{http.StatusTooManyRequests, 3, false},
		{http.StatusBadGateway, 3, false},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			t.Parallel()
			rcv := newReceiver(t, tc.status)
			wh, err := NewWebhook("ops", rcv.URL, secret.New("k"), WebhookOptions{})
			require.NoError(t, err)
			reg := prometheus.NewRegistry()
			var logs syncBuffer
			n, err := New(Config{Retry: fastRetry, Registerer: reg, Logger: jsonLogger(&logs)}, wh)
			require.NoError(t, err)
			n.Notify(fullEvent(KindQuarantined))
			closeNotifier(t, n)
			require.Len(t, rcv.received(), tc.tries)
			require.Equal(t, 1.0, counter(t, reg, "ops", KindQuarantined, OutcomeFailed))
			var failure map[string]any
			for _, l := range logLines(t, &logs) {
				if l["msg"] == "notification failed" {
					failure = l
				}
			}
			require.NotNil(t, failure, logs.String())
			require.Equal(t, tc.permanent, failure["permanent"])
			require.Equal(t, float64(tc.tries), failure["tries"])
			require.Contains(t, failure["error"], "HTTP "+strconv.Itoa(tc.status))
		})
	}
}

// A destination that hangs must not hold up Notify, nor the other sinks.
// The slow server lets a request in only after Notify has returned: were
// Notify to wait for the send, it would never return.
func TestNotifyDoesNotWaitForSlowSink(t *testing.T) {
	t.Parallel()
	notified := make(chan struct{})
	received := make(chan struct{}, 16)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-notified:
		case <-r.Context().Done():
			return
		}
		received <- struct{}{}
		select { // hang until the test releases it
		case <-release:
			w.WriteHeader(http.StatusServiceUnavailable)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs before slow.Close

	srv := newSlackServer(t)
	rec := newRecorder()
	bot, err := NewSlackBot(secret.New("xoxb-test"), "C0DEFAULT", srv.GetAPIURL(), SlackOptions{HTTPClient: rec.client()})
	require.NoError(t, err)
	wh, err := NewWebhook("slow", slow.URL, secret.New("k"), WebhookOptions{})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	retry := RetryPolicy{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond, Timeout: time.Hour}
	n, err := New(Config{Retry: retry, Registerer: reg, Logger: jsonLogger(&logs), QueueSize: 2}, wh, bot)
	require.NoError(t, err)

	go func() {
		for i := range 10 { // more than a queue holds
			n.Notify(failed("db/postgres"+strconv.Itoa(i), "run-1", 1))
		}
		close(notified)
	}()
	select {
	case <-notified:
	case <-time.After(30 * time.Second):
		t.Fatal("Notify blocked on a destination that does not answer")
	}
	<-received // the slow server got its first request only after Notify returned

	// While the slow server still hangs, Slack gets everything that was
	// not dropped.
	slackDone := func() bool {
		return counter(t, reg, "slack", KindRotationFailed, OutcomeSent)+
			counter(t, reg, "slack", KindRotationFailed, OutcomeDropped) == 10
	}
	require.Eventually(t, slackDone, 30*time.Second, 5*time.Millisecond)
	require.GreaterOrEqual(t, counter(t, reg, "slack", KindRotationFailed, OutcomeSent), 1.0)
	require.Len(t, rec.postMessages(), int(counter(t, reg, "slack", KindRotationFailed, OutcomeSent)))

	releaseOnce.Do(func() { close(release) })
	closeNotifier(t, n)

	// The slow sink's worker held one event and its queue two; the rest
	// were dropped, and what it tried failed (503 after two tries).
	failedN := counter(t, reg, "slow", KindRotationFailed, OutcomeFailed)
	dropped := counter(t, reg, "slow", KindRotationFailed, OutcomeDropped)
	require.Equal(t, 10.0, failedN+dropped)
	require.GreaterOrEqual(t, dropped, 7.0)
	require.GreaterOrEqual(t, failedN, 2.0)
	out := logs.String()
	require.Contains(t, out, `"msg":"notification dropped"`)
	require.Contains(t, out, `"reason":"queue full"`)
	require.Contains(t, out, `"msg":"notification failed"`)
	require.Contains(t, out, `"sink":"slow"`)
	require.Contains(t, out, "HTTP 503")
}

func TestUnreachableSinksFailCountedAndScrubbed(t *testing.T) {
	t.Parallel()
	hookURL := closedURL(t, "/services/T000/B000/hooksecretpart")
	hook, err := NewSlackWebhook(secret.New(hookURL), SlackOptions{Name: "slack-hook"})
	require.NoError(t, err)
	bot, err := NewSlackBot(secret.New("xoxb-bot-token-secret"), "C0DEFAULT", closedURL(t, "/api/"), SlackOptions{Name: "slack-bot"})
	require.NoError(t, err)
	wh, err := NewWebhook("ops", closedURL(t, "/hook?token=querysecret"), secret.New("k"), WebhookOptions{})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	n, err := New(Config{Retry: fastRetry, Registerer: reg, Logger: jsonLogger(&logs)}, hook, bot, wh)
	require.NoError(t, err)
	n.Notify(fullEvent(KindRotationFailed))
	closeNotifier(t, n)

	for _, sink := range []string{"slack-hook", "slack-bot", "ops"} {
		require.Equal(t, 1.0, counter(t, reg, sink, KindRotationFailed, OutcomeFailed), sink)
	}
	var failures int
	for _, l := range logLines(t, &logs) {
		if l["msg"] == "notification failed" {
			failures++
			require.Equal(t, float64(fastRetry.Attempts), l["tries"])
			require.Equal(t, "rotation_failed", l["kind"])
			require.Equal(t, "db/postgres", l["secret_id"])
			require.Contains(t, l["error"], "connection refused")
		}
	}
	require.Equal(t, 3, failures)
	out := logs.String()
	require.NotContains(t, out, "hooksecretpart", "the Slack webhook URL is a credential")
	require.NotContains(t, out, "xoxb-bot-token-secret")
	require.NotContains(t, out, "querysecret")
}

func TestCloseDeadline(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	hang := &funcSink{name: "hang", send: func(ctx context.Context, _ SendRequest) (Receipt, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return Receipt{}, ctx.Err()
	}}
	reg := prometheus.NewRegistry()
	n, err := New(Config{Registerer: reg, Retry: RetryPolicy{Attempts: 1, Timeout: time.Hour}}, hang)
	require.NoError(t, err)
	n.Notify(failed("a", "r", 1))
	n.Notify(failed("b", "r", 1))
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no time left at all
	err = n.Close(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "2 notifications not delivered")
	require.Equal(t, 1.0, counter(t, reg, "hang", KindRotationFailed, OutcomeDropped))
	require.NoError(t, n.Close(context.Background()), "a second Close is a no-op")

	n.Notify(failed("c", "r", 1)) // after Close: dropped, not a panic
	require.Equal(t, 2.0, counter(t, reg, "hang", KindRotationFailed, OutcomeDropped))
}

func TestTestReportsEverySink(t *testing.T) {
	t.Parallel()
	ok := newSlackServer(t)
	denied := newSlackServer(t, func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"ok":false,"error":"invalid_auth"}`))
		})
	})
	good := newReceiver(t, 200)
	bad := newReceiver(t, 500)

	bot, err := NewSlackBot(secret.New("xoxb-ok"), "C0OPS", ok.GetAPIURL(), SlackOptions{Name: "slack"})
	require.NoError(t, err)
	badBot, err := NewSlackBot(secret.New("xoxb-revoked"), "C0OPS", denied.GetAPIURL(), SlackOptions{Name: "slack-old"})
	require.NoError(t, err)
	hook, err := NewSlackWebhook(secret.New(ok.webhookURL()), SlackOptions{Name: "slack-hook"})
	require.NoError(t, err)
	// The filter does not apply to test messages.
	wh, err := NewWebhook("ops", good.URL, secret.New("k"), WebhookOptions{Events: []string{policy.EventUpcoming}})
	require.NoError(t, err)
	broken, err := NewWebhook("broken", bad.URL, secret.New("k"), WebhookOptions{})
	require.NoError(t, err)
	n, err := New(Config{Retry: fastRetry}, bot, badBot, hook, wh, broken)
	require.NoError(t, err)
	t.Cleanup(func() { closeNotifier(t, n) })

	res := n.Test(context.Background())
	require.Len(t, res, 5)
	names := []string{}
	for _, r := range res {
		names = append(names, r.Sink)
	}
	require.Equal(t, []string{"slack", "slack-old", "slack-hook", "ops", "broken"}, names)

	require.NoError(t, res[0].Err)
	require.Equal(t, "C0OPS", res[0].Receipt.Channel)
	require.NotEmpty(t, res[0].Receipt.TS)
	require.Contains(t, res[0].Receipt.String(), "posted to C0OPS")

	require.Error(t, res[1].Err)
	require.Contains(t, res[1].Err.Error(), "invalid_auth")
	require.True(t, IsPermanent(res[1].Err))
	require.NotContains(t, res[1].Err.Error(), "xoxb-revoked")

	require.NoError(t, res[2].Err)
	require.Equal(t, 200, res[2].Receipt.StatusCode)
	require.Len(t, ok.webhookMessages(t), 1)

	require.NoError(t, res[3].Err)
	require.Equal(t, KindTest, good.payloads(t)[0].Kind)

	require.Error(t, res[4].Err)
	require.Contains(t, res[4].Err.Error(), "HTTP 500")
	require.Equal(t, 500, res[4].Receipt.StatusCode)
	require.Len(t, bad.received(), 1, "Test makes one try")
}

func TestNewRejectsDuplicateNames(t *testing.T) {
	t.Parallel()
	a := &funcSink{name: "x"}
	b := &funcSink{name: "x"}
	_, err := New(Config{}, a, b)
	require.ErrorContains(t, err, `two sinks are named "x"`)
	_, err = New(Config{}, &funcSink{})
	require.Error(t, err)
}

func TestMetricRegistersTwice(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	n1, err := New(Config{Registerer: reg})
	require.NoError(t, err)
	n2, err := New(Config{Registerer: reg})
	require.NoError(t, err)
	require.Same(t, n1.total, n2.total)
	closeNotifier(t, n1)
	closeNotifier(t, n2)
}
