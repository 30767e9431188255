package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// Each secret is checked once per interval at its own offset in it: the
// next check is within (now, now+interval], the same for the same id and
// time (replicas agree), and ids spread over the interval.
func TestNextCheckSpreads(t *testing.T) {
	t.Parallel()
	const interval = 15 * time.Minute
	now := time.Date(2026, 11, 30, 13, 7, 31, 0, time.UTC)
	minutes := map[int]bool{}
	for i := range 200 {
		id := fmt.Sprintf("db/app%d", i)
		n := nextCheck(id, interval, now)
		require.True(t, n.After(now), id)
		require.False(t, n.After(now.Add(interval)), id)
		require.Equal(t, n, nextCheck(id, interval, now), "deterministic")
		require.Equal(t, n.Add(interval), nextCheck(id, interval, n), "then once per interval")
		minutes[int(n.Sub(now.Truncate(interval)).Minutes())%15] = true
	}
	require.GreaterOrEqual(t, len(minutes), 12, "200 secrets land in most minutes of the interval")
}

// The check queue: a wake-up pops what is due (each secret once per
// interval, at its slot), a run outcome asks for a check at once, and a
// new generation checks its new secrets and forgets the removed ones.
func TestCheckQueue(t *testing.T) {
	t.Parallel()
	gen := func(ids ...string) *Generation {
		t.Helper()
		src := "stores: [{name: local, files: {dir: s}}]\nsecrets:\n"
		for _, id := range ids {
			src += fmt.Sprintf("  - {id: %s, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: %s}]}\n", id, id)
		}
		f, err := policy.Parse("p.yaml", []byte(src))
		require.NoError(t, err)
		g, err := NewGeneration(f, nil)
		require.NoError(t, err)
		return g
	}
	d := &Daemon{cfg: Config{Engine: &rotation.Engine{Metrics: rotation.NewMetrics(nil)}}}
	var ids []string
	for i := range 50 {
		ids = append(ids, fmt.Sprintf("tok/t%02d", i))
	}
	d.gen.Store(gen(ids...))
	l := newCheckLoop(d, 1, false)
	now := time.Date(2026, 11, 30, 13, 7, 31, 0, time.UTC)

	due, wait := l.due(now)
	require.Len(t, due, 50, "every secret right after start")
	require.Greater(t, wait, time.Duration(0))
	due, _ = l.due(now)
	require.Empty(t, due)

	// Over one interval, in steps of the wait each call asks for, every
	// secret is checked exactly once.
	count := map[string]int{}
	end := now.Add(policy.DefaultCheckInterval)
	for at := now; !at.After(end); {
		due, wait := l.due(at)
		for _, id := range due {
			count[id]++
		}
		at = at.Add(wait)
	}
	require.Len(t, count, 50)
	for id, n := range count {
		require.Equal(t, 1, n, id)
	}

	// A run outcome: checked at the next wake-up, once.
	l.soon("tok/t07", "tok/t07")
	due, _ = l.due(end)
	require.Equal(t, []string{"tok/t07"}, due)
	due, _ = l.due(end)
	require.Empty(t, due)

	// A reload: the new secret at once, the removed one forgotten.
	d.cfg.Engine.Metrics.Published("tok/t00", "local", false, false)
	d.gen.Store(gen(append(ids[1:], "tok/new")...))
	due, _ = l.due(end)
	require.Equal(t, []string{"tok/new"}, due)
	failing, _ := d.cfg.Engine.Metrics.Failing()
	require.Zero(t, failing, "the removed secret's check result is forgotten")
	_, ok := l.next["tok/t00"]
	require.False(t, ok)
}

// gcPercentBuilder records GOGC each time a check builds a target, and
// fails the build (so no check goes further).
type gcPercentBuilder struct {
	mu   sync.Mutex
	seen []int
}

func (b *gcPercentBuilder) Target(context.Context, *policy.SecretSpec) (rotation.Target, func(), error) {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	b.mu.Lock()
	b.seen = append(b.seen, p)
	b.mu.Unlock()
	return rotation.Target{}, nil, errors.New("not built in this test")
}

func (b *gcPercentBuilder) AdoptedAge(context.Context, *policy.SecretSpec) time.Time {
	return time.Time{}
}
func (b *gcPercentBuilder) Close() {}

// A round of checks of bigRound secrets or more (the first after start
// checks every secret) runs with GOGC held at ReloadGCPercent, as a
// reload does, and gives the setting back after; a small round runs at
// the process's. Not parallel: GOGC is the process's.
func TestBigCheckRoundHoldsGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	src := "stores: [{name: local, files: {dir: s}}]\nsecrets:\n"
	var ids []string
	for i := range bigRound {
		id := fmt.Sprintf("tok/t%04d", i)
		ids = append(ids, id)
		src += fmt.Sprintf("  - {id: %s, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: %s}]}\n", id, id)
	}
	f, err := policy.Parse("p.yaml", []byte(src))
	require.NoError(t, err)
	b := &gcPercentBuilder{}
	g, err := NewGeneration(f, b)
	require.NoError(t, err)
	d := &Daemon{cfg: Config{Engine: &rotation.Engine{}, Logger: slog.New(slog.DiscardHandler)}}
	d.gen.Store(g)
	// One check at a time: reading GOGC sets it for a moment.
	l := newCheckLoop(d, 1, false)

	l.checkAll(t.Context(), ids)
	require.Len(t, b.seen, bigRound)
	for _, p := range b.seen {
		require.Equal(t, ReloadGCPercent, p, "a big round runs at the reload's GOGC")
	}
	after := debug.SetGCPercent(-1)
	debug.SetGCPercent(after)
	require.Equal(t, 100, after, "and gives the setting back")

	b.seen = nil
	l.checkAll(t.Context(), ids[:10])
	require.Equal(t, []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, b.seen, "a small round runs at the process's GOGC")
}
