package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/state"
)

// Kind names what an event is about. The names are policy's (the
// policy.Event* names policies.yaml may list under notify events); this
// type is the only one that carries them in code.
type Kind string

// Event kinds.
const (
	KindRotationFailed    Kind = policy.EventRotationFailed
	KindRollback          Kind = policy.EventRollback
	KindQuarantined       Kind = policy.EventQuarantined
	KindOverdue           Kind = policy.EventOverdue
	KindRotationSucceeded Kind = policy.EventRotationSucceeded
	KindUpcoming          Kind = policy.EventUpcoming
	KindResolved          Kind = policy.EventResolved
	// KindCredentialBroken: a published credential does not work (rotator
	// check, scheduled in the daemon).
	KindCredentialBroken Kind = policy.EventCredentialBroken
	// KindDrift: the state database and the stores disagree.
	KindDrift Kind = policy.EventDrift
	// KindNeedsAttention: a failed run's compensation is incomplete.
	KindNeedsAttention Kind = policy.EventNeedsAttention
	// KindTest is the kind of the message `rotator notify test` sends.
	// Sinks always deliver it, whatever their event filter.
	KindTest Kind = "test"
)

// DefaultEvents are the kinds a sink sends when its policy names none.
var DefaultEvents = []Kind{KindRotationFailed, KindRollback, KindQuarantined, KindOverdue, KindCredentialBroken,
	KindDrift, KindNeedsAttention, KindResolved}

// knownKinds are the event kinds policies.yaml may name.
var knownKinds = []Kind{KindRotationFailed, KindRollback, KindQuarantined, KindOverdue,
	KindRotationSucceeded, KindUpcoming, KindResolved, KindCredentialBroken, KindDrift, KindNeedsAttention}

// alertKinds open (or extend) a failure episode; the next
// rotation_succeeded for the secret resolves it.
var alertKinds = []Kind{KindRotationFailed, KindRollback, KindQuarantined, KindOverdue, KindCredentialBroken,
	KindDrift, KindNeedsAttention}

func isAlert(kind Kind) bool { return slices.Contains(alertKinds, kind) }

// Event is something a person should hear about: the engine emits it (it
// is the engine's event type too), the daemon's announcer emits overdue
// and upcoming, and the Notifier delivers it. Only Kind and SecretID are
// required. No field may hold secret material: the engine redacts Error and
// Detail, and the Notifier redacts every free-text field again (see
// Redactor) before the event is queued.
type Event struct {
	// Kind is what happened.
	Kind Kind
	// SecretID is the managed secret (db/postgres).
	SecretID string
	// Class is the secret's class (database).
	Class string
	// RunID is the rotation run the event is about.
	RunID string
	// Step is the step that failed (generate, publish, verify, retire,
	// monitor).
	Step state.Step
	// Error is what went wrong, already redacted by the engine.
	Error string
	// Attempt is the try that failed (1-based); MaxAttempts the number of
	// tries allowed. Zero when not applicable.
	Attempt, MaxAttempts int
	// NextAttempt is when the engine will try again (for upcoming: when the
	// rotation is scheduled). Zero: not scheduled.
	NextAttempt time.Time
	// Channel overrides the Slack channel of a bot-token sink for this
	// event: the secret's or its class's slack_channel. Incoming webhooks
	// are bound to one channel by Slack and ignore it.
	Channel string
	// Commands are the exact commands a person can run to retry or roll
	// back ("rotator run --secret db/postgres").
	Commands []string
	// At is when it happened; the Notifier sets it to now when zero.
	At time.Time
	// Detail is free text for people (what was rolled back, how overdue).
	Detail string
	// Redactor, when set, is applied with the Notifier's own to the
	// free-text fields: the engine passes one that knows the run's
	// generated secrets. It is never sent.
	Redactor Redactor
}

// Receipt is what a sink's destination answered to a message.
type Receipt struct {
	// Channel is the Slack channel id the message was posted to (bot mode).
	Channel string
	// TS is the Slack message timestamp (bot mode): the id a reply threads
	// under.
	TS string
	// StatusCode is the HTTP status a webhook answered.
	StatusCode int
}

// IsZero reports whether r records nothing.
func (r Receipt) IsZero() bool { return r == Receipt{} }

// String describes the receipt for `rotator notify test` and logs.
func (r Receipt) String() string {
	switch {
	case r.TS != "":
		return fmt.Sprintf("posted to %s (ts %s)", r.Channel, r.TS)
	case r.StatusCode != 0:
		return fmt.Sprintf("HTTP %d", r.StatusCode)
	}
	return "(no answer)"
}

// SendRequest is one message for a sink.
type SendRequest struct {
	// Event is the redacted event to render.
	Event Event
	// Thread is the receipt of the alert this message follows up (a
	// resolved message); zero for a top-level message. Sinks that can
	// thread (Slack bot) reply under it; others ignore it.
	Thread Receipt
}

// Sink delivers messages to one destination. Send makes one attempt: the
// Notifier owns retries, timeouts and event filtering, and calls Send from
// one goroutine per sink, in the order events were notified.
type Sink interface {
	// Name identifies the sink in metrics, logs and test results; it is
	// unique within a Notifier and never secret.
	Name() string
	// Accepts reports whether the sink sends events of this kind.
	Accepts(kind Kind) bool
	// Send delivers one message. An error wrapped with Permanent stops
	// the retries (bad token, unknown channel, HTTP 4xx).
	Send(ctx context.Context, req SendRequest) (Receipt, error)
}

// permanentError marks an error that retrying will not fix. It is the one
// marker of the module: rotation.Permanent is this one too, so a store, a
// rotator and a sink mark errors alike and both retry loops (the engine's
// and the Notifier's) honour them.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the Notifier does not retry the send (and the
// engine does not retry the action).
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or anything it wraps) was marked
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// eventFilter is the set of kinds a sink sends.
type eventFilter []Kind

// newEventFilter validates kinds; nil or empty means DefaultEvents.
func newEventFilter(kinds []string) (eventFilter, error) {
	if len(kinds) == 0 {
		return eventFilter(slices.Clone(DefaultEvents)), nil
	}
	f := make(eventFilter, 0, len(kinds))
	for _, k := range kinds {
		if !slices.Contains(knownKinds, Kind(k)) {
			return nil, fmt.Errorf("unknown event %q (expected one of %v)", k, knownKinds)
		}
		f = append(f, Kind(k))
	}
	return f, nil
}

func (f eventFilter) accepts(kind Kind) bool {
	return kind == KindTest || slices.Contains(f, kind)
}
