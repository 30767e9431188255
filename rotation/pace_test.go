package rotation_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// pendingCheck never passes; with every > 0 it is a rotation.Poller.
type pendingCheck struct{ every time.Duration }

func (p pendingCheck) Name() string { return "pending" }
func (p pendingCheck) Check(context.Context, rotation.CheckRequest) (rotation.CheckResult, error) {
	return rotation.CheckResult{Detail: "not yet"}, nil
}

type pollingCheck struct{ pendingCheck }

func (p pollingCheck) PollInterval() time.Duration { return p.every }

// Verify looks again when the soonest check that did not pass can change
// its answer: a delay exactly at its end, a polling check at its own
// interval, a check that says neither at rotation.DefaultPoll; never after
// the grace; Target.Poll (the tests' knob) replaces the intervals only.
func TestVerifyWaitsUntilACheckCanChange(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name   string
		checks []rotation.Check
		poll   time.Duration
		grace  time.Duration
		want   time.Duration // after publish
	}{
		{"delay ends", []rotation.Check{rotation.Delay{D: 7 * time.Second}}, 0, time.Minute, 7 * time.Second},
		{"delay shorter than the old poll", []rotation.Check{rotation.Delay{D: time.Second}}, 0, time.Minute, time.Second},
		{"a polling check comes first", []rotation.Check{rotation.Delay{D: time.Hour}, pollingCheck{pendingCheck{3 * time.Second}}}, 0, 2 * time.Hour, 3 * time.Second},
		{"the delay comes first", []rotation.Check{rotation.Delay{D: 2 * time.Second}, pollingCheck{pendingCheck{time.Minute}}}, 0, time.Hour, 2 * time.Second},
		{"no interval", []rotation.Check{pendingCheck{}}, 0, time.Hour, rotation.DefaultPoll},
		{"test knob leaves a delay alone", []rotation.Check{rotation.Delay{D: 7 * time.Second}}, 10 * time.Millisecond, time.Hour, 7 * time.Second},
		{"test knob polls", []rotation.Check{pollingCheck{pendingCheck{time.Minute}}}, 10 * time.Millisecond, time.Hour, 10 * time.Millisecond},
		{"grace ends first", []rotation.Check{rotation.Delay{D: time.Hour}}, 0, 20 * time.Second, 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.engine.Now = func() time.Time { return t0 }
			e.target.Checks, e.target.Poll, e.target.Grace = tc.checks, tc.poll, tc.grace
			res := e.run(rotation.Options{})
			require.Equal(t, state.RunWaiting, res.Status, "%+v", res)
			require.Equal(t, state.StepVerify, res.Step)
			require.Equal(t, t0.Add(tc.want), res.WaitUntil.UTC())
			run, err := e.db.ActiveRun(e.ctx, "db/postgres")
			require.NoError(t, err)
			require.Equal(t, t0.Add(tc.want), run.WaitUntil.UTC(), "the state database records it: the daemon wakes the run then")
		})
	}
}

// The session count (Rotator.Clients) is polled at
// Target.ClientsInterval while sessions of the old role remain.
func TestVerifyPollsSessionsAtTheirInterval(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Second)
	e := newEnv(t)
	e.run(rotation.Options{Wait: true}) // app_blue becomes current
	cur := e.published().Credential
	// A session of the role about to be replaced.
	conn, err := pgx.Connect(e.ctx, pgtest.UserDSN(e.appDSN, cur.Username, cur.Secret.Reveal()))
	require.NoError(t, err)
	defer conn.Close(e.ctx)
	e.engine.Now = func() time.Time { return t0 }
	e.target.Poll, e.target.ClientsInterval = 0, 4*time.Second
	e.target.Checks = []rotation.Check{rotation.Delay{D: time.Minute}}
	res := e.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status, "%+v", res)
	require.Contains(t, res.Detail, cur.Username)
	require.Equal(t, t0.Add(4*time.Second), res.WaitUntil.UTC())
}
