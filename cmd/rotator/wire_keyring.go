package main

import (
	"fmt"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotators/keyring"
)

// keyring builds the keyring rotator of s: it needs nothing but its
// policy (the stores hold the ring; the engine reads it for generate).
func (w *wiring) keyring(s *policy.SecretSpec) (*keyring.Rotator, error) {
	lim := w.file.PublishLimit(s)
	what := ""
	if lim.Limit > 0 {
		what = fmt.Sprintf("%s of store %s", lim.What, lim.Store)
	}
	r, err := keyring.New(s.Rotator.Keyring, keyring.WithLogger(w.logger), keyring.WithValueLimit(lim.Limit, what))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.ID, err)
	}
	return r, nil
}
