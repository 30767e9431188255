package main

import (
	"fmt"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotators/redis"
)

// redis builds the redis rotator of s on the wiring's shared admin clients
// (w.mu held, or the wiring used by one goroutine); the caller closes it,
// which leaves the shared client open (Close closes it).
func (w *wiring) redis(s *policy.SecretSpec) (*redis.Rotator, error) {
	spec := s.Rotator.Redis
	u, err := spec.AdminURL.Resolve()
	if err != nil {
		return nil, fmt.Errorf("secret %s: admin_url: %w", s.ID, err)
	}
	if w.redisPools == nil {
		w.redisPools = redis.NewPools()
		w.closers = append(w.closers, w.redisPools.Close)
	}
	r, err := redis.New(spec, u, redis.WithLogger(w.logger), redis.WithPools(w.redisPools))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.ID, err)
	}
	return r, nil
}
