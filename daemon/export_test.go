package daemon

import "context"

// OnDrain tells f when a lean reload starts to wait for the users of the
// generation it drops (before Run).
func (d *Daemon) OnDrain(f func()) { d.onDrain = f }

// Tick is what the cron ticker calls when it fires.
func (d *Daemon) Tick(ctx context.Context) { d.tick(ctx) }

// Ticked tells whether a tick has run; when one has, it waits for the
// tick in progress, if any, to return.
func (d *Daemon) Ticked() bool {
	if d.lastTick.Load() == 0 {
		return false
	}
	d.ticking.Lock()
	defer d.ticking.Unlock()
	return true
}

// RecordSyncMark is what Generation.Sync does once its writes are done.
var RecordSyncMark = recordSync
