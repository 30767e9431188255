package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/httpclient"
	"github.com/rotator/rotator/internal/secret"
)

// Every sink refuses a redirect to another listener: the Slack token, the
// webhook signature and the payload never reach it, even with a caller's
// client that would follow.
func TestSinksRefuseCrossOriginRedirects(t *testing.T) {
	t.Parallel()
	other := newReceiver(t, 200)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(front.Close)
	following := &http.Client{} // Go's default: follows redirects

	bot, err := NewSlackBot(secret.New("xoxb-the-token"), "C0OPS", front.URL+"/api/", SlackOptions{Name: "slack", HTTPClient: following})
	require.NoError(t, err)
	hook, err := NewSlackWebhook(secret.New(front.URL+"/services/T/B/the-hook-secret"), SlackOptions{Name: "slack-hook"})
	require.NoError(t, err)
	wh, err := NewWebhook("ops", front.URL+"/hook", secret.New("the-hmac-key"), WebhookOptions{HTTPClient: following})
	require.NoError(t, err)
	n, err := New(Config{Retry: fastRetry}, bot, hook, wh)
	require.NoError(t, err)
	t.Cleanup(func() { closeNotifier(t, n) })

	res := n.Test(context.Background())
	require.Len(t, res, 3)
	for _, r := range res {
		require.Error(t, r.Err, r.Sink)
		require.ErrorIs(t, r.Err, httpclient.ErrRedirect, r.Sink)
		require.NotContains(t, r.Err.Error(), "xoxb-the-token")
		require.NotContains(t, r.Err.Error(), "the-hook-secret")
	}
	require.Empty(t, other.received(), "the redirect target received a request")
}
