package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// DefaultTick is the daemon's tick when none is configured.
const DefaultTick = "@every 1m"

// Ticker calls a function on each firing of a cron spec, in UTC. A tick
// that fires while the previous one still runs is skipped (logged), and a
// panic in a tick is recovered (logged). It holds no schedule of its own:
// each tick asks the database what is due.
type Ticker struct {
	cron   *cron.Cron
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	// stopping, when set (tests), runs once Stop has stopped the schedule
	// and before it waits for a running tick.
	stopping func()
}

// NewTicker builds a Ticker that calls fn on each firing of spec
// (DefaultTick when empty). fn's context is cancelled when Stop gives up
// waiting for it.
func NewTicker(spec string, logger *slog.Logger, fn func(ctx context.Context)) (*Ticker, error) {
	if spec == "" {
		spec = DefaultTick
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("tick schedule %q: %w (want e.g. \"@every 1m\" or \"*/5 * * * *\")", spec, err)
	}
	return newTicker(s, logger, fn), nil
}

func newTicker(s cron.Schedule, logger *slog.Logger, fn func(ctx context.Context)) *Ticker {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := cronLogger{logger}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Ticker{
		cron: cron.New(
			cron.WithLocation(time.UTC),
			cron.WithLogger(l),
			// Recover must sit inside SkipIfStillRunning: robfig's skip
			// wrapper hands its token back only when the job returns, so
			// a panic passing through it would skip every later tick.
			cron.WithChain(cron.SkipIfStillRunning(l), cron.Recover(l)),
		),
		ctx:    ctx,
		cancel: cancel,
	}
	t.cron.Schedule(s, cron.FuncJob(func() { fn(t.ctx) }))
	return t
}

// Start starts ticking in the background; it does not block.
func (t *Ticker) Start() { t.cron.Start() }

// Stop stops ticking and waits for a running tick to return. If ctx ends
// first, it cancels the tick's context and returns ctx's error without
// waiting further. Stop may be called more than once.
func (t *Ticker) Stop(ctx context.Context) error {
	done := t.cron.Stop()
	defer t.once.Do(t.cancel)
	if t.stopping != nil {
		t.stopping()
	}
	select {
	case <-done.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop ticker: a tick is still running: %w", ctx.Err())
	}
}

// cronLogger adapts slog to cron.Logger. cron's own chatter (wake, run,
// schedule) goes to debug; a skipped tick is a warning.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		c.l.Warn("tick skipped: the previous tick is still running")
		return
	}
	c.l.Debug("cron "+msg, kv...)
}

func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron "+msg, append([]any{"error", err}, kv...)...)
}
