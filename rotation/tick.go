package rotation

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rotator/rotator/state"
)

// TickConfig bounds one tick.
type TickConfig struct {
	// Concurrency is how many secrets run at once (default 4).
	Concurrency int
	// PerServer is how many of them may share one Target.Server (default 1:
	// one rotation at a time per Postgres server).
	PerServer int
	// Limit is the most secrets one tick looks at (default 1000); the rest
	// wait for the next tick.
	Limit int
}

// TickReport counts what a tick did.
type TickReport struct {
	Due, Succeeded, Failed, Waiting, Held, Busy, NotDue, Unknown, Errors int
	Results                                                              []Result
	Errs                                                                 []error
}

// Lookup finds the target of a secret id; false when the policy no longer
// has it.
type Lookup func(ctx context.Context, id string) (Target, bool, error)

// Tick asks the state database, in one indexed query, for the secrets that
// are due or have a run to advance, and advances each with bounded
// concurrency, globally and per server. Runs never wait inside a tick: a
// step that must wait records when to look again and a later tick
// continues it, so a long verify does not hold a worker.
func (e *Engine) Tick(ctx context.Context, lookup Lookup, cfg TickConfig) (TickReport, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.PerServer <= 0 {
		cfg.PerServer = 1
	}
	if cfg.Limit <= 0 {
		cfg.Limit = 1000
	}
	var rep TickReport
	ids, err := e.DB.Due(ctx, e.now(), cfg.Limit)
	if err != nil {
		return rep, err
	}
	rep.Due = len(ids)
	global := make(chan struct{}, cfg.Concurrency)
	var mu sync.Mutex
	perServer := map[string]chan struct{}{}
	server := func(key string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		s, ok := perServer[key]
		if !ok {
			s = make(chan struct{}, cfg.PerServer)
			perServer[key] = s
		}
		return s
	}
	var wg sync.WaitGroup
	record := func(res Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		rep.Results = append(rep.Results, res)
		switch {
		case errors.Is(err, ErrBusy):
			rep.Busy++
		case err != nil:
			rep.Errors++
			rep.Errs = append(rep.Errs, err)
		case res.Status == state.RunSucceeded:
			rep.Succeeded++
		case res.Status == state.RunFailed || res.Status == state.RunRolledBack:
			rep.Failed++
		case res.Held:
			rep.Held++
		case res.Status == state.RunWaiting || res.Status == state.RunRunning:
			rep.Waiting++
		default:
			rep.NotDue++
		}
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		t, ok, err := lookup(ctx, id)
		if err != nil {
			record(Result{SecretID: id}, err)
			continue
		}
		if !ok {
			mu.Lock()
			rep.Unknown++
			mu.Unlock()
			e.log().Warn("secret is in the state database but not in the policies; skipped", "secret", id)
			continue
		}
		srv := server(t.Server)
		wg.Add(1)
		// Each secret waits for its server's slot in its own goroutine (at
		// most Limit of them), so a busy server does not hold up the
		// secrets of other servers behind it; the global slot is taken
		// only once the server's is held.
		go func(t Target) {
			defer wg.Done()
			select {
			case srv <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-srv }()
			select {
			case global <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-global }()
			start := e.now()
			res, err := e.Run(ctx, t, Options{Trigger: state.TriggerSchedule, IfDue: true})
			e.log().Debug("tick run", "secret", t.ID, "status", res.Status, "step", res.Step, "duration_ms", time.Since(start).Milliseconds())
			record(res, err)
		}(t)
	}
	wg.Wait()
	return rep, ctx.Err()
}
