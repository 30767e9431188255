package proof_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/faultproxy"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// newFaultProxy starts a faultproxy to the host:port of dsn and returns it
// with dsn rewritten to go through it.
func newFaultProxy(t *testing.T, dsn string) (*faultproxy.Proxy, string) {
	t.Helper()
	p, err := faultproxy.New(hostPort(dsn))
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p, strings.Replace(dsn, hostPort(dsn), p.Addr, 1)
}

// staleProcess is one rotator process in-process: its own state and admin
// connections (through the given DSNs), sharing the state database, the
// state key and the files store with the others.
func staleProcess(t *testing.T, tg *target, stateDSN, adminDSN, dir string, key *seal.Key, holder string, ttl time.Duration) (*rotation.Engine, rotation.Target) {
	t.Helper()
	ctx := context.Background()
	db, err := state.Open(ctx, stateDSN)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("PROOF_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("process", holder)
	}
	spec := &policy.PostgresSpec{Role: tg.role, Mode: policy.ModeBlueGreen, Connection: map[string]string{"database": dbName(tg.dsn)}}
	rot, err := postgres.New(spec, secret.New(adminDSN), postgres.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(rot.Close)
	store, err := files.New(&policy.FilesSpec{Dir: dir}, "")
	require.NoError(t, err)
	e := &rotation.Engine{DB: db, Key: key, Logger: logger, Holder: holder, LeaseTTL: ttl}
	tgt := rotation.Target{
		ID: "db/postgres", Class: "database", Rotator: rot,
		Publish: []rotation.Publication{{StoreName: "local", Path: "db/postgres.json", Store: store}},
		Grace:   30 * time.Second, OnTimeout: "hold", Monitor: 0,
		Retry: rotation.Retry{Attempts: 3, Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		Poll:  20 * time.Millisecond,
	}
	return e, tgt
}

// TestDelayedRekeyIsRefused is the delayed-packet case of issue 12: a proxy
// between process A and the target holds the packet carrying A's re-key
// statement; A's state connection is frozen, so A cannot renew and its
// lease expires; process B takes the lease, resumes the run and completes
// it (publishes the re-keyed standby, retires the old role). Then the held
// packet is delivered: the server refuses it (the fence's SQLSTATE RTF01)
// and the published credential still logs in.
func TestDelayedRekeyIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tg := newTarget(t, "delay")
	stateDSN := newStateDSN(t)
	dir := t.TempDir()
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	key, err := seal.Parse(keyText)
	require.NoError(t, err)
	const ttl = 2 * time.Second

	targetProxy, adminViaProxy := newFaultProxy(t, tg.dsn)
	stateProxy, stateViaProxy := newFaultProxy(t, stateDSN)
	a, aTarget := staleProcess(t, tg, stateViaProxy, adminViaProxy, dir, key, "process-a", ttl)
	b, bTarget := staleProcess(t, tg, stateDSN, tg.dsn, dir, key, "process-b", ttl)
	_, err = a.DB.Migrate(ctx)
	require.NoError(t, err)
	_, err = aTarget.Rotator.(*postgres.Rotator).Init(ctx)
	require.NoError(t, err)

	// A first rotation (by B), so that A's delayed statement re-keys the
	// standby of a real pair.
	res, err := b.Run(ctx, bTarget, rotation.Options{Wait: true})
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, res.Status)
	w := &engineWorld{t: t, tg: tg, dir: dir}
	first := w.publishedLogsIn("after the first rotation")

	// A starts the second rotation; its re-key statement is held.
	targetProxy.HoldWhen(func(b []byte) bool {
		return bytes.Contains(b, []byte("rotator_fence")) && bytes.Contains(b, []byte(":rekey"))
	})
	aDone := make(chan error, 1)
	started := time.Now()
	go func() {
		_, err := a.Run(ctx, aTarget, rotation.Options{Wait: true})
		aDone <- err
	}()
	select {
	case <-targetProxy.Held():
	case err := <-aDone:
		t.Fatalf("A ended before its re-key was held: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("A never sent its re-key")
	}
	// A's state connection freezes: no renewal reaches the database.
	stateProxy.Freeze()
	defer stateProxy.Thaw()
	var aErr error
	select {
	case aErr = <-aDone:
	case <-time.After(time.Minute):
		t.Fatal("A did not stop after it could not renew its lease")
	}
	aStopped := time.Since(started)
	require.ErrorIs(t, aErr, state.ErrLeaseLost, "A stops on its own when renewals fail")

	// B waits for A's lease to expire, takes it, resumes A's run and
	// completes it.
	var bRes rotation.Result
	for {
		bRes, err = b.Run(ctx, bTarget, rotation.Options{Wait: true})
		if !errors.Is(err, rotation.ErrBusy) {
			break
		}
		require.Less(t, time.Since(started), time.Minute, "A's lease never expired")
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, bRes.Status)
	require.True(t, bRes.Resumed, "B resumed A's run")
	second := w.publishedLogsIn("after B completed the rotation")
	require.NotEqual(t, first.User, second.User)
	require.Equal(t, []string{second.User}, tg.loginRoles())
	bDone := time.Since(started)

	// The held packet arrives now.
	targetProxy.Release()
	done := make(chan struct{})
	time.AfterFunc(30*time.Second, func() { close(done) })
	reply, err := targetProxy.Reply(done)
	require.NoError(t, err)
	require.Contains(t, string(reply), "RTF01", "the server refused the late statement with the fence's SQLSTATE")
	delivered := time.Since(started)

	third := w.publishedLogsIn("after the delayed statement arrived")
	require.Equal(t, second, third)
	require.Equal(t, []string{second.User}, tg.loginRoles())
	t.Logf("A held at the target; A stopped itself after %s; B completed at %s; the held statement delivered at %s and refused (RTF01); published %s logs in",
		aStopped.Round(time.Millisecond), bDone.Round(time.Millisecond), delivered.Round(time.Millisecond), second.User)
	fmt.Fprintf(os.Stderr, "PROOF delayed-packet: a_stopped=%s b_completed=%s delivered=%s refused=RTF01 published=%s logs_in=yes\n",
		aStopped.Round(time.Millisecond), bDone.Round(time.Millisecond), delivered.Round(time.Millisecond), second.User)
}
