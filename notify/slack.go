package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/rotator/rotator/internal/httpclient"
	"github.com/rotator/rotator/internal/secret"
)

// SlackOptions configure both kinds of Slack sink.
type SlackOptions struct {
	// Name of the sink (default "slack").
	Name string
	// Events the sink sends (default DefaultEvents).
	Events []string
	// HTTPClient sends the requests (default: a client with no overall
	// timeout; the Notifier bounds each try). It follows no redirect that
	// leaves the origin, whatever its own policy.
	HTTPClient *http.Client
}

func (o SlackOptions) name() string {
	if o.Name == "" {
		return "slack"
	}
	return o.Name
}

// client is the sink's HTTP client: it follows no redirect that leaves
// the origin (internal/httpclient), as the requests carry the token or
// the webhook URL is itself the secret.
func (o SlackOptions) client() *http.Client { return httpclient.Safe(o.HTTPClient) }

// SlackWebhook posts Block Kit messages to a Slack incoming webhook. The
// webhook decides the channel; Event.Channel is ignored and nothing is
// threaded (incoming webhooks return no message ts).
type SlackWebhook struct {
	name   string
	url    secret.Value
	events eventFilter
	client *http.Client
	scrub  Redactor
}

var _ Sink = (*SlackWebhook)(nil)

// NewSlackWebhook returns a sink for the incoming webhook at url, which
// is secret: whoever has it can post to the channel.
func NewSlackWebhook(webhookURL secret.Value, opts SlackOptions) (*SlackWebhook, error) {
	if err := checkURL(webhookURL.Reveal()); err != nil {
		return nil, fmt.Errorf("slack webhook url: %w", err)
	}
	ev, err := newEventFilter(opts.Events)
	if err != nil {
		return nil, fmt.Errorf("slack events: %w", err)
	}
	return &SlackWebhook{
		name:   opts.name(),
		url:    webhookURL,
		events: ev,
		client: opts.client(),
		scrub:  NewRedactor(webhookURL),
	}, nil
}

// Name implements Sink.
func (s *SlackWebhook) Name() string { return s.name }

// Accepts implements Sink.
func (s *SlackWebhook) Accepts(kind Kind) bool { return s.events.accepts(kind) }

// Send implements Sink.
func (s *SlackWebhook) Send(ctx context.Context, req SendRequest) (Receipt, error) {
	text, blocks := slackMessage(req.Event)
	msg := &slack.WebhookMessage{Text: text, Blocks: &slack.Blocks{BlockSet: blocks}}
	err := slack.PostWebhookCustomHTTPContext(ctx, s.url.Reveal(), s.client, msg)
	if err != nil {
		var sc slack.StatusCodeError
		if errors.As(err, &sc) {
			// Slack answers 4xx for a revoked webhook or a bad payload;
			// retrying will not help. 408 and 429 are retried.
			err = fmt.Errorf("slack webhook: %w", err)
			if sc.Code >= 400 && sc.Code < 500 && sc.Code != http.StatusRequestTimeout && sc.Code != http.StatusTooManyRequests {
				return Receipt{StatusCode: sc.Code}, Permanent(scrubError(err, s.scrub))
			}
			return Receipt{StatusCode: sc.Code}, scrubError(err, s.scrub)
		}
		return Receipt{}, scrubError(fmt.Errorf("slack webhook: %w", err), s.scrub)
	}
	return Receipt{StatusCode: http.StatusOK}, nil
}

// SlackBot posts Block Kit messages with chat.postMessage and a bot token.
// It can thread: the resolved message of an episode replies under its
// alert.
type SlackBot struct {
	name    string
	channel string
	events  eventFilter
	api     *slack.Client
	scrub   Redactor
}

var _ Sink = (*SlackBot)(nil)

