package daemon

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The waker keeps the earliest time it is asked for, fires once for it,
// and can be armed again after firing; stop disarms it.
func TestWakerKeepsTheEarliest(t *testing.T) {
	t.Parallel()
	w := newWaker()
	w.wakeAt(time.Now().Add(time.Hour))
	w.wakeAt(time.Now().Add(10 * time.Millisecond)) // earlier: replaces
	w.wakeAt(time.Now().Add(time.Hour))             // later: ignored
	select {
	case <-w.c:
	case <-time.After(10 * time.Second):
		t.Fatal("the waker did not fire at the earliest time")
	}
	w.mu.Lock()
	require.True(t, w.at.IsZero(), "fired: not armed any more")
	w.mu.Unlock()

	w.wakeAt(time.Now().Add(-time.Second)) // already past: fires at once
	select {
	case <-w.c:
	case <-time.After(10 * time.Second):
		t.Fatal("a past wait_until fires at once")
	}

	w.wakeAt(time.Now().Add(time.Hour))
	w.stop()
	w.wakeAt(time.Time{}) // zero: nothing to wait for
	w.mu.Lock()
	defer w.mu.Unlock()
	require.True(t, w.at.IsZero(), "stopped: not armed")
	require.False(t, w.timer.Stop(), "stop stopped the timer before it fired")
}
