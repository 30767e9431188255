package checks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rotator/rotator/rotation"
)

// LastUsed passes once the old credential has not been used for
// UnusedFor, as the rotator's target reports it.
type LastUsed struct {
	Reporter  rotation.LastUsedReporter
	UnusedFor time.Duration
	// Interval is how often the provider is asked again while the key is
	// in use (0: the engine's default). The check is asked again sooner
	// when the key, unused since, would pass before then.
	Interval time.Duration
}

var (
	_ rotation.Check  = (*LastUsed)(nil)
	_ rotation.Poller = (*LastUsed)(nil)
)

// PollInterval implements rotation.Poller.
func (l *LastUsed) PollInterval() time.Duration { return l.Interval }

// Name implements rotation.Check.
func (l *LastUsed) Name() string { return "old key unused for " + l.UnusedFor.String() }

// Check implements rotation.Check. An old credential that is unknown to
// the target (gone already), never used, or without an id (nothing to ask
// about) passes.
func (l *LastUsed) Check(ctx context.Context, req rotation.CheckRequest) (rotation.CheckResult, error) {
	if req.Old.KeyID == "" {
		return rotation.CheckResult{Passed: true, Detail: "the old credential has no key id to ask about"}, nil
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	resp, err := l.Reporter.LastUsed(ctx, rotation.LastUsedRequest{SecretID: req.SecretID, Credential: req.Old, Now: now})
	switch {
	case errors.Is(err, rotation.ErrNotFound):
		return rotation.CheckResult{Passed: true, Detail: "the old key no longer exists"}, nil
	case err != nil:
		return rotation.CheckResult{}, err
	case resp.Never:
		return rotation.CheckResult{Passed: true, Detail: "the old key was never used"}, nil
	}
	ready := resp.LastUsed.Add(l.UnusedFor)
	if !now.Before(ready) {
		return rotation.CheckResult{Passed: true}, nil
	}
	res := rotation.CheckResult{Detail: fmt.Sprintf("%s was last used at %s; waiting until %s",
		req.Old, resp.LastUsed.UTC().Format(time.RFC3339), ready.UTC().Format(time.RFC3339))}
	if l.Interval > 0 && ready.Before(now.Add(l.Interval)) {
		// Unused until then, it passes at ready: look exactly then.
		res.RecheckAt = ready
	}
	return res, nil
}
