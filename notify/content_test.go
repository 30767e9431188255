package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/state"
)

var (
	testAt   = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	testNext = time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)
)

func fullEvent(kind Kind) Event {
	return Event{
		Kind:        kind,
		SecretID:    "db/postgres",
		Class:       "database",
		RunID:       "run-0001",
		Step:        state.StepPublish,
		Error:       `vault: write secret/data/db/postgres: permission denied <403> & "retry"`,
		Attempt:     3,
		MaxAttempts: 5,
		NextAttempt: testNext,
		Channel:     "C0DBTEAM",
		Commands:    []string{"rotator run --secret db/postgres", "rotator rollback --secret db/postgres --run run-0001"},
		At:          testAt,
		Detail:      "The old password stays valid and published.",
	}
}

// blockTexts returns the header, the field texts, the section texts and the
// context texts of a Block Kit message.
func blockTexts(t *testing.T, b slack.Blocks) (header string, fields, sections, context []string, types []string) {
	t.Helper()
	for _, bl := range b.BlockSet {
		types = append(types, string(bl.BlockType()))
		switch x := bl.(type) {
		case *slack.HeaderBlock:
			header = x.Text.Text
		case *slack.SectionBlock:
			for _, f := range x.Fields {
				fields = append(fields, f.Text)
			}
			if x.Text != nil {
				sections = append(sections, x.Text.Text)
			}
		case *slack.ContextBlock:
			for _, el := range x.ContextElements.Elements {
				tb, ok := el.(*slack.TextBlockObject)
				require.True(t, ok, "context element %T", el)
				context = append(context, tb.Text)
			}
		}
	}
	return
}

// checkSlackBlocks asserts the content every failure-style message has.
func checkSlackBlocks(t *testing.T, kind Kind, title string, b slack.Blocks) {
	t.Helper()
	header, fields, sections, ctx, types := blockTexts(t, b)
	require.Equal(t, []string{"header", "section", "section", "section", "context"}, types)
	require.Contains(t, header, title)
	require.Contains(t, header, "db/postgres")
	all := strings.Join(fields, "\n")
	require.Contains(t, all, "*Secret*\n`db/postgres`")
	require.Contains(t, all, "*Class*\ndatabase")
	if kind == KindRotationFailed || kind == KindRollback || kind == KindQuarantined {
		require.Contains(t, all, "*Failed step*\npublish")
	} else {
		require.Contains(t, all, "*Step*\npublish")
	}
	require.Contains(t, all, "*Attempt*\n3 of 5")
	label := "*Next try*"
	if kind == KindUpcoming {
		label = "*Scheduled*"
	}
	require.Contains(t, all, label+"\n<!date^"+"1795428900"+"^")
	require.Contains(t, all, "|2026-11-23T10:15:00Z>")
	require.Contains(t, all, "*Run*\n`run-0001`")
	// The error, escaped for mrkdwn, in a code block.
	require.Equal(t, "```vault: write secret/data/db/postgres: permission denied &lt;403&gt; &amp; \"retry\"```", sections[0])
	require.Equal(t, "The old password stays valid and published.", sections[1])
	require.Equal(t, []string{
		"Run: `rotator run --secret db/postgres`",
		"`rotator rollback --secret db/postgres --run run-0001`",
	}, ctx)
}

func TestMessageContentPerKind(t *testing.T) {
	t.Parallel()
	require.Equal(t, int64(1795428900), testNext.Unix())
	cases := []struct {
		kind  Kind
		title string
	}{
		{KindRotationFailed, "Rotation failed"},
		{KindRollback, "Rolled back"},
		{KindQuarantined, "Quarantined"},
		{KindOverdue, "Rotation overdue"},
		{KindUpcoming, "Rotation scheduled"},
		{KindRotationSucceeded, "Rotated"},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			srv := newSlackServer(t)
			rcv := newReceiver(t, 200)
			rec := newRecorder()
			all := []string{string(tc.kind)}
			bot, err := NewSlackBot(secret.New("xoxb-test"), "C0DEFAULT", srv.GetAPIURL(),
				SlackOptions{Name: "slack-bot", Events: all, HTTPClient: rec.client()})
			require.NoError(t, err)
			hook, err := NewSlackWebhook(secret.New(srv.webhookURL()), SlackOptions{Name: "slack-hook", Events: all})
			require.NoError(t, err)
			wh, err := NewWebhook("ops", rcv.URL+"/hook", secret.New("hmac-key"), WebhookOptions{Events: all})
			require.NoError(t, err)
			n, err := New(Config{Retry: fastRetry}, bot, hook, wh)
			require.NoError(t, err)

			n.Notify(fullEvent(tc.kind))
			closeNotifier(t, n)

			// Bot mode: chat.postMessage to the secret's own channel.
			posts := rec.postMessages()
			require.Len(t, posts, 1)
			form, blocks := postedBlocks(t, posts[0])
			require.Equal(t, "C0DBTEAM", form.Get("channel"))
			require.Empty(t, form.Get("thread_ts"))
			require.Contains(t, form.Get("text"), tc.title) // notification fallback
			checkSlackBlocks(t, tc.kind, tc.title, blocks)

			// Webhook mode: the same blocks as JSON.
			msgs := srv.webhookMessages(t)
			require.Len(t, msgs, 1)
			require.NotNil(t, msgs[0].Blocks)
			require.Empty(t, msgs[0].ThreadTimestamp)
			checkSlackBlocks(t, tc.kind, tc.title, *msgs[0].Blocks)

			// Generic webhook: every field as JSON.
			ps := rcv.payloads(t)
			require.Len(t, ps, 1)
			p := ps[0]
			require.Equal(t, PayloadVersion, p.Version)
			require.NotEmpty(t, p.ID)
			require.Equal(t, tc.kind, p.Kind)
			require.Equal(t, "db/postgres", p.SecretID)
			require.Equal(t, "database", p.Class)
			require.Equal(t, "run-0001", p.RunID)
			require.Equal(t, state.StepPublish, p.Step)
			require.Equal(t, fullEvent(tc.kind).Error, p.Error)
			require.Equal(t, 3, p.Attempt)
			require.Equal(t, 5, p.MaxAttempts)
			require.NotNil(t, p.NextAttempt)
			require.True(t, testNext.Equal(*p.NextAttempt))
			require.Equal(t, fullEvent(tc.kind).Commands, p.Commands)
			require.True(t, testAt.Equal(p.At))
			require.Equal(t, fullEvent(tc.kind).Detail, p.Detail)
			require.Equal(t, string(tc.kind), rcv.received()[0].Header.Get(HeaderEvent))
			require.Equal(t, p.ID, rcv.received()[0].Header.Get(HeaderDelivery))
		})
	}
}

