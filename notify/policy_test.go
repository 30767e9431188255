package notify

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
)

func resolver(env map[string]string) func(policy.Ref) (secret.Value, error) {
	return func(r policy.Ref) (secret.Value, error) {
		v, ok := env[r.Env]
		if !ok {
			return secret.Value{}, errors.New("environment variable " + r.Env + " is not set")
		}
		return secret.New(v), nil
	}
}

func pos(line int) policy.Position {
	return policy.Position{File: "policies.yaml", Line: line, Column: 3}
}

func TestFromPolicy(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"SLACK_TOKEN": "xoxb-1", "SLACK_HOOK": "https://hooks.slack.com/services/T/B/X",
		"OPS_KEY": "k1", "AUDIT_KEY": "k2",
	}
	spec := policy.NotifySpec{
		Slack: &policy.SlackSpec{Token: &policy.Ref{Env: "SLACK_TOKEN"}, Channel: "C0OPS", APIURL: "http://127.0.0.1:1/api",
			Events: []string{policy.EventRotationFailed, policy.EventRotationSucceeded}, Pos: pos(10)},
		Webhooks: []*policy.WebhookSpec{
			{Name: "ops", URL: "https://ops.example/hook", Secret: policy.Ref{Env: "OPS_KEY"}, Pos: pos(20)},
			{Name: "audit", URL: "https://audit.example/hook", Secret: policy.Ref{Env: "AUDIT_KEY"},
				Events: []string{policy.EventUpcoming}, Pos: pos(25)},
		},
	}
	sinks, err := FromPolicy(spec, resolver(env), PolicyOptions{})
	require.NoError(t, err)
	require.Len(t, sinks, 3)
	bot, ok := sinks[0].(*SlackBot)
	require.True(t, ok)
	require.Equal(t, "slack", bot.Name())
	require.Equal(t, "C0OPS", bot.channel)
	require.True(t, bot.Accepts(KindRotationSucceeded))
	require.False(t, bot.Accepts(KindRollback))
	require.Equal(t, "ops", sinks[1].Name())
	for _, k := range DefaultEvents {
		require.True(t, sinks[1].Accepts(k), k)
	}
	require.False(t, sinks[1].Accepts(KindUpcoming))
	require.True(t, sinks[2].Accepts(KindUpcoming))
	require.False(t, sinks[2].Accepts(KindRotationFailed))

	spec.Slack = &policy.SlackSpec{WebhookURL: &policy.Ref{Env: "SLACK_HOOK"}, Pos: pos(10)}
	sinks, err = FromPolicy(spec, resolver(env), PolicyOptions{})
	require.NoError(t, err)
	_, ok = sinks[0].(*SlackWebhook)
	require.True(t, ok)
}

func TestFromPolicyErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"K": "k", "EMPTY": ""}
	for _, tc := range []struct {
		name string
		spec policy.NotifySpec
		want []string
	}{
		{"unresolved token", policy.NotifySpec{Slack: &policy.SlackSpec{Token: &policy.Ref{Env: "NOPE"}, Channel: "C", Pos: pos(4)}},
			[]string{"policies.yaml:4:3: notify.slack.token: environment variable NOPE is not set"}},
		{"empty hmac key", policy.NotifySpec{Webhooks: []*policy.WebhookSpec{{Name: "a", URL: "https://a", Secret: policy.Ref{Env: "EMPTY"}, Pos: pos(7)}}},
			[]string{"policies.yaml:7:3: notify.webhooks[0]", "signing secret is empty"}},
		{"duplicate names", policy.NotifySpec{Webhooks: []*policy.WebhookSpec{
			{Name: "a", URL: "https://a", Secret: policy.Ref{Env: "K"}, Pos: pos(7)},
			{Name: "a", URL: "https://b", Secret: policy.Ref{Env: "K"}, Pos: pos(9)},
		}}, []string{"policies.yaml:9:3: notify.webhooks[1]", `named "a" is already defined at policies.yaml:7:3`}},
		{"unknown event", policy.NotifySpec{Webhooks: []*policy.WebhookSpec{
			{Name: "a", URL: "https://a", Secret: policy.Ref{Env: "K"}, Events: []string{"rotation_faild"}, Pos: pos(7)},
		}}, []string{`unknown event "rotation_faild"`}},
		{"bad url", policy.NotifySpec{Webhooks: []*policy.WebhookSpec{
			{Name: "a", URL: "ftp://a", Secret: policy.Ref{Env: "K"}, Pos: pos(7)},
		}}, []string{"must be an absolute http or https URL"}},
		{"slack webhook url not a url", policy.NotifySpec{Slack: &policy.SlackSpec{WebhookURL: &policy.Ref{Env: "K"}, Pos: pos(2)}},
			[]string{"policies.yaml:2:3: notify.slack: slack webhook url: must be an absolute http or https URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := FromPolicy(tc.spec, resolver(env), PolicyOptions{})
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

// The kinds notify knows are exactly the event names policies.yaml may
// list, and the defaults agree.
func TestKindsArePolicyEvents(t *testing.T) {
	t.Parallel()
	var known, defaults []string
	for _, k := range knownKinds {
		known = append(known, string(k))
	}
	for _, k := range DefaultEvents {
		defaults = append(defaults, string(k))
	}
	require.ElementsMatch(t, policy.AllEvents(), known)
	require.ElementsMatch(t, policy.DefaultEvents(), defaults)
}
