package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
)

// TestDaemonChecksPublishedCredentials: a daemon started while a store
// publishes a broken token exports rotator_published_credential_ok 0 for
// it (1 for a healthy one) and posts one credential_broken alert to Slack
// with the command to run; a secret the daemon rotates is checked after
// its run. No token appears in the daemon's output or in Slack.
func TestDaemonChecksPublishedCredentials(t *testing.T) {
	t.Parallel()
	sl := slacktest.NewTestServer()
	sl.Start()
	defer sl.Stop()
	rec, apiURL := newSlackRecorder(t, sl)

	stateDSN := pgtest.NewDatabase(t)
	notifySlack := `notify:
  slack:
    token: {env: SLACK_BOT_TOKEN}
    channel: "#ops"
    api_url: ` + apiURL + `
`
	e := newEnv(t, stateDSN, tokenPolicy("tok/ok", "tok/bad", "tok/new")+notifySlack, "SLACK_BOT_TOKEN=xoxb-check-token")
	e.must("migrate")
	e.must("run", "--secret", "tok/ok")
	e.must("run", "--secret", "tok/bad")

	var tokens []string
	read := func(id string) map[string]string {
		b, err := os.ReadFile(filepath.Join(e.dir, "secrets", id+".json"))
		require.NoError(t, err)
		var d map[string]string
		require.NoError(t, json.Unmarshal(b, &d))
		tokens = append(tokens, d["token"])
		return d
	}
	read("tok/ok")
	// The published token of tok/bad is replaced by one of the wrong shape.
	bad := read("tok/bad")
	bad["token"] = "wrong-shape-token-0123456789"
	tokens = append(tokens, bad["token"])
	b, err := json.Marshal(bad)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(e.dir, "secrets", "tok/bad.json"), b, 0o600))

	d, base := e.startDaemon("daemon", nil, "--tick", "@every 1s")
	metric := func(body, id string) string {
		l, _ := metricLine(body, "rotator_published_credential_ok", `secret="`+id+`"`, `store="local"`)
		return l
	}
	var body string
	eventually(t, 30*time.Second, "the check's gauges on /metrics", func() bool {
		_, body = get(t, base+"/metrics")
		return metric(body, "tok/bad") != "" && metric(body, "tok/ok") != "" && strings.HasSuffix(metric(body, "tok/new"), " 1")
	})
	require.True(t, strings.HasSuffix(metric(body, "tok/bad"), " 0"), metric(body, "tok/bad"))
	require.True(t, strings.HasSuffix(metric(body, "tok/ok"), " 1"), metric(body, "tok/ok"))
	read("tok/new")
	l, ok := metricLine(body, "rotator_published_stores_agree", `secret="tok/bad"`)
	require.True(t, ok, body)
	require.True(t, strings.HasSuffix(l, " 1"), "one store agrees with itself: %s", l)
	d.waitLine(0, 10*time.Second, "published credential does not work", "tok/bad")

	require.Eventually(t, func() bool { return len(rec.messages()) == 1 }, 10*time.Second, 50*time.Millisecond)
	msg := rec.messages()[0]
	for _, want := range []string{"Published credential does not work", "tok/bad", "rotator check --secret tok/bad", "local:tok/bad.json"} {
		require.Contains(t, msg.Blocks, want)
	}

	// tok/bad leaves the policies: its gauges go with it.
	e.writePolicy(tokenPolicy("tok/ok", "tok/new") + notifySlack)
	from := d.lineCount()
	d.signal(syscall.SIGHUP)
	d.waitLine(from, 10*time.Second, "policies reloaded", `"secrets":2`)
	eventually(t, 20*time.Second, "tok/bad's gauge gone after the reload", func() bool {
		_, body = get(t, base+"/metrics")
		_, ok := metricLine(body, "rotator_published_credential_ok", `secret="tok/bad"`)
		return !ok
	})

	d.signal(syscall.SIGTERM)
	require.Equal(t, 0, d.wait(30*time.Second))
	rec.mu.Lock()
	all := strings.Join(rec.raw, "\n") + d.output()
	rec.mu.Unlock()
	for _, s := range tokens {
		require.NotContains(t, all, s, "a token leaked")
	}
	// (Slack's API takes the bot token in the request, not in the output.)
	require.NotContains(t, d.output(), "xoxb-check-token")
	require.Len(t, rec.messages(), 1, "one alert for one broken credential")
}