func TestWebhookPayloadOmitsEmptyFields(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(newPayload(Event{Kind: KindOverdue, SecretID: "api/x", At: testAt}))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	require.ElementsMatch(t, []string{"version", "id", "kind", "secret_id", "at"}, keys)
}

func TestSlackMessageLimits(t *testing.T) {
	t.Parallel()
	e := fullEvent(KindRotationFailed)
	e.SecretID = strings.Repeat("x", 400)
	e.Error = strings.Repeat("e```", 2000)
	for i := range 20 {
		e.Commands = append(e.Commands, "rotator run --secret s"+strings.Repeat("z", i))
	}
	_, blocks := slackMessage(e)
	header, fields, sections, ctx, _ := blockTexts(t, slack.Blocks{BlockSet: blocks})
	require.LessOrEqual(t, len([]rune(header)), maxHeader)
	require.LessOrEqual(t, len(fields), maxFields)
	for _, f := range fields {
		require.LessOrEqual(t, len([]rune(f)), maxField)
	}
	require.LessOrEqual(t, len([]rune(sections[0])), maxSectionText)
	require.True(t, strings.HasPrefix(sections[0], "```") && strings.HasSuffix(sections[0], "```"))
	require.Equal(t, 2, strings.Count(sections[0], "```"), "a fence inside the error must not end the code block")
	require.Len(t, ctx, maxContextElem)
	require.Contains(t, ctx[maxContextElem-1], "and 13 more commands") // 9 shown + 13 = 22
}

func TestFilterSkipsUnlistedKinds(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 200)
	wh, err := NewWebhook("ops", rcv.URL, secret.New("k"), WebhookOptions{}) // defaults
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	n, err := New(Config{Retry: fastRetry, Registerer: reg}, wh)
	require.NoError(t, err)
	n.Notify(Event{Kind: KindUpcoming, SecretID: "a"})
	n.Notify(Event{Kind: KindRotationSucceeded, SecretID: "a"}) // no episode open
	n.Notify(Event{Kind: KindOverdue, SecretID: "a"})
	closeNotifier(t, n)
	ps := rcv.payloads(t)
	require.Len(t, ps, 1)
	require.Equal(t, KindOverdue, ps[0].Kind)
	require.Equal(t, 1.0, counter(t, reg, "ops", KindOverdue, OutcomeSent))
}

// A sink that lists rotation_succeeded but not resolved still hears that
// the episode ended.
func TestSucceededEndsEpisodeForSinkWithoutResolved(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 200)
	wh, err := NewWebhook("ops", rcv.URL, secret.New("k"),
		WebhookOptions{Events: []string{policy.EventRotationFailed, policy.EventRotationSucceeded}})
	require.NoError(t, err)
	n, err := New(Config{Retry: fastRetry}, wh)
	require.NoError(t, err)
	n.Notify(failed("db/postgres", "run-1", 1))
	n.Notify(succeeded("db/postgres", "run-2"))
	n.Notify(failed("db/postgres", "run-3", 1))
	closeNotifier(t, n)
	var kinds []Kind
	for _, p := range rcv.payloads(t) {
		kinds = append(kinds, p.Kind)
	}
	require.Equal(t, []Kind{KindRotationFailed, KindRotationSucceeded, KindRotationFailed}, kinds)
}
