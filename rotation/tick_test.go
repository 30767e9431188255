package rotation_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// gate wraps a rotator: Generate records who runs at once per server, and
// blocks the secrets of server "a" until released.
type gate struct {
	rotation.Rotator
	server  string
	mu      *sync.Mutex
	running map[string]int
	peak    map[string]int
	total   *int
	peakAll *int
	release chan struct{}
	started chan string
	id      string
}

func (g *gate) Generate(ctx context.Context, r rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	g.mu.Lock()
	g.running[g.server]++
	*g.total++
	g.peak[g.server] = max(g.peak[g.server], g.running[g.server])
	*g.peakAll = max(*g.peakAll, *g.total)
	g.mu.Unlock()
	g.started <- g.id
	if g.server == "a" {
		<-g.release
	}
	defer func() {
		g.mu.Lock()
		g.running[g.server]--
		*g.total--
		g.mu.Unlock()
	}()
	return g.Rotator.Generate(ctx, r)
}

// A tick runs what is due with bounded concurrency, globally and per
// server, and a busy server does not hold up another server's secrets.
func TestTickBoundsConcurrencyPerServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	store, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	var mu sync.Mutex
	running, peak := map[string]int{}, map[string]int{}
	var total, peakAll int
	release := make(chan struct{})
	started := make(chan string, 16)
	targets := map[string]rotation.Target{}
	var defs []state.SecretDef
	for i, server := range []string{"a", "a", "a", "b"} {
		id := fmt.Sprintf("tok/%s%d", server, i)
		tok, err := apikey.NewToken(&policy.TokenSpec{Prefix: "t_", Length: 32})
		require.NoError(t, err)
		targets[id] = rotation.Target{ID: id, Class: "admin_token", Server: server,
			Rotator: &gate{Rotator: tok, server: server, mu: &mu, running: running, peak: peak, total: &total,
				peakAll: &peakAll, release: release, started: started, id: id},
			Publish: []rotation.Publication{{StoreName: "local", Path: id, Store: store}},
			Retry:   rotation.Retry{Attempts: 1}}
		defs = append(defs, state.SecretDef{ID: id, Class: "admin_token"})
	}
	require.NoError(t, e.db.SyncSecrets(e.ctx, defs))
	due := make([]state.DueAt, 0, len(defs))
	for _, d := range defs {
		due = append(due, state.DueAt{ID: d.ID, At: time.Now().Add(-time.Minute)})
	}
	require.NoError(t, e.db.SetNextDue(e.ctx, due))
	lookup := func(_ context.Context, id string) (rotation.Target, bool, error) {
		tg, ok := targets[id]
		return tg, ok, nil
	}
	type out struct {
		rep rotation.TickReport
		err error
	}
	done := make(chan out, 1)
	go func() {
		rep, err := e.engine.Tick(e.ctx, lookup, rotation.TickConfig{Concurrency: 2, PerServer: 1})
		done <- out{rep, err}
	}()
	// One secret of server a is held in generate; server b's secret still
	// runs (the other a secrets wait for their server, not in front of b).
	first, second := <-started, <-started
	got := map[string]bool{first: true, second: true}
	require.True(t, got["tok/b3"], "server b's secret runs while server a is busy: started %v", got)
	close(release)
	o := <-done
	require.NoError(t, o.err)
	require.Equal(t, 4, o.rep.Due)
	require.Equal(t, 4, o.rep.Succeeded, "%+v", o.rep)
	require.Equal(t, 1, peak["a"], "one rotation at a time per server")
	require.LessOrEqual(t, peakAll, 2, "global concurrency bound")
}
