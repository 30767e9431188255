package rotation

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rotator/rotator/internal/secret"
)

// Target is one managed secret as the engine sees it: built from the policy
// by the caller (cmd/rotator) with the rotator, stores and checks it names.
type Target struct {
	ID    string
	Class string
	// Rotator does the target-side work.
	Rotator Rotator
	// Publish lists where each version goes, in order.
	Publish []Publication
	// Checks decide when clients moved (besides Rotator.Clients).
	Checks []Check
	// Grace bounds the verify step; OnTimeout ("hold" or "proceed") says
	// what happens when it ends with clients still on the old credential.
	Grace     time.Duration
	OnTimeout string
	// Monitor is how long the new credential is re-tested after retire.
	Monitor time.Duration
	// Terminate ends sessions still open on the old credential at retire.
	Terminate bool
	// Retry bounds the tries of each external action.
	Retry Retry
	// ClientsInterval is how often verify asks Rotator.Clients again
	// while clients remain (default DefaultPoll; policies.yaml's sessions
	// check sets it).
	ClientsInterval time.Duration
	// Poll, when set, replaces the interval of every polling check (and
	// ClientsInterval) and is the monitor step's pace (default
	// DefaultPoll). It is a knob for tests: the CLI and the daemon never
	// set it; users set each check's interval in policies.yaml. Verify
	// never waits past a delay check's end or the grace, whatever it is.
	Poll time.Duration
	// Channel is a Slack channel override for this secret's events.
	Channel string
	// Server groups targets that share a server (a Postgres host:port), so
	// a tick can bound the rotations running against one server.
	Server string

	// NextDue computes when the secret is due again after a success at t
	// (nil: the engine records no due time). daemon.Schedule sets it (and
	// RetryAt) from schedule.Rule.Due, the one function of due times.
	NextDue func(lastSuccess time.Time) time.Time
	// RetryAt computes when a secret whose run failed is tried again, from
	// the time the failed attempt began (the run's started_at); nil: its
	// due time is left as it was.
	RetryAt func(failedAttempt time.Time) time.Time
	// Allowed reports whether a new rotation may start at t (its window).
	// Unfinished runs are always advanced. Nil allows any time.
	Allowed func(t time.Time) bool
	// QuarantineAfter stops automatic attempts after this many
	// consecutive failed runs (0: never).
	QuarantineAfter int

	// Redact lists the secrets the target's configuration resolved (an
	// admin DSN's password in its forms, a management key): the runner
	// removes them, like the credential itself, from every text it
	// journals, logs or sends.
	Redact []secret.Value
}

// Publication is one store path a secret is published to.
type Publication struct {
	StoreName string
	Path      string
	Store     Store
}

// String names it as store:path.
func (p Publication) String() string { return p.StoreName + ":" + p.Path }

// Retry bounds retries: Attempts tries in all, waiting Initial, then twice
// as long each time, at most Max.
type Retry struct {
	Attempts int
	Initial  time.Duration
	Max      time.Duration
}

func (r Retry) normalized() Retry {
	if r.Attempts < 1 {
		r.Attempts = 1
	}
	if r.Initial <= 0 {
		r.Initial = time.Second
	}
	if r.Max < r.Initial {
		r.Max = r.Initial
	}
	return r
}

// Delay is the plain grace-delay check: it passes once D has passed since
// the new version was published.
type Delay struct{ D time.Duration }

// Name implements Check.
func (d Delay) Name() string { return "delay " + d.D.String() }

// Check implements Check.
func (d Delay) Check(_ context.Context, req CheckRequest) (CheckResult, error) {
	ready := req.PublishedAt.Add(d.D)
	if !req.Now.Before(ready) {
		return CheckResult{Passed: true}, nil
	}
	return CheckResult{Detail: fmt.Sprintf("waiting until %s (%s after publish)", ready.UTC().Format(time.RFC3339), d.D), RecheckAt: ready}, nil
}

var _ Check = Delay{}

// redactAll replaces every one of values in s, whatever its length (the
// resolved secrets of a target are given in all their forms, longest
// first).
func redactAll(s string, values []secret.Value) string {
	for _, v := range values {
		if p := v.Reveal(); p != "" {
			s = strings.ReplaceAll(s, p, secret.Redacted)
		}
	}
	return s
}

// Redact replaces every occurrence of the given secrets in s by REDACTED.
// The engine passes every error text through it before it is journaled,
// logged or sent, as a second line of defence behind the seams' own
// promise never to put a secret in an error. The forms a derived field's
// template writes a secret in (URL user info, path and query escaping)
// are replaced too.
func Redact(s string, values ...secret.Value) string {
	for _, v := range values {
		if p := v.Reveal(); len(p) >= 4 {
			s = strings.ReplaceAll(s, p, secret.Redacted)
			for _, f := range escapedForms(p) {
				s = strings.ReplaceAll(s, f, secret.Redacted)
			}
		}
	}
	return s
}
