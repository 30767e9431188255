//go:build !rotatortest

package main

import (
	"time"

	"github.com/rotator/rotator/rotation"
)

// The release build has no fault injection: ROTATOR_TEST_FAULT and
// ROTATOR_TEST_SLOW mean nothing to it (fault.go, build tag rotatortest,
// is the test build's).

// minLeaseTTL is the shortest --lease-ttl accepted: the lease is renewed
// every third of its TTL, and a shorter TTL turns a short pause of the
// process or of the state database into a lost lease.
const minLeaseTTL = 5 * time.Second

func applyTestKnobs(*rotation.Engine) error       { return nil }
func slowed(r rotation.Rotator) rotation.Rotator  { return r }
func slowedStore(s rotation.Store) rotation.Store { return s }
