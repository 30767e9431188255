package sharedpool_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/sharedpool"
)

type pool struct {
	name   string
	closed bool
}

type world struct {
	mu     sync.Mutex
	closed []string
	set    *sharedpool.Set[*pool]
}

var errClosed = errors.New("pools are closed")

func newWorld() *world {
	w := &world{}
	w.set = sharedpool.New(func(p *pool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		p.closed = true
		w.closed = append(w.closed, p.name)
	}, errClosed)
	return w
}

func (w *world) get(t *testing.T, dsn, identity string) *sharedpool.Entry[*pool] {
	t.Helper()
	e, err := w.set.Get(sharedpool.Key(dsn), identity, func() (*pool, error) { return &pool{name: dsn}, nil })
	require.NoError(t, err)
	return e
}

// One DSN, one pool, however many rotators take it; a DSN of another
// identity has its own.
func TestOnePoolPerDSN(t *testing.T) {
	w := newWorld()
	a, b := w.get(t, "u:pw1@db1", "db1 u"), w.get(t, "u:pw1@db1", "db1 u")
	require.Same(t, a.Pool, b.Pool)
	c := w.get(t, "v:pw@db1", "db1 v")
	require.NotSame(t, a.Pool, c.Pool)
	w.set.Release(a)
	w.set.Release(b)
	require.Empty(t, w.closed, "a pool in use by nobody stays for the next rotator until Close")
	w.set.Close()
	require.ElementsMatch(t, []string{"u:pw1@db1", "v:pw@db1"}, w.closed)
	_, err := w.set.Get(sharedpool.Key("u:pw1@db1"), "db1 u", func() (*pool, error) { return &pool{}, nil })
	require.ErrorIs(t, err, errClosed)
}

// A DSN of the same identity (a changed password) supersedes the old
// pool, which closes with its last rotator, not before; one nobody uses
// closes at once; Close closes a superseded pool still in use.
func TestSupersededPoolClosesWithItsLastUser(t *testing.T) {
	w := newWorld()
	old1, old2 := w.get(t, "u:pw1@db", "db u"), w.get(t, "u:pw1@db", "db u")
	fresh := w.get(t, "u:pw2@db", "db u")
	require.NotSame(t, old1.Pool, fresh.Pool)
	require.Empty(t, w.closed, "the old pool is still used")
	w.set.Release(old1)
	require.Empty(t, w.closed)
	w.set.Release(old2)
	require.Equal(t, []string{"u:pw1@db"}, w.closed, "closed with its last user")

	// A superseded pool that nobody uses closes when it is superseded.
	w.set.Release(fresh)
	third := w.get(t, "u:pw3@db", "db u")
	require.Equal(t, []string{"u:pw1@db", "u:pw2@db"}, w.closed)

	// Close closes the superseded pool still taken, once.
	fourth := w.get(t, "u:pw4@db", "db u")
	w.set.Close()
	require.ElementsMatch(t, []string{"u:pw1@db", "u:pw2@db", "u:pw3@db", "u:pw4@db"}, w.closed)
	w.set.Release(third)
	w.set.Release(fourth)
	require.Len(t, w.closed, 4, "a release after Close closes nothing twice")
}
