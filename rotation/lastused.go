package rotation

import (
	"context"
	"time"
)

// LastUsedReporter is an optional capability of a Rotator whose target
// can say when a credential was last used (an API key provider). The
// last_used check (package checks) asks it about the old credential during
// verify; the engine itself never calls it.
type LastUsedReporter interface {
	// LastUsed reports when the credential was last used. Returns an error
	// wrapping ErrNotFound when the target does not know the credential
	// (revoked, deleted), and ErrUnsupported when it cannot tell.
	LastUsed(ctx context.Context, req LastUsedRequest) (LastUsedResponse, error)
}

// LastUsedRequest names the credential asked about.
type LastUsedRequest struct {
	SecretID   string
	Credential CredentialMeta
	// Now is the engine's clock, for targets that infer the time from a
	// usage counter they watch.
	Now time.Time
}

// LastUsedResponse says when the credential was last used.
type LastUsedResponse struct {
	// LastUsed is the last use; zero together with Never.
	LastUsed time.Time
	// Never is true when the credential has never been used.
	Never bool
}
