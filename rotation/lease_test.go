package rotation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// TestTwoRunsInOneProcessAreExcluded: two concurrent runs of one secret in
// one process (one Engine, one Holder) do not share the lease: the second
// says busy and names the first run's holder.
func TestTwoRunsInOneProcessAreExcluded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	inside := make(chan struct{})
	release := make(chan struct{})
	e.engine.Hooks.Before = func(_ string, step state.Step) error {
		if step == state.StepGenerate {
			close(inside)
			<-release
		}
		return nil
	}
	first := make(chan error, 1)
	go func() {
		_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
		first <- err
	}()
	select {
	case <-inside:
	case <-time.After(30 * time.Second):
		t.Fatal("the first run did not reach generate")
	}
	_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.ErrorIs(t, err, rotation.ErrBusy)
	require.ErrorContains(t, err, "held by test-"+t.Name()+"/")
	close(release)
	require.NoError(t, <-first)
	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, state.RunSucceeded, runs[0].Status)
	require.NoError(t, e.publishedWorks())
}

// slowGenerate wraps a rotator: Generate reports its context and waits for
// it to end, as an action stuck at a target would.
type slowGenerate struct {
	rotation.Rotator
	started chan time.Time // when Generate was called
	dl      chan time.Time // its deadline
	ended   chan time.Time // when its context ended
	cause   chan error     // why
}

func (s *slowGenerate) Generate(ctx context.Context, _ rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	s.started <- time.Now()
	dl, _ := ctx.Deadline()
	s.dl <- dl
	<-ctx.Done()
	s.ended <- time.Now()
	s.cause <- context.Cause(ctx)
	return rotation.GenerateResponse{}, ctx.Err()
}

// TestFrozenStateConnectionStopsTheAction: when renewals cannot reach the
// state database (here: another session locks the lease row, so each
// renewal hangs until its deadline), the in-flight target action's context
// ends before the lease could expire, and the run returns "lease lost"
// without failing the rotation.
func TestFrozenStateConnectionStopsTheAction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const ttl = 1500 * time.Millisecond
	e.engine.LeaseTTL = ttl
	e.engine.ActionTimeout = time.Minute
	slow := &slowGenerate{Rotator: e.target.Rotator, started: make(chan time.Time, 1), ended: make(chan time.Time, 1),
		cause: make(chan error, 1), dl: make(chan time.Time, 1)}
	e.target.Rotator = slow

	// Freeze: when the generate action starts, lock the lease row in an
	// open transaction; renewals wait for it.
	tx, err := e.db.Pool().Begin(e.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	frozen := make(chan struct{})
	e.engine.Hooks.Before = func(_ string, step state.Step) error {
		if step == state.StepGenerate {
			_, err := tx.Exec(e.ctx, `SELECT 1 FROM rotator_leases WHERE secret_id = 'db/postgres' FOR UPDATE`)
			require.NoError(t, err)
			close(frozen)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
		done <- err
	}()
	<-frozen
	var expires time.Time
	require.NoError(t, e.db.Pool().QueryRow(e.ctx, `SELECT expires_at FROM rotator_leases WHERE secret_id = 'db/postgres'`).Scan(&expires))
	started := <-slow.started
	<-slow.dl

	var ended time.Time
	select {
	case ended = <-slow.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the action was not stopped")
	}
	require.True(t, ended.Before(expires), "the action stopped (%s) before the lease expired (%s)", ended, expires)
	require.ErrorIs(t, <-slow.cause, state.ErrLeaseLost)
	t.Logf("action stopped %s after it started, %s before the lease expired", ended.Sub(started), expires.Sub(ended))
	_ = tx.Rollback(context.Background())
	err = <-done
	t.Logf("run returned %s after the action stopped: %v", time.Since(ended), err)
	require.ErrorIs(t, err, state.ErrLeaseLost)
	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.True(t, runs[0].Active(), "the run is not failed; it resumes under the next lease")
	require.NoError(t, e.publishedWorks())
}

// fencedRotator refuses every Generate as a target whose fence saw a newer
// holder would.
type fencedRotator struct {
	rotation.Rotator
	fences chan rotation.Fence
}

func (f *fencedRotator) Generate(_ context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	f.fences <- req.Fence
	return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf("re-key role: %w", rotation.ErrFenced))
}