// NewSlackBot returns a sink that posts as the bot whose token is given,
// to channel unless an event names its own (Event.Channel). apiURL is
// Slack's Web API base URL; empty means https://slack.com/api/.
func NewSlackBot(token secret.Value, channel, apiURL string, opts SlackOptions) (*SlackBot, error) {
	if token.IsZero() {
		return nil, errors.New("slack token is empty")
	}
	if apiURL == "" {
		apiURL = slack.APIURL
	}
	if err := checkURL(apiURL); err != nil {
		return nil, fmt.Errorf("slack api_url: %w", err)
	}
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/" // slack-go appends the method name
	}
	ev, err := newEventFilter(opts.Events)
	if err != nil {
		return nil, fmt.Errorf("slack events: %w", err)
	}
	api := slack.New(token.Reveal(), slack.OptionAPIURL(apiURL), slack.OptionHTTPClient(opts.client()))
	return &SlackBot{
		name:    opts.name(),
		channel: channel,
		events:  ev,
		api:     api,
		scrub:   NewRedactor(token),
	}, nil
}

// Name implements Sink.
func (s *SlackBot) Name() string { return s.name }

// Accepts implements Sink.
func (s *SlackBot) Accepts(kind Kind) bool { return s.events.accepts(kind) }

// Send implements Sink. A message with a Thread goes to the thread's
// channel as a reply; otherwise to Event.Channel, else the default channel.
func (s *SlackBot) Send(ctx context.Context, req SendRequest) (Receipt, error) {
	channel := req.Event.Channel
	if channel == "" {
		channel = s.channel
	}
	opts := []slack.MsgOption{}
	if req.Thread.TS != "" && req.Thread.Channel != "" {
		channel = req.Thread.Channel
		opts = append(opts, slack.MsgOptionTS(req.Thread.TS))
	}
	if channel == "" {
		return Receipt{}, Permanent(fmt.Errorf("slack: no channel for secret %q: set notify.slack.channel or the secret's slack_channel", req.Event.SecretID))
	}
	text, blocks := slackMessage(req.Event)
	opts = append(opts,
		slack.MsgOptionText(text, false),
		slack.MsgOptionBlocks(blocks...),
		slack.MsgOptionDisableLinkUnfurl(),
	)
	ch, ts, err := s.api.PostMessageContext(ctx, channel, opts...)
	if err != nil {
		err = scrubError(fmt.Errorf("slack chat.postMessage to %s: %w", channel, err), s.scrub)
		var se slack.SlackErrorResponse
		var rl *slack.RateLimitedError
		switch {
		case errors.As(err, &rl):
			return Receipt{}, err
		case errors.As(err, &se):
			// ok:false answers (invalid_auth, channel_not_found,
			// not_in_channel...) do not change on retry.
			return Receipt{}, Permanent(err)
		}
		return Receipt{}, err
	}
	return Receipt{Channel: ch, TS: ts}, nil
}

