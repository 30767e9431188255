package daemon

import (
	"context"
	"sync"
	"time"
)

// waker runs a tick when the earliest waiting run's wait_until comes, so a
// run that waits (a delay check, a polling check's interval, the monitor
// window) continues then, not at the next cron tick. After every tick the
// daemon asks the state database for the earliest wait_until of any
// unfinished run (state.DB.NextWait: runs of every process, a CronJob's or
// a person's included) and arms one timer for it; an earlier time replaces
// a later one.
type waker struct {
	mu    sync.Mutex
	at    time.Time // armed for; zero: not armed
	timer *time.Timer
	c     chan struct{} // one pending wake-up at most
}

func newWaker() *waker { return &waker{c: make(chan struct{}, 1)} }

// wakeAt arms the timer for t unless it is armed for an earlier time.
func (w *waker) wakeAt(t time.Time) {
	if t.IsZero() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.at.IsZero() && !t.Before(w.at) {
		return
	}
	w.at = t
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = time.AfterFunc(time.Until(t), w.fire)
}

func (w *waker) fire() {
	w.mu.Lock()
	w.at = time.Time{}
	w.mu.Unlock()
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// now asks for a wake-up tick at once, leaving the timer as it is.
func (w *waker) now() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

func (w *waker) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.at = time.Time{}
}

// armWake asks the state database when the next waiting run can go on and
// arms the waker for it.
func (d *Daemon) armWake(ctx context.Context) {
	at, err := d.cfg.DB.NextWait(ctx, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			d.cfg.Logger.Warn("could not read when the next waiting run goes on; the next tick continues it", "err", err.Error())
		}
		return
	}
	d.wake.wakeAt(at)
}
