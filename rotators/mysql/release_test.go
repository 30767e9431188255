package mysql_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/faultproxy"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
)

// TestFenceReleaseAnswerLost: the fence's RELEASE_LOCK is sent after the
// action, on a context that the action's deadline does not end (the
// release must run even when the action was cancelled). When its answer
// never comes (here a proxy holds the statement; in production a server
// or a network that stops answering), the action still returns, bounded
// by a few seconds (the rotator's release timeout), and the session is closed rather than handed
// back to the shared pool with the secret's lock: the next action of the
// secret on the same pool takes the lock on another session.
// releaseBound is the rotator's release timeout (5 s) with a margin.
const releaseBound = 15 * time.Second

func TestFenceReleaseAnswerLost(t *testing.T) {
	f := newFixture(t)
	r := f.initialized(t)
	g, err := r.Generate(ctxT(t), rotation.GenerateRequest{SecretID: "db/m", RunID: "r1", Fence: rotation.Fence{Token: 1, RunID: "r1"}})
	require.NoError(t, err)

	p, err := faultproxy.New("127.0.0.1:3306")
	require.NoError(t, err)
	t.Cleanup(p.Close)
	pools := mysql.NewPools()
	t.Cleanup(pools.Close)
	pr, err := mysql.New(f.spec(), secret.New("root@tcp("+p.Addr+")/"), mysql.WithPools(pools))
	require.NoError(t, err)
	t.Cleanup(pr.Close)

	p.HoldWhen(func(chunk []byte) bool { return bytes.Contains(chunk, []byte("RELEASE_LOCK")) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	green := rotation.CredentialMeta{Username: f.role + "_green"}
	done := make(chan error, 1)
	go func() {
		done <- pr.Retire(ctx, rotation.RetireRequest{SecretID: "db/m", Old: green, New: g.Credential.Meta(), Fence: rotation.Fence{Token: 2, RunID: "r2"}})
	}()
	select {
	case <-p.Held():
	case <-time.After(30 * time.Second):
		t.Fatal("the retire never sent RELEASE_LOCK")
	}
	select {
	case err := <-done:
		require.NoError(t, err, "the action itself was done before the release")
	case <-time.After(releaseBound):
		p.Release()
		t.Fatalf("the retire did not return %s after its RELEASE_LOCK went unanswered (its context ended long before)", releaseBound)
	}
	require.True(t, f.locked(t, green.Username))

	// The held session still holds the lock on the server until its
	// statement arrives; once it does, the next action, on the same
	// pool, takes the lock on another session.
	p.Release()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel2()
	require.NoError(t, pr.Restore(ctx2, rotation.RestoreRequest{SecretID: "db/m", Old: green, Fence: rotation.Fence{Token: 3, RunID: "r3"}}))
	require.False(t, f.locked(t, green.Username))
	require.Zero(t, lockHolder(t, f.root, f.fenceLock()))
}
