package notify

import (
	"strings"
	"testing"

	"github.com/slack-go/slack"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
)

// A credential_broken event (from `rotator check` or the daemon's check)
// renders as an alert that says which stores publish what, why it fails,
// and the command to run first; sinks send it by default and it opens a
// failure episode like the other alerts.
func TestCredentialBrokenMessage(t *testing.T) {
	t.Parallel()
	e := Event{Kind: policy.EventCredentialBroken, SecretID: "db/postgres", Class: "database", RunID: "run-0007", Step: "check",
		Error:    `test credential app_blue: FATAL: password authentication failed for user "app_blue" (SQLSTATE 28P01)`,
		Detail:   "local:db/postgres.json, aws:prod/db publish version 7 (app_blue) as current, and it does not work at the target",
		Commands: []string{"rotator check --secret db/postgres", "rotator run --secret db/postgres"}, At: testAt}
	text, blocks := slackMessage(e)
	require.Contains(t, text, "Published credential does not work: db/postgres")
	header, fields, sections, ctx, _ := blockTexts(t, slack.Blocks{BlockSet: blocks})
	require.Contains(t, header, "Published credential does not work: db/postgres")
	require.Contains(t, strings.Join(fields, "\n"), "*Found by*\ncheck")
	require.Contains(t, strings.Join(sections, "\n"), "password authentication failed")
	require.Contains(t, strings.Join(sections, "\n"), "local:db/postgres.json, aws:prod/db publish version 7")
	require.Equal(t, "Run: `rotator check --secret db/postgres`", ctx[0])

	require.Contains(t, DefaultEvents, KindCredentialBroken, "sent unless a sink's events leave it out")
	require.True(t, isAlert(KindCredentialBroken), "a repeat within an episode is suppressed")
	f, err := newEventFilter([]string{policy.EventCredentialBroken})
	require.NoError(t, err)
	require.True(t, f.accepts(policy.EventCredentialBroken))
}
