package daemon

import (
	"container/heap"
	"context"
	"slices"
	"sort"
	"sync"
	"time"
	"weak"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

// checkLoop is the daemon's published-credential check (safety rule 6):
// every secret once right after start, then once per defaults.check.interval
// at its own offset within it (schedule.Jitter of its id, so checks are
// spread, and replicas check a secret at the same moment rather than at
// random ones), and at once after each of its runs ends (succeeded, failed,
// rolled back, needs attention) or is held. Checks are read-only; at most
// limit run at a time. One rotation.Checker lives across checks, so a
// broken credential is reported once.
type checkLoop struct {
	d       *Daemon
	checker *rotation.Checker
	limit   int

	mu sync.Mutex
	// next is each secret's next check (Unix ns; 0: at once). Times are
	// kept as int64 here and in the queue: at 100,000 secrets the map and
	// the queue are a third smaller than with time.Time.
	next     map[string]int64
	interval time.Duration
	wake     chan struct{}
	done     chan struct{}
	// queue orders the next checks (an entry whose time is no longer
	// next[id] is stale and skipped); gen is the generation it was built
	// for (weak: the loop does not keep a replaced generation in memory
	// after a reload). A wake-up pops what is due instead of scanning every secret,
	// so 100,000 secrets cost nothing between their checks.
	queue checkQueue
	gen   weak.Pointer[Generation]
	// last is the summary of each secret's latest check report, kept only
	// when keepLast (a status page is served: it is the one reader). At
	// 100,000 secrets the whole reports were ~30 MB; the summaries keep
	// what the page shows.
	last     map[string]rotation.CheckSummary
	keepLast bool
}

// checkAt is one entry of the queue: a secret and when (Unix ns).
type checkAt struct {
	at int64
	id string
}

// checkQueue is a min-heap of checkAt by time (container/heap).
type checkQueue []checkAt

func (q checkQueue) Len() int           { return len(q) }
func (q checkQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q checkQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *checkQueue) Push(x any)        { *q = append(*q, x.(checkAt)) }
func (q *checkQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// newCheckLoop makes the check loop; keepLast keeps each secret's latest
// report for LastCheck.
func newCheckLoop(d *Daemon, limit int, keepLast bool) *checkLoop {
	if limit < 1 {
		limit = 1
	}
	return &checkLoop{d: d, checker: &rotation.Checker{Engine: d.cfg.Engine}, limit: limit, keepLast: keepLast,
		next: map[string]int64{}, last: map[string]rotation.CheckSummary{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// nextCheck is the first moment after now in id's slot: the offset
// Jitter(id, interval) within each interval.
func nextCheck(id string, interval time.Duration, now time.Time) time.Time {
	n := now.Truncate(interval).Add(schedule.Jitter(id, interval))
	if !n.After(now) {
		n = n.Add(interval)
	}
	return n
}

// soon asks for a check of the secrets now (after a run outcome).
func (l *checkLoop) soon(ids ...string) {
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	for _, id := range ids {
		l.next[id] = 0
		heap.Push(&l.queue, checkAt{id: id})
	}
	l.mu.Unlock()
	l.poke()
}

// poke makes the loop look at the policies again now (after a reload: new
// secrets are checked, removed ones lose their gauges).
func (l *checkLoop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// afterTick asks for a check of every secret whose run ended or is held.
func (l *checkLoop) afterTick(rep rotation.TickReport) {
	var ids []string
	for _, r := range rep.Results {
		switch {
		case r.Held, r.Status == state.RunSucceeded, r.Status == state.RunFailed,
			r.Status == state.RunRolledBack, r.Status == state.RunNeedsAttention:
			ids = append(ids, r.SecretID)
		}
	}
	l.soon(ids...)
}

// run checks until ctx ends, then closes done.
func (l *checkLoop) run(ctx context.Context) {
	defer close(l.done)
	for ctx.Err() == nil {
		due, wait := l.due(time.Now())
		if len(due) > 0 {
			l.checkAll(ctx, due)
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-l.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// due returns the secrets to check now, and how long to sleep otherwise
// (at most 30s, so a reload's new secrets and interval are picked up even
// without a poke). With a new generation or interval it goes over every
// secret (secrets gone from the policies lose their gauges) and rebuilds
// the queue; otherwise it pops the queue.
func (l *checkLoop) due(now time.Time) ([]string, time.Duration) {
	g, done := l.d.UseGeneration()
	defer done()
	if g == nil {
		return nil, 30 * time.Second // no policies: the daemon is stopping
	}
	interval := g.File.CheckInterval()
	l.mu.Lock()
	defer l.mu.Unlock()
	var due []string
	if weak.Make(g) != l.gen || interval != l.interval {
		if interval != l.interval && l.interval != 0 {
			// A new interval: every secret moves to its slot in it.
			for id, n := range l.next {
				if n != 0 {
					l.next[id] = nextCheck(id, interval, now).UnixNano()
				}
			}
		}
		l.gen, l.interval = weak.Make(g), interval
		l.queue = l.queue[:0]
		for id := range g.specs {
			n, ok := l.next[id]
			if !ok || n <= now.UnixNano() {
				// Never checked (just started, or new in the policies), or due.
				due = append(due, id)
				n = nextCheck(id, interval, now).UnixNano()
				l.next[id] = n
			}
			l.queue = append(l.queue, checkAt{at: n, id: id})
		}
		heap.Init(&l.queue)
		for id := range l.next {
			if _, ok := g.specs[id]; !ok {
				delete(l.next, id)
				delete(l.last, id)
				if m := l.d.cfg.Engine.Metrics; m != nil {
					m.Forget(id)
				}
			}
		}
	}
	for len(l.queue) > 0 && l.queue[0].at <= now.UnixNano() {
		c := heap.Pop(&l.queue).(checkAt)
		n, ok := l.next[c.id]
		if !ok || n != c.at {
			continue // stale: the secret left, or was asked for sooner
		}
		due = append(due, c.id)
		n = nextCheck(c.id, interval, now).UnixNano()
		l.next[c.id] = n
		heap.Push(&l.queue, checkAt{at: n, id: c.id})
	}
	wait := 30 * time.Second
	if len(l.queue) > 0 {
		wait = min(wait, time.Duration(l.queue[0].at-now.UnixNano()))
	}
	sort.Strings(due)
	due = slices.Compact(due)
	return due, max(wait, 100*time.Millisecond)
}

// bigRound is the number of secrets from which a round of checks runs
// with GOGC held at ReloadGCPercent, as a reload does.
const bigRound = 1000

// checkAll checks the secrets, at most limit at a time. A big round (the
// first after start checks every secret) runs with the collector held at
// ReloadGCPercent: each check's target and reads are garbage at once, and
// at GOGC 100 such a round let the heap grow to twice what is live, which
// at 100,000 secrets was the daemon's peak RSS.
func (l *checkLoop) checkAll(ctx context.Context, ids []string) {
	g, done := l.d.UseGeneration()
	defer done()
	if g == nil {
		return
	}
	if len(ids) >= bigRound {
		reloadGC.acquire()
		defer reloadGC.release()
	}
	log := l.d.cfg.Logger
	sem := make(chan struct{}, l.limit)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, id := range ids {
		select {
		case <-ctx.Done():
			return
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Built for this check and freed after it: the daemon keeps
			// no target per secret between checks.
			t, release, ok, err := g.Acquire(ctx, id)
			defer release()
			if !ok {
				return
			}
			if err != nil {
				log.Error("check: the secret's target cannot be built", "secret", id, "err", err.Error())
				return
			}
			rep, err := l.checker.Check(ctx, t)
			if err != nil && ctx.Err() == nil {
				log.Error("check failed", "secret", id, "err", err.Error())
			}
			if err == nil && l.keepLast {
				l.mu.Lock()
				l.last[id] = rep.Summary()
				l.mu.Unlock()
			}
		}()
	}
}

// LastCheck is the summary of the latest published-credential check of a
// secret by this daemon (ok false: not checked yet, or no status page is
// served: the summaries are kept for the page only). It holds no secret.
func (d *Daemon) LastCheck(id string) (rotation.CheckSummary, bool) {
	l := d.checks
	if l == nil {
		return rotation.CheckSummary{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rep, ok := l.last[id]
	return rep, ok
}
