package main

import (
	"context"
	"fmt"

	"github.com/rotator/rotator/checks"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
)

// apiKey builds the http_api rotator of s. The management credential is
// read at each use: from its reference, or from the current version of
// another managed secret in that secret's first store.
func (w *wiring) apiKey(s *policy.SecretSpec) (*apikey.Provider, error) {
	spec := s.Rotator.HTTPAPI
	var mgmt func(ctx context.Context) (secret.Value, error)
	switch {
	case spec.Management != nil:
		ref := *spec.Management
		mgmt = func(context.Context) (secret.Value, error) { return ref.Resolve() }
	case spec.ManagementSecret != "":
		other, ok := w.file.Secret(spec.ManagementSecret)
		if !ok || len(other.Publish) == 0 {
			return nil, fmt.Errorf("secret %s: management_secret %q is not a secret with a store in %s", s.ID, spec.ManagementSecret, w.file.Path)
		}
		pub := other.Publish[0]
		// Stores are built once per wiring; building it here keeps the
		// wiring's map out of the rotation's goroutines.
		st, err := w.publication(context.Background(), other, pub)
		if err != nil {
			return nil, fmt.Errorf("secret %s: management_secret %s: %w", s.ID, spec.ManagementSecret, err)
		}
		mgmt = func(ctx context.Context) (secret.Value, error) {
			v, err := st.Read(ctx, rotation.ReadRequest{Path: pub.Path, Which: rotation.Current})
			if err != nil {
				return secret.Value{}, fmt.Errorf("read management_secret %s from %s:%s: %w", spec.ManagementSecret, pub.Store, pub.Path, err)
			}
			return v.Credential.Secret, nil
		}
	}
	p, err := apikey.New(apikey.Config{Spec: spec, Management: mgmt, Logger: w.logger})
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.ID, err)
	}
	return p, nil
}

// checkFor builds one check of a secret; r is its rotator (nil for a dry
// run, where only the check's name is used).
func checkFor(s *policy.SecretSpec, c *policy.CheckSpec, r rotation.Rotator) (rotation.Check, error) {
	switch {
	case c.Delay != nil:
		return rotation.Delay{D: c.Delay.D()}, nil
	case c.HTTP != nil:
		h := &checks.HTTP{URLs: c.HTTP.URLs, Match: c.HTTP.Match, JSONPath: c.HTTP.JSONPath, Header: c.HTTP.Header}
		if c.HTTP.Timeout != nil {
			h.Timeout = c.HTTP.Timeout.D()
		}
		if c.HTTP.Interval != nil {
			h.Interval = c.HTTP.Interval.D()
		}
		return h, nil
	case c.LastUsed != nil:
		l := &checks.LastUsed{UnusedFor: c.LastUsed.UnusedFor.D()}
		if c.LastUsed.Interval != nil {
			l.Interval = c.LastUsed.Interval.D()
		}
		if r != nil {
			rep, ok := r.(rotation.LastUsedReporter)
			if !ok {
				return nil, fmt.Errorf("secret %s: check last_used (%s): its rotator cannot say when a key was last used", s.ID, c.Pos)
			}
			l.Reporter = rep
		}
		return l, nil
	}
	return nil, fmt.Errorf("secret %s: check at %s has no kind", s.ID, c.Pos)
}
