package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rotator/rotator/internal/httpclient"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/state"
)

// Headers of a webhook delivery.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed with the
	// webhook's secret, of HeaderTimestamp's value, ".", and the body.
	HeaderSignature = "X-Rotator-Signature"
	// HeaderTimestamp is the Unix time (seconds) the request was signed.
	HeaderTimestamp = "X-Rotator-Timestamp"
	// HeaderEvent is the event kind, for routing without parsing.
	HeaderEvent = "X-Rotator-Event"
	// HeaderDelivery identifies the message; it is the same on every try,
	// so a receiver can drop duplicates.
	HeaderDelivery = "X-Rotator-Delivery"
)

// PayloadVersion is the version of the webhook JSON body.
const PayloadVersion = 1

// WebhookPayload is the JSON body a webhook receives. Empty fields are
// left out; times are RFC 3339 in UTC.
type WebhookPayload struct {
	Version     int        `json:"version"`
	ID          string     `json:"id"`
	Kind        Kind       `json:"kind"`
	SecretID    string     `json:"secret_id,omitempty"`
	Class       string     `json:"class,omitempty"`
	RunID       string     `json:"run_id,omitempty"`
	Step        state.Step `json:"step,omitempty"`
	Error       string     `json:"error,omitempty"`
	Attempt     int        `json:"attempt,omitempty"`
	MaxAttempts int        `json:"max_attempts,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	Commands    []string   `json:"commands,omitempty"`
	At          time.Time  `json:"at"`
	Detail      string     `json:"detail,omitempty"`
}

func newPayload(e Event) WebhookPayload {
	p := WebhookPayload{
		Version:     PayloadVersion,
		Kind:        e.Kind,
		SecretID:    e.SecretID,
		Class:       e.Class,
		RunID:       e.RunID,
		Step:        e.Step,
		Error:       e.Error,
		Attempt:     e.Attempt,
		MaxAttempts: e.MaxAttempts,
		Commands:    e.Commands,
		At:          e.At.UTC(),
		Detail:      e.Detail,
	}
	if !e.NextAttempt.IsZero() {
		t := e.NextAttempt.UTC()
		p.NextAttempt = &t
	}
	// A stable id from the event's identity: the same on every try.
	sum := sha256.Sum256([]byte(strings.Join([]string{
		string(e.Kind), e.SecretID, e.RunID, string(e.Step), strconv.Itoa(e.Attempt), e.At.UTC().Format(time.RFC3339Nano),
	}, "\x00")))
	p.ID = hex.EncodeToString(sum[:12])
	return p
}

// WebhookOptions configure a generic webhook sink.
type WebhookOptions struct {
	// Events the sink sends (default DefaultEvents).
	Events []string
	// HTTPClient sends the requests (default: a client with no overall
	// timeout; the Notifier bounds each try). It follows no redirect that
	// leaves the origin, whatever its own policy.
	HTTPClient *http.Client
	// Now is the clock for the signature timestamp (default time.Now).
	Now func() time.Time
}

// Webhook posts each event as JSON (WebhookPayload), signed with
// HMAC-SHA256. See the package documentation for how to verify it.
type Webhook struct {
	name   string
	url    string
	key    secret.Value
	events eventFilter
	client *http.Client
	now    func() time.Time
}

var _ Sink = (*Webhook)(nil)

// NewWebhook returns a sink named name that posts to webhookURL and signs
// with hmacKey.
func NewWebhook(name, webhookURL string, hmacKey secret.Value, opts WebhookOptions) (*Webhook, error) {
	if name == "" {
		return nil, errors.New("webhook name is empty")
	}
	if err := checkURL(webhookURL); err != nil {
		return nil, fmt.Errorf("webhook %q url: %w", name, err)
	}
	if hmacKey.IsZero() {
		return nil, fmt.Errorf("webhook %q: the signing secret is empty", name)
	}
	ev, err := newEventFilter(opts.Events)
	if err != nil {
		return nil, fmt.Errorf("webhook %q events: %w", name, err)
	}
	// No redirect leaves the origin (internal/httpclient): a signed
	// payload may hold resolved secrets' context and goes where it is
	// configured to, nowhere else.
	w := &Webhook{name: name, url: webhookURL, key: hmacKey, events: ev, client: httpclient.Safe(opts.HTTPClient), now: opts.Now}
	if w.now == nil {
		w.now = time.Now
	}
	return w, nil
}

// Name implements Sink.
func (w *Webhook) Name() string { return w.name }

// Accepts implements Sink.
func (w *Webhook) Accepts(kind Kind) bool { return w.events.accepts(kind) }

// Send implements Sink. A 2xx answer is success; 4xx other than 408 and
// 429 is permanent; anything else is retried.
func (w *Webhook) Send(ctx context.Context, req SendRequest) (Receipt, error) {
	p := newPayload(req.Event)
	body, err := json.Marshal(p)
	if err != nil {
		return Receipt{}, Permanent(fmt.Errorf("webhook %q: encode: %w", w.name, err))
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		// The error would quote the whole URL, which may carry a token.
		return Receipt{}, Permanent(fmt.Errorf("webhook %q: cannot build a request to %s", w.name, safeURL(w.url)))
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "rotator-notify/1")
	hr.Header.Set(HeaderTimestamp, ts)
	hr.Header.Set(HeaderSignature, Sign(w.key, ts, body))
	hr.Header.Set(HeaderEvent, string(p.Kind))
	hr.Header.Set(HeaderDelivery, p.ID)
	resp, err := w.client.Do(hr)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// Say where without the query string or user info, which
			// may carry a token.
			return Receipt{}, scrubbedError{
				msg: fmt.Sprintf("webhook %q: %s %s: %v", w.name, ue.Op, safeURL(w.url), ue.Err),
				err: err,
			}
		}
		return Receipt{}, fmt.Errorf("webhook %q: %w", w.name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	rc := Receipt{StatusCode: resp.StatusCode}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return rc, nil
	}
	err = fmt.Errorf("webhook %q: %s answered HTTP %d", w.name, safeURL(w.url), resp.StatusCode)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 &&
		resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return rc, Permanent(err)
	}
	return rc, err
}

func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// Sign returns the X-Rotator-Signature value for a body sent at
// timestamp (Unix seconds, as in X-Rotator-Timestamp):
// "sha256=" + hex(HMAC-SHA256(key, timestamp + "." + body)).
func Sign(key secret.Value, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key.Reveal()))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Errors of VerifySignature.
var (
	ErrBadSignature = errors.New("signature does not match")
	ErrStale        = errors.New("timestamp outside the allowed window")
)

// VerifySignature checks a delivery as a receiver should: the signature
// must match the timestamp and body under key (compared in constant
// time), and the timestamp must be within tolerance of now, so a captured
// request cannot be replayed later. Receivers in other languages do the
// same: recompute the HMAC over timestamp + "." + raw body.
func VerifySignature(key secret.Value, timestamp string, body []byte, signature string, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not a Unix time", ErrStale, timestamp)
	}
	want := Sign(key, timestamp, body)
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s ago", ErrStale, d.Round(time.Second))
	}
	return nil
}
