package daemon

// OnDrain tells f when a lean reload starts to wait for the users of the
// generation it drops (before Run).
func (d *Daemon) OnDrain(f func()) { d.onDrain = f }
