package main

import (
	"fmt"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotators/redis"
)

// redis builds the redis rotator of s; the caller closes it (and with it
// its admin connections).
func (w *wiring) redis(s *policy.SecretSpec) (*redis.Rotator, error) {
	spec := s.Rotator.Redis
	u, err := spec.AdminURL.Resolve()
	if err != nil {
		return nil, fmt.Errorf("secret %s: admin_url: %w", s.ID, err)
	}
	r, err := redis.New(spec, u, redis.WithLogger(w.logger))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.ID, err)
	}
	return r, nil
}
