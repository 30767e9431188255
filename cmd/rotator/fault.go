//go:build rotatortest

package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// Test-only fault injection, for the process-level crash tests (they
// SIGKILL the binary at chosen points). It is compiled only with the
// rotatortest build tag, which internal/clitest passes; the release binary
// (make build) has none of it (fault_release.go).
//
//	ROTATOR_TEST_FAULT=pause:before:publish   at that point, print
//	                                          "ROTATOR_TEST_FAULT pause <run> <when> <step>"
//	                                          to stderr and block until killed
//	ROTATOR_TEST_FAULT=exit:after:generate    exit(137) there, cleaning nothing up
//	ROTATOR_TEST_FAULT=stop:after:publish     print "ROTATOR_TEST_FAULT stop <run> <when> <step>"
//	                                          and stop (SIGSTOP) the process the first
//	                                          time; the test changes the world, then
//	                                          sends SIGCONT and the run goes on
//	ROTATOR_TEST_FAULT_SECRET=db/x            only for this secret
//	ROTATOR_TEST_SLOW=20ms                    sleep this long around every rotator
//	                                          and store call (to kill at random
//	                                          points inside steps)
//
// The crash tests also let a killed process's lease expire within a
// second, so this build accepts a --lease-ttl down to minLeaseTTL.
const (
	envFault       = "ROTATOR_TEST_FAULT"
	envFaultSecret = "ROTATOR_TEST_FAULT_SECRET"
	envSlow        = "ROTATOR_TEST_SLOW"
)

// minLeaseTTL is the shortest --lease-ttl this (test) build accepts.
const minLeaseTTL = 500 * time.Millisecond

// applyTestKnobs installs the fault hooks on an engine.
func applyTestKnobs(e *rotation.Engine) error {
	spec := os.Getenv(envFault)
	if spec == "" {
		return nil
	}
	parts := strings.Split(spec, ":")
	if len(parts) != 3 || (parts[0] != "pause" && parts[0] != "exit" && parts[0] != "stop") || (parts[1] != "before" && parts[1] != "after") {
		return fmt.Errorf("%s=%q: want pause|exit|stop:before|after:STEP", envFault, spec)
	}
	action, when, step := parts[0], parts[1], parts[2]
	only := os.Getenv(envFaultSecret)
	var stopped atomic.Bool
	hook := func(runID string, s state.Step) error {
		if string(s) != step || (action == "stop" && stopped.Load()) {
			return nil
		}
		if only != "" {
			r, err := e.DB.Run(context.Background(), runID)
			if err != nil || r.SecretID != only {
				return nil
			}
		}
		fmt.Fprintf(os.Stderr, "ROTATOR_TEST_FAULT %s %s %s %s\n", action, runID, when, s)
		switch action {
		case "exit":
			os.Exit(137)
		case "stop":
			stopped.Store(true)
			return syscall.Kill(os.Getpid(), syscall.SIGSTOP)
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

// slowed wraps a rotator so it sleeps around every call (ROTATOR_TEST_SLOW).
func slowed(r rotation.Rotator) rotation.Rotator {
	if d := slowDuration(); d > 0 {
		return slowRotator{Rotator: r, d: d}
	}
	return r
}

// slowedStore wraps a store so it sleeps around every call (ROTATOR_TEST_SLOW).
func slowedStore(s rotation.Store) rotation.Store {
	if d := slowDuration(); d > 0 {
		return slowStore{Store: s, d: d}
	}
	return s
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

// Unwrap returns the store it slows (for a shared document's DocStore).
func (s slowStore) Unwrap() rotation.Store { return s.Store }

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