// checkURL accepts absolute http(s) URLs.
func checkURL(raw string) error {
	if raw == "" {
		return errors.New("empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL") // url's error would quote it
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	return nil
}

// scrubbedError keeps the chain of err (errors.Is/As still work) but
// prints its message with the sink's own secrets removed: net/http quotes
// the request URL, and a Slack webhook URL is a credential.
type scrubbedError struct {
	msg string
	err error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.err }

func scrubError(err error, r Redactor) error {
	if err == nil {
		return nil
	}
	return scrubbedError{msg: r.Redact(err.Error()), err: err}
}

// Block Kit limits (docs.slack.dev/reference/block-kit).
const (
	maxHeader      = 150
	maxSectionText = 3000
	maxField       = 2000
	maxFields      = 10
	maxContextElem = 10
)

// slackMessage renders e as a notification fallback text and Block Kit
// blocks: a header, the facts as fields, the error in a code block, the
// detail, and a context block with the commands to run.
func slackMessage(e Event) (string, []slack.Block) {
	title := slackTitle(e)
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, truncate(title, maxHeader), true, false)),
	}

	var fields []*slack.TextBlockObject
	field := func(label, value string) {
		if value == "" || len(fields) == maxFields {
			return
		}
		fields = append(fields, slack.NewTextBlockObject(slack.MarkdownType,
			truncate("*"+label+"*\n"+value, maxField), false, false))
	}
	field("Secret", code(e.SecretID))
	field("Class", escape(e.Class))
	if e.Kind == KindRotationFailed || e.Kind == KindQuarantined || e.Kind == KindRollback {
		field("Failed step", escape(string(e.Step)))
	} else if e.Kind == KindCredentialBroken {
		field("Found by", escape(string(e.Step)))
	} else {
		field("Step", escape(string(e.Step)))
	}
	if e.Attempt > 0 {
		a := fmt.Sprintf("%d", e.Attempt)
		if e.MaxAttempts > 0 {
			a = fmt.Sprintf("%d of %d", e.Attempt, e.MaxAttempts)
		}
		field("Attempt", a)
	}
	if !e.NextAttempt.IsZero() {
		label := "Next try"
		if e.Kind == KindUpcoming {
			label = "Scheduled"
		}
		field(label, slackDate(e.NextAttempt))
	}
	field("Run", code(e.RunID))
	if len(fields) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil))
	}

	if e.Error != "" {
		// Leave room for the fences; a fence inside the error would end
		// the code block early.
		msg := strings.ReplaceAll(e.Error, "```", "'''")
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType,
			"```"+truncate(escape(msg), maxSectionText-6)+"```", false, false), nil, nil))
	}
	if e.Detail != "" {
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType,
			truncate(escape(e.Detail), maxSectionText), false, false), nil, nil))
	}

	var ctx []slack.MixedElement
	for i, c := range e.Commands {
		if i == maxContextElem-1 && len(e.Commands) > maxContextElem {
			ctx = append(ctx, slack.NewTextBlockObject(slack.MarkdownType,
				fmt.Sprintf("and %d more commands", len(e.Commands)-i), false, false))
			break
		}
		prefix := ""
		if i == 0 {
			prefix = "Run: "
		}
		ctx = append(ctx, slack.NewTextBlockObject(slack.MarkdownType, truncate(prefix+code(c), maxField), false, false))
	}
	if len(ctx) > 0 {
		blocks = append(blocks, slack.NewContextBlock("", ctx...))
	}

	text := title
	if e.Error != "" {
		text += ": " + truncate(e.Error, 200)
	}
	return escape(text), blocks
}

func slackTitle(e Event) string {
	switch e.Kind {
	case KindRotationFailed:
		return ":x: Rotation failed: " + e.SecretID
	case KindRollback:
		return ":leftwards_arrow_with_hook: Rolled back: " + e.SecretID
	case KindQuarantined:
		return ":no_entry: Quarantined, needs a person: " + e.SecretID
	case KindOverdue:
		return ":hourglass: Rotation overdue: " + e.SecretID
	case KindCredentialBroken:
		return ":rotating_light: Published credential does not work: " + e.SecretID
	case KindDrift:
		return ":warning: Drift, nothing touched until a person adopts: " + e.SecretID
	case KindNeedsAttention:
		return ":construction: Needs attention, a store could not be put back: " + e.SecretID
	case KindRotationSucceeded:
		return ":white_check_mark: Rotated: " + e.SecretID
	case KindUpcoming:
		return ":calendar: Rotation scheduled: " + e.SecretID
	case KindResolved:
		return ":white_check_mark: Resolved: " + e.SecretID
	case KindTest:
		return ":wave: rotator test notification"
	}
	return string(e.Kind) + ": " + e.SecretID
}

// slackDate renders t with Slack's date formatting (shown in the reader's
// time zone) and an RFC 3339 UTC fallback.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format(time.RFC3339))
}

// escape makes text safe for mrkdwn: &, < and > are control characters.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// code renders s as inline code, or "" for "".
func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + escape(strings.ReplaceAll(s, "`", "'")) + "`"
}

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
