package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rotator/rotator/rotation"
)

// Test-only fault injection, for the process-level crash tests (they
// SIGKILL the binary at chosen points). Production never sets these.
//
//	ROTATOR_TEST_FAULT=pause:before:publish   at that point, print
//	                                          "ROTATOR_TEST_FAULT pause <run> <when> <step>"
//	                                          to stderr and block until killed
//	ROTATOR_TEST_FAULT=exit:after:generate    exit(137) there, cleaning nothing up
//	ROTATOR_TEST_FAULT_SECRET=db/x            only for this secret
//	ROTATOR_TEST_SLOW=20ms                    sleep this long around every rotator
//	                                          and store call (to kill at random
//	                                          points inside steps)
//	ROTATOR_LEASE_TTL=2s                      lease time-to-live (default 30s)
const (
	envFault       = "ROTATOR_TEST_FAULT"
	envFaultSecret = "ROTATOR_TEST_FAULT_SECRET"
	envSlow        = "ROTATOR_TEST_SLOW"
	envLeaseTTL    = "ROTATOR_LEASE_TTL"
)

// applyTestKnobs installs the fault hooks and the lease TTL on an engine.
func (a *app) applyTestKnobs(e *rotation.Engine) error {
	if v := os.Getenv(envLeaseTTL); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s=%q: want a positive duration such as 30s", envLeaseTTL, v)
		}
		e.LeaseTTL = d
	}
	spec := os.Getenv(envFault)
	if spec == "" {
		return nil
	}
	parts := strings.Split(spec, ":")
	if len(parts) != 3 || (parts[0] != "pause" && parts[0] != "exit") || (parts[1] != "before" && parts[1] != "after") {
		return fmt.Errorf("%s=%q: want pause|exit:before|after:STEP", envFault, spec)
	}
	action, when, step := parts[0], parts[1], parts[2]
	only := os.Getenv(envFaultSecret)
	hook := func(runID, s string) error {
		if s != step {
			return nil
		}
		if only != "" {
			r, err := e.DB.Run(context.Background(), runID)
			if err != nil || r.SecretID != only {
				return nil
			}
		}
		fmt.Fprintf(os.Stderr, "ROTATOR_TEST_FAULT %s %s %s %s\n", action, runID, when, s)
		if action == "exit" {
			os.Exit(137)
		}
		select {} // paused until the test kills the process
	}
	if when == "before" {
		e.Hooks.Before = hook
	} else {
		e.Hooks.After = hook
	}
	return nil
}

// slowDuration is ROTATOR_TEST_SLOW, zero when unset.
func slowDuration() time.Duration {
	d, _ := time.ParseDuration(os.Getenv(envSlow))
	return d
}

// slowRotator and slowStore sleep around every call (ROTATOR_TEST_SLOW).
type slowRotator struct {
	rotation.Rotator
	d time.Duration
}

func nap(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (s slowRotator) Generate(ctx context.Context, r rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	nap(ctx, s.d)
	defer nap(ctx, s.d)
	return s.Rotator.Generate(ctx, r)
}
func (s slowRotator) Retire(ctx context.Context, r rotation.RetireRequest) error {
	nap(ctx, s.d)
	defer nap(ctx, s.d)
	return s.Rotator.Retire(ctx, r)
}
func (s slowRotator) Test(ctx context.Context, r rotation.TestRequest) error {
	nap(ctx, s.d)
	return s.Rotator.Test(ctx, r)
}

type slowStore struct {
	rotation.Store
	d time.Duration
}

func (s slowStore) Stage(ctx context.Context, r rotation.StageRequest) error {
	nap(ctx, s.d)
	defer nap(ctx, s.d)
	return s.Store.Stage(ctx, r)
}
func (s slowStore) Publish(ctx context.Context, r rotation.PublishRequest) error {
	nap(ctx, s.d)
	defer nap(ctx, s.d)
	return s.Store.Publish(ctx, r)
}
