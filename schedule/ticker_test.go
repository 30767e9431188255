package schedule

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// every fires d after each tick; finer than cron's one second, so the tests
// run fast. Nothing asserts on timing.
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// logCh is a slog handler that sends each message to a channel, dropping
// what does not fit.
type logCh chan string

func (c logCh) Enabled(context.Context, slog.Level) bool { return true }
func (c logCh) Handle(_ context.Context, r slog.Record) error {
	select {
	case c <- r.Message:
	default:
	}
	return nil
}
func (c logCh) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c logCh) WithGroup(string) slog.Handler      { return c }

// waitLog waits for a message, skipping others.
func waitLog(t *testing.T, logs logCh, msg string) {
	t.Helper()
	for m := range logs {
		if m == msg {
			return
		}
	}
}

func TestTickerSkipsOverlappingTickAndStopWaits(t *testing.T) {
	t.Parallel()
	logs := make(logCh, 64)
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	var returned atomic.Bool
	tk := newTicker(every(5*time.Millisecond), slog.New(logs), func(context.Context) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
			returned.Store(true)
		}
	})
	stopping := make(chan struct{})
	tk.stopping = func() { close(stopping) }

	tk.Start()
	<-started
	// The schedule fires again while the first tick runs: skipped.
	waitLog(t, logs, "tick skipped: the previous tick is still running")
	require.EqualValues(t, 1, calls.Load(), "an overlapping tick ran")

	stopped := make(chan error, 1)
	go func() { stopped <- tk.Stop(context.Background()) }()
	<-stopping
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a tick was running", err)
	default:
	}
	close(release)
	require.NoError(t, <-stopped)
	require.True(t, returned.Load(), "Stop returned before the tick did")
}

func TestTickerStopGivesUpWithContext(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	cancelled := make(chan struct{})
	var calls atomic.Int32
	tk := newTicker(every(5*time.Millisecond), nil, func(ctx context.Context) {
		if calls.Add(1) == 1 {
			close(started)
			<-ctx.Done()
			close(cancelled)
		}
	})
	tk.Start()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := tk.Stop(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "a tick is still running")
	<-cancelled // the tick's context was cancelled
	require.NoError(t, tk.Stop(context.Background()), "a second Stop waits for nothing")
}

func TestTickerRecoversPanic(t *testing.T) {
	t.Parallel()
	logs := make(logCh, 64)
	again := make(chan struct{})
	var calls atomic.Int32
	tk := newTicker(every(5*time.Millisecond), slog.New(logs), func(context.Context) {
		switch calls.Add(1) {
		case 1:
			panic(errors.New("boom"))
		case 2:
			close(again)
		}
	})
	tk.Start()
	waitLog(t, logs, "cron panic")
	<-again // ticking goes on
	require.NoError(t, tk.Stop(context.Background()))
}

func TestNewTicker(t *testing.T) {
	t.Parallel()
	tk, err := NewTicker("", nil, func(context.Context) {})
	require.NoError(t, err)
	require.Len(t, tk.cron.Entries(), 1)
	require.Equal(t, time.UTC, tk.cron.Location())
	require.NoError(t, tk.Stop(context.Background()))

	_, err = NewTicker("every minute", nil, func(context.Context) {})
	require.ErrorContains(t, err, `tick schedule "every minute"`)
}