// TestFencedActionStopsTheRun: a refusal by the target's fence is not a
// failed rotation to compensate (the newer holder owns the run): the run
// stays where it is, nothing is discarded or rolled back. The request
// carries the lease token and the run id.
func TestFencedActionStopsTheRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := &fencedRotator{Rotator: e.target.Rotator, fences: make(chan rotation.Fence, 10)}
	e.target.Rotator = f
	_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.ErrorIs(t, err, rotation.ErrFenced)
	fence := <-f.fences
	require.NotZero(t, fence.Token)
	require.NotEmpty(t, fence.RunID)
	require.Len(t, f.fences, 0, "a fenced action is not retried")
	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.True(t, runs[0].Active(), "not failed: %+v", runs[0])
	require.Equal(t, fence.RunID, runs[0].ID)
}

// TestSuccessReleasesTheLeaseWithItsLastWrite: the run's last write gives
// the lease up in the same round trip, so another process can take it
// before Run returns; the run, held after that write for longer than the
// lease's time-to-live (a slow notifier), still succeeds without "lease
// lost": the keeper has nothing left to keep.
func TestSuccessReleasesTheLeaseWithItsLastWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const ttl = 600 * time.Millisecond // a renewal every 200 ms
	e.engine.LeaseTTL = ttl
	taken := make(chan error, 1)
	keeperStopped := make(chan struct{})
	e.engine.Hooks.KeeperStopped = func(string) { close(keeperStopped) }
	e.engine.Events = func(ev notify.Event) {
		if ev.Kind != notify.KindRotationSucceeded {
			return
		}
		// The run has written its success: the lease is free now.
		_, err := e.db.AcquireLease(e.ctx, ev.SecretID, "another-process", time.Minute)
		taken <- err
		// Hold Run here until its keeper has stopped on its own (it
		// has nothing left to keep): a keeper that went on renewing
		// the released lease would be refused and cancel the run, or
		// go stale after 2/3 of the TTL and cancel it.
		select {
		case <-keeperStopped:
		case <-time.After(30 * time.Second):
			t.Error("the lease keeper did not stop after the release")
		}
	}
	res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.NoError(t, err, "a renewal refused after the release is not a lost lease")
	require.Equal(t, state.RunSucceeded, res.Status)
	require.NoError(t, <-taken, "another process takes the lease as soon as the last write is sent")
	require.NotContains(t, e.logs.String(), "lease lost")
	require.NoError(t, e.publishedWorks())
}

// TestFrozenStateAtTheLastWrite: the state database freezes (another
// session holds the lease row) just as the run sends its last write, the
// one that releases the lease. Renewals time out (the database does not
// answer, it did not refuse): that is not the release, so the keeper goes
// on and ends the run's work when the lease is stale, instead of leaving
// the last write waiting for as long as the database is frozen. The run is
// not recorded as succeeded (the write did not commit) and resumes under
// the next lease.
func TestFrozenStateAtTheLastWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const ttl = 1500 * time.Millisecond
	e.engine.LeaseTTL = ttl
	tx, err := e.db.Pool().Begin(e.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	e.engine.Hooks.After = func(_ string, step state.Step) error {
		if step == state.StepMonitor {
			_, err := tx.Exec(e.ctx, `SELECT 1 FROM rotator_leases WHERE secret_id = 'db/postgres' FOR UPDATE`)
			require.NoError(t, err)
		}
		return nil
	}
	type ret struct {
		res rotation.Result
		err error
	}
	done := make(chan ret, 1)
	go func() {
		res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
		done <- ret{res, err}
	}()
	var got ret
	select {
	case got = <-done:
	case <-time.After(20 * ttl):
		_ = tx.Rollback(context.Background())
		<-done
		t.Fatal("the run's last write waited for the frozen state database past the lease's time-to-live")
	}
	_ = tx.Rollback(context.Background())
	require.ErrorIs(t, got.err, state.ErrLeaseLost)
	t.Logf("result: status %s, err %v", got.res.Status, got.err)
	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.True(t, runs[0].Active(), "the last write did not commit: %+v", runs[0])
	require.NoError(t, e.publishedWorks())
}

