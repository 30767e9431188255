package notify

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
)

// PolicyOptions adjust the sinks FromPolicy builds.
type PolicyOptions struct {
	// HTTPClient is given to every sink (default: one per sink).
	HTTPClient *http.Client
}

// FromPolicy builds the sinks notify: in policies.yaml asks for: a Slack
// sink named "slack" (incoming webhook when webhook_url is set, bot token
// and chat.postMessage when token is set) and one Webhook per entry, named
// by its name. resolve turns a Ref into its secret (policy.Ref.Resolve in
// production). Errors name the place in the policies file. The spec's
// structure (exactly one of webhook_url and token...) is validated by
// package policy; FromPolicy checks what it needs to build the sinks.
func FromPolicy(spec policy.NotifySpec, resolve func(policy.Ref) (secret.Value, error), opts PolicyOptions) ([]Sink, error) {
	var sinks []Sink
	var errs []error
	names := map[string]policy.Position{}
	add := func(s Sink, pos policy.Position, field string) {
		if prev, dup := names[s.Name()]; dup {
			errs = append(errs, fmt.Errorf("%s: %s: a notification sink named %q is already defined at %s; names must be unique",
				pos, field, s.Name(), prev))
			return
		}
		names[s.Name()] = pos
		sinks = append(sinks, s)
	}

	if sl := spec.Slack; sl != nil {
		so := SlackOptions{Name: "slack", Events: sl.Events, HTTPClient: opts.HTTPClient}
		switch {
		case sl.WebhookURL != nil:
			u, err := resolve(*sl.WebhookURL)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: notify.slack.webhook_url: %w", sl.Pos, err))
				break
			}
			s, err := NewSlackWebhook(u, so)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: notify.slack: %w", sl.Pos, err))
				break
			}
			add(s, sl.Pos, "notify.slack")
		case sl.Token != nil:
			tok, err := resolve(*sl.Token)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: notify.slack.token: %w", sl.Pos, err))
				break
			}
			s, err := NewSlackBot(tok, sl.Channel, sl.APIURL, so)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: notify.slack: %w", sl.Pos, err))
				break
			}
			add(s, sl.Pos, "notify.slack")
		default:
			errs = append(errs, fmt.Errorf("%s: notify.slack: set webhook_url or token", sl.Pos))
		}
	}

	for i, wh := range spec.Webhooks {
		field := fmt.Sprintf("notify.webhooks[%d]", i)
		key, err := resolve(wh.Secret)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s.secret: %w", wh.Pos, field, err))
			continue
		}
		s, err := NewWebhook(wh.Name, wh.URL, key, WebhookOptions{Events: wh.Events, HTTPClient: opts.HTTPClient})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", wh.Pos, field, err))
			continue
		}
		add(s, wh.Pos, field)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sinks, nil
}
