package notify

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
)

func failed(secretID, runID string, attempt int) Event {
	e := fullEvent(KindRotationFailed)
	e.SecretID, e.RunID, e.Attempt = secretID, runID, attempt
	return e
}

func succeeded(secretID, runID string) Event {
	return Event{Kind: KindRotationSucceeded, SecretID: secretID, Class: "database", RunID: runID, Channel: "C0DBTEAM"}
}

func TestEpisodeSlackBotPostsOnceAndThreadsResolved(t *testing.T) {
	t.Parallel()
	srv := newSlackServer(t)
	rec := newRecorder()
	bot, err := NewSlackBot(secret.New("xoxb-test"), "C0DEFAULT", srv.GetAPIURL(), SlackOptions{HTTPClient: rec.client()})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	n, err := New(Config{Retry: fastRetry, Registerer: reg}, bot)
	require.NoError(t, err)

	n.Notify(failed("db/postgres", "run-1", 1))
	n.Notify(failed("db/postgres", "run-1", 2)) // same episode: suppressed
	n.Notify(failed("db/postgres", "run-2", 1)) // still the same episode
	n.Notify(succeeded("db/postgres", "run-3"))
	n.Notify(succeeded("db/postgres", "run-4")) // nothing open: not posted by default
	n.Notify(failed("db/postgres", "run-5", 1)) // a new episode posts again
	closeNotifier(t, n)

	posts := rec.postMessages()
	require.Len(t, posts, 3)

	alert, _ := postedBlocks(t, posts[0])
	require.Empty(t, alert.Get("thread_ts"))
	alertChannel, alertTS := postResponse(t, posts[0])
	require.Equal(t, "C0DBTEAM", alertChannel)
	require.NotEmpty(t, alertTS)

	resolved, blocks := postedBlocks(t, posts[1])
	require.Equal(t, alertTS, resolved.Get("thread_ts"), "resolved must reply in the alert's thread")
	require.Equal(t, alertChannel, resolved.Get("channel"))
	header, _, sections, _, _ := blockTexts(t, blocks)
	require.Contains(t, header, "Resolved: db/postgres")
	require.Contains(t, strings.Join(sections, "\n"), "2 repeated alerts were not posted")

	again, _ := postedBlocks(t, posts[2])
	require.Empty(t, again.Get("thread_ts"))

	require.Equal(t, 2.0, counter(t, reg, "slack", KindRotationFailed, OutcomeSent))
	require.Equal(t, 2.0, counter(t, reg, "slack", KindRotationFailed, OutcomeSuppressed))
	require.Equal(t, 1.0, counter(t, reg, "slack", KindResolved, OutcomeSent))
	require.Equal(t, 0.0, counter(t, reg, "slack", KindRotationSucceeded, OutcomeSent))
}

func TestEpisodeWebhookModesPostResolvedPlain(t *testing.T) {
	t.Parallel()
	srv := newSlackServer(t)
	rcv := newReceiver(t, 200)
	hook, err := NewSlackWebhook(secret.New(srv.webhookURL()), SlackOptions{})
	require.NoError(t, err)
	wh, err := NewWebhook("ops", rcv.URL, secret.New("k"), WebhookOptions{})
	require.NoError(t, err)
	n, err := New(Config{Retry: fastRetry}, hook, wh)
	require.NoError(t, err)

	n.Notify(failed("db/postgres", "run-1", 1))
	n.Notify(failed("api/key", "run-9", 1)) // another secret: its own episode
	n.Notify(failed("db/postgres", "run-1", 2))
	rb := fullEvent(KindRollback) // a new kind in the open episode is posted
	n.Notify(rb)
	n.Notify(rb) // ...once
	n.Notify(succeeded("db/postgres", "run-2"))
	closeNotifier(t, n)

	msgs := srv.webhookMessages(t)
	require.Len(t, msgs, 4)
	var headers []string
	for _, m := range msgs {
		require.Empty(t, m.ThreadTimestamp)
		h, _, _, _, _ := blockTexts(t, *m.Blocks)
		headers = append(headers, h)
	}
	require.Contains(t, headers[0], "Rotation failed: db/postgres")
	require.Contains(t, headers[1], "Rotation failed: api/key")
	require.Contains(t, headers[2], "Rolled back: db/postgres")
	require.Contains(t, headers[3], "Resolved: db/postgres")

	var kinds []string
	for _, p := range rcv.payloads(t) {
		kinds = append(kinds, string(p.Kind)+" "+p.SecretID)
	}
	require.Equal(t, []string{
		"rotation_failed db/postgres", "rotation_failed api/key", "rollback db/postgres", "resolved db/postgres",
	}, kinds)
}

// An alert that was never delivered must not silence the next one.
func TestEpisodeNotOpenedWhenAlertFails(t *testing.T) {
	t.Parallel()
	fail := true
	s := &funcSink{name: "flaky", send: func(context.Context, SendRequest) (Receipt, error) {
		if fail {
			return Receipt{}, Permanent(errors.New("down"))
		}
		return Receipt{StatusCode: 200}, nil
	}}
	eps := NewMemoryEpisodes()
	n, err := New(Config{Retry: fastRetry, Episodes: eps}, s)
	require.NoError(t, err)
	n.Notify(failed("db/postgres", "run-1", 1))
	closeNotifier(t, n) // sequential: the first alert has failed

	_, open, err := eps.Lookup(context.Background(), EpisodeKey{SecretID: "db/postgres", Sink: "flaky"})
	require.NoError(t, err)
	require.False(t, open)

	fail = false // safe: the notifier's goroutine has finished
	n2, err := New(Config{Retry: fastRetry, Episodes: eps}, s)
	require.NoError(t, err)
	n2.Notify(failed("db/postgres", "run-1", 2))
	closeNotifier(t, n2)
	require.Equal(t, 2, s.calls()) // one permanent failure (no retry), then the second alert
	ep, open, err := eps.Lookup(context.Background(), EpisodeKey{SecretID: "db/postgres", Sink: "flaky"})
	require.NoError(t, err)
	require.True(t, open)
	require.Equal(t, []Kind{KindRotationFailed}, ep.Kinds)
}
