package rotation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// delayedPublish wraps a store: the first Publish is held "on the wire"
// until released, then lands whatever happened to the sender meanwhile (a
// delayed packet: its context can no longer stop it).
type delayedPublish struct {
	rotation.Store
	once    sync.Once
	held    chan rotation.PublishRequest
	release chan struct{}
	landed  chan error
}

func (d *delayedPublish) Publish(ctx context.Context, req rotation.PublishRequest) error {
	first := false
	d.once.Do(func() { first = true })
	if !first {
		return d.Store.Publish(ctx, req)
	}
	d.held <- req
	<-d.release
	err := d.Store.Publish(context.WithoutCancel(ctx), req)
	d.landed <- err
	return err
}

// heldPublish starts process A (e's engine) on target with its only
// publication to store at path wrapped in a delayedPublish, and waits
// until A's publish is held: it returns the held request, the wrapper (to
// release it), and A's end.
func heldPublish(t *testing.T, e *env, target rotation.Target, name, path string, store rotation.Store) (rotation.PublishRequest, *delayedPublish, chan error) {
	t.Helper()
	d := &delayedPublish{Store: store, held: make(chan rotation.PublishRequest, 1), release: make(chan struct{}), landed: make(chan error, 1)}
	target.Publish = []rotation.Publication{{StoreName: name, Path: path, Store: d}}
	doneA := make(chan error, 1)
	go func() {
		_, err := e.engine.Run(e.ctx, target, rotation.Options{Wait: true})
		doneA <- err
	}()
	select {
	case req := <-d.held:
		return req, d, doneA
	case err := <-doneA:
		t.Fatalf("process A ended before it published: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("process A did not publish")
	}
	return rotation.PublishRequest{}, nil, nil
}

// TestStalePublishRefusedByTheStore: process A observes the world (version
// R0 published), re-keys the standby and sends its publish, which is
// delayed. A's lease runs out; process B takes it, finishes A's run and
// completes a rotation of its own (R2, which retires the role of A's
// run). Then A's publish lands: the store refuses it, because what it
// publishes (R2) is not what A observed (R0). The published credential
// still logs in; without the store's check A's version (a role R2
// retired) would be current and nobody could log in.
func TestStalePublishRefusedByTheStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.engine.LeaseTTL = 10 * time.Minute // A never renews during the test
	r0 := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, r0.Status)

	req, d, doneA := heldPublish(t, e, e.target, "local", "db/postgres.json", e.store)
	require.NotNil(t, req.Expect, "the engine's publish carries what it observed")
	require.Equal(t, r0.RunID, req.Expect.RunID, "A observed R0 as current")
	r1 := req.Version.RunID

	// A's lease runs out (A is paused, its state connection frozen); B
	// takes over, finishes A's run, then rotates again.
	e.expireLease()
	b := &rotation.Engine{DB: e.db, Key: e.key, Logger: e.engine.Logger, Holder: "B-" + t.Name(), LeaseTTL: 10 * time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }}
	resB, err := b.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.NoError(t, err)
	require.Equal(t, r1, resB.RunID, "B resumed A's run")
	require.Equal(t, state.RunSucceeded, resB.Status)
	res2, err := b.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, res2.Status)
	r2 := res2.RunID
	require.NoError(t, e.publishedWorks())

	// A's delayed publish lands now.
	close(d.release)
	landed := <-d.landed
	require.ErrorIs(t, landed, rotation.ErrStoreMoved, "the store refuses A's stale publish")
	require.ErrorIs(t, landed, rotation.ErrFenced)
	require.True(t, rotation.IsPermanent(landed))
	require.ErrorContains(t, landed, r0.RunID, "the refusal names what A expected")
	require.ErrorContains(t, landed, r2, "and what the store holds")
	errA := <-doneA
	require.Error(t, errA, "A stops: it has lost its lease and its publish was refused")
	t.Logf("A's publish: %v; A returned: %v", landed, errA)

	cur := e.published()
	require.Equal(t, r2, cur.RunID, "B's version is still current")
	prev, err := e.store.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json", Which: rotation.Previous})
	require.NoError(t, err)
	require.Equal(t, r1, prev.RunID, "previous is intact")
	require.NoError(t, e.publishedWorks(), "the published credential logs in")
	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	for _, r := range runs {
		require.Equal(t, state.RunSucceeded, r.Status, "run %s", r.ID)
	}
	e.noPlaintext(landed.Error(), errA.Error())
}
