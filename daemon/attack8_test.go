package daemon_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Fault campaign on the lean reload's ticks and SIGTERM (docs/decisions.md,
// attack8). These use newLeanWorld, so they are not parallel.

// A SIGTERM that stops a lean reload while it waits for the users of the
// generation in force puts that generation back; the drain then serves it,
// and its users come and go (here a status page read ends and the next
// begins at once). The given-up wait must not be a sync.WaitGroup's Wait
// still pending on the users: a new user once the count had reached zero
// made it panic ("WaitGroup is reused before previous Wait has
// returned"), which killed the daemon in the middle of its drain.
func TestGenerationPutBackBySIGTERMTakesNewUsers(t *testing.T) {
	drained := make(chan struct{}, 8)
	w := newLeanWorld(t, leanOpts{n: 2, rotated: true, onDrain: func() { drained <- struct{}{} }})
	// A status page read in flight: the lean reload waits for it.
	g, done := w.d.UseGeneration()
	require.NotNil(t, g)
	w.write(t, "# every line moves\n"+tokenPolicies(3, ""))
	select {
	case <-drained:
	case <-time.After(60 * time.Second):
		done()
		t.Fatalf("no lean reload:\n%s", w.log.String())
	}
	w.stop() // SIGTERM
	w.waitLog(t, msgStopped, 1)
	require.Contains(t, w.log.String(), `"policies_in_force":"the old ones"`)

	// The read ends; the next one starts at once, on the generation put
	// back, and lasts until the daemon has stopped.
	done()
	g2, done2 := w.d.UseGeneration()
	require.Same(t, g, g2, "the generation was put back")
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		done2()
		t.Fatalf("the daemon did not stop:\n%s", w.log.String())
	}
	done2()
	require.NoError(t, w.err)
	require.Contains(t, w.log.String(), `"msg":"daemon stopped"`)
}
