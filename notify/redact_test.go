package notify

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
)

func TestNewRedactor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values []string
		in     string
		want   string
	}{
		{"nothing known", nil, "password abc", "password abc"},
		{"empty value ignored", []string{""}, "abc", "abc"},
		{"every occurrence", []string{"s3cr3t"}, "s3cr3t and s3cr3t", "REDACTED and REDACTED"},
		{"longest first", []string{"abc", "abcdef"}, "x abcdef y abc", "x REDACTED y REDACTED"},
		{"url-escaped in a DSN", []string{"p@ss/w rd"}, "postgres://app:" + url.QueryEscape("p@ss/w rd") + "@db/app",
			"postgres://app:REDACTED@db/app"},
		{"base64 in a header", []string{"tok-123"}, "Basic " + base64.StdEncoding.EncodeToString([]byte("tok-123")),
			"Basic REDACTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vals := make([]secret.Value, len(tc.values))
			for i, v := range tc.values {
				vals[i] = secret.New(v)
			}
			require.Equal(t, tc.want, NewRedactor(vals...).Redact(tc.in))
		})
	}
}

// A secret the run generated, passed by mistake in Error, Detail and the
// commands, reaches no destination and no log line, in any encoding.
func TestGeneratedSecretRedactedFromEveryPayload(t *testing.T) {
	t.Parallel()
	const plaintext = "Gen3ratedPassw0rdXyZ"
	const processWide = "adminTokenQ9w8e7r6"
	srv := newSlackServer(t)
	rcv := newReceiver(t, 200)
	rec := newRecorder()
	all := []string{policy.EventRotationFailed, policy.EventResolved}
	bot, err := NewSlackBot(secret.New("xoxb-test"), "C0DEFAULT", srv.GetAPIURL(),
		SlackOptions{Name: "slack-bot", Events: all, HTTPClient: rec.client()})
	require.NoError(t, err)
	hook, err := NewSlackWebhook(secret.New(srv.webhookURL()), SlackOptions{Name: "slack-hook", Events: all, HTTPClient: rec.client()})
	require.NoError(t, err)
	wh, err := NewWebhook("ops", rcv.URL, secret.New("k"), WebhookOptions{Events: all, HTTPClient: rec.client()})
	require.NoError(t, err)
	var logs syncBuffer
	n, err := New(Config{Retry: fastRetry, Logger: jsonLogger(&logs), Redactor: NewRedactor(secret.New(processWide))}, bot, hook, wh)
	require.NoError(t, err)

	e := fullEvent(KindRotationFailed)
	e.Error = "FATAL: password authentication failed: password=" + plaintext + " dsn=postgres://app:" + plaintext + "@db"
	e.Detail = "generated " + plaintext + "; admin token " + processWide
	e.Commands = []string{"rotator run --secret db/postgres --password " + plaintext}
	e.Redactor = NewRedactor(secret.New(plaintext))
	n.Notify(e)
	s := succeeded("db/postgres", "run-2")
	s.Detail = "now using " + plaintext
	s.Redactor = NewRedactor(secret.New(plaintext))
	n.Notify(s)
	closeNotifier(t, n)

	ex := rec.all()
	require.Len(t, ex, 6) // alert and resolved, three sinks each
	for _, x := range ex {
		forms := []string{string(x.Body)}
		if u, err := url.QueryUnescape(string(x.Body)); err == nil {
			forms = append(forms, u)
		}
		var s string // a JSON body decoded as a string finds \u-escaped text
		if json.Unmarshal([]byte(`"`+strings.ReplaceAll(string(x.Body), `"`, `\"`)+`"`), &s) == nil {
			forms = append(forms, s)
		}
		for _, f := range forms {
			require.NotContains(t, f, plaintext, "request to %s", x.URL.Path)
			require.NotContains(t, f, processWide, "request to %s", x.URL.Path)
		}
		require.Contains(t, forms[len(forms)-1], "REDACTED", "request to %s", x.URL.Path)
	}
	// What the destinations received, decoded.
	for _, p := range rcv.payloads(t) {
		require.NotContains(t, p.Error+p.Detail+strings.Join(p.Commands, " "), plaintext)
	}
	require.Contains(t, rcv.payloads(t)[0].Error, "password=REDACTED")
	require.NotContains(t, logs.String(), plaintext)
}