// TestRenewalInFlightAtTheRelease: a background renewal that reaches the
// lease row just after the run's last write (which releases the lease)
// neither resurrects the released lease nor counts as a lost lease. The
// state database orders them (another session holds the lease row until
// both wait for it, the last write first).
func TestRenewalInFlightAtTheRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const ttl = 3 * time.Second // a renewal every second, each given 750 ms
	e.engine.LeaseTTL = ttl
	refused := make(chan error, 10)
	e.engine.Hooks.Renewed = func(_ string, err error) {
		if err != nil {
			refused <- err
		}
	}
	tx, err := e.db.Pool().Begin(e.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	e.engine.Hooks.After = func(_ string, step state.Step) error {
		if step == state.StepMonitor {
			_, err := tx.Exec(e.ctx, `SELECT 1 FROM rotator_leases WHERE secret_id = 'db/postgres' FOR UPDATE`)
			require.NoError(t, err)
		}
		return nil
	}
	type ret struct {
		res rotation.Result
		err error
	}
	done := make(chan ret, 1)
	go func() {
		res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
		done <- ret{res, err}
	}()
	// Wait until the last write and then a renewal wait for the row.
	waiting := func() (n int) {
		require.NoError(t, e.db.Pool().QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&n))
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); waiting() < 2; {
		require.True(t, time.Now().Before(deadline), "the last write and a renewal never both waited for the lease row")
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, tx.Rollback(e.ctx))
	got := <-done
	require.NoError(t, got.err, "a renewal refused after the release is not a lost lease")
	require.Equal(t, state.RunSucceeded, got.res.Status)
	require.ErrorIs(t, <-refused, state.ErrLeaseLost, "the renewal behind the release was refused")
	require.NotContains(t, e.logs.String(), "lease lost")
	// Not resurrected: another process takes the lease at once.
	_, err = e.db.AcquireLease(e.ctx, "db/postgres", "another-process", time.Minute)
	require.NoError(t, err)
	require.NoError(t, e.publishedWorks())
}

// TestLastWriteFailsOnADeadConnection: the run's last write fails (the
// state database ended the pool's connections just before it), and Run's
// flush of what is still carried then goes through on a new connection.
// Whatever is recorded is whole: the run is not recorded as succeeded
// while the secret does not record the success (no last success, still
// due, failures not reset).
func TestLastWriteFailsOnADeadConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin, err := pgx.Connect(e.ctx, e.stateDSN)
	require.NoError(t, err)
	defer admin.Close(context.Background())
	killed := 0
	e.engine.Hooks.After = func(_ string, step state.Step) error {
		if step == state.StepMonitor {
			require.NoError(t, admin.QueryRow(e.ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed))
		}
		return nil
	}
	res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.NotZero(t, killed)
	t.Logf("run: status %s, err %v", res.Status, err)
	runs, rerr := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, rerr)
	require.Len(t, runs, 1)
	sec, serr := e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, serr)
	if runs[0].Status == state.RunSucceeded {
		require.NotNil(t, sec.LastSuccessAt, "the run is recorded as succeeded, the secret records no success")
	} else {
		require.True(t, runs[0].Active(), "%+v", runs[0])
		require.Error(t, err)
		require.NotEqual(t, state.RunSucceeded, res.Status, "the result does not say succeeded when the success was not recorded")
	}
	require.NoError(t, e.publishedWorks())
}

// TestSecondProcessRotatesAtTheRelease: another process (its own Engine
// and holder) takes the secret as soon as the first run's last write has
// released it and rotates it again, while the first Run has not returned
// yet (its keeper still running): both succeed, neither sees a lost
// lease, the second starts from what the first recorded (the next
// version), and what is published logs in.
func TestSecondProcessRotatesAtTheRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.engine.LeaseTTL = 600 * time.Millisecond
	other := &rotation.Engine{DB: e.db, Key: e.key, Logger: e.engine.Logger, Holder: "other-" + t.Name(), LeaseTTL: time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }}
	type ret struct {
		res rotation.Result
		err error
	}
	second := make(chan ret, 1)
	e.engine.Events = func(ev notify.Event) {
		if ev.Kind != notify.KindRotationSucceeded {
			return
		}
		res, err := other.Run(e.ctx, e.target, rotation.Options{Wait: true})
		second <- ret{res, err}
	}
	first, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, first.Status)
	got := <-second
	require.NoError(t, got.err)
	require.Equal(t, state.RunSucceeded, got.res.Status)
	require.Equal(t, first.Version+1, got.res.Version)
	require.NotContains(t, e.logs.String(), "lease lost")
	runs, err := e.db.Runs(e.ctx, "db/postgres", 10)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, r := range runs {
		require.Equal(t, state.RunSucceeded, r.Status)
	}
	require.NoError(t, e.publishedWorks())
}
