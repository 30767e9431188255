package rotation

import (
	"context"
	"errors"
	"fmt"
)

// Successor is an optional capability of a Rotator whose new credential
// is built from the one the stores publish now, not only beside it: a key
// ring keeps the keys still accepted and promotes the key it announced
// before. Before Generate, the engine reads the current version from the
// stores (with its secret) and passes it in GenerateRequest.Published.
// Rotators without the capability never get a published secret.
type Successor interface {
	Rotator
	// BuildsOnPublished marks the capability; it does nothing.
	BuildsOnPublished()
}

// published reads, for a Successor, the version every store agreed on
// when the run observed them (r.world): nil when no store publishes
// anything. A store that describes the version but cannot give it back is
// an error, not a nil: a successor given nothing would start afresh and
// drop what clients rely on.
func (r *runner) published(ctx context.Context) (*Credential, error) {
	cur, agree, diffs := r.world.Current()
	if cur == nil {
		return nil, nil
	}
	if !agree {
		return nil, fmt.Errorf("the stores publish different versions (%v): the credential to build on is not known", diffs)
	}
	var errs []error
	for _, p := range r.t.Publish {
		v, err := p.Store.Read(ctx, ReadRequest{Path: p.Path, Which: Current})
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("read %s: %w", p, err))
		case v.RunID != cur.RunID || v.Number != cur.Number || v.Credential.Secret.IsZero():
			errs = append(errs, fmt.Errorf("%s: now publishes version %d of run %q, observed version %d of run %q", p, v.Number, v.RunID, cur.Number, cur.RunID))
		default:
			c := v.Credential
			return &c, nil
		}
	}
	return nil, fmt.Errorf("read the published %s to build on: %w", describeVersion(cur), errors.Join(errs...))
}
