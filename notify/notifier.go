package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes recorded in rotator_notifications_total.
const (
	OutcomeSent       = "sent"       // the sink accepted the message
	OutcomeFailed     = "failed"     // every try failed (or a permanent error)
	OutcomeSuppressed = "suppressed" // a repeat within an open failure episode
	OutcomeDropped    = "dropped"    // the sink's queue was full, or the Notifier closed
)

// RetryPolicy bounds the tries of one message to one sink.
type RetryPolicy struct {
	// Attempts is the number of tries, the first included (default 5).
	Attempts int
	// Initial is the wait before the second try; it roughly doubles each
	// time, with jitter (default 1s).
	Initial time.Duration
	// Max caps the wait between tries (default 30s).
	Max time.Duration
	// Timeout bounds each try (default 10s).
	Timeout time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.Initial <= 0 {
		p.Initial = time.Second
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	return p
}

// Config configures a Notifier. The zero Config works: nothing is logged
// or registered, episodes are kept in memory.
type Config struct {
	// Logger receives delivery failures and drops (default: discard).
	Logger *slog.Logger
	// Registerer gets rotator_notifications_total (nil: not registered).
	Registerer prometheus.Registerer
	// Retry bounds the tries of each message.
	Retry RetryPolicy
	// QueueSize is the number of events each sink may have waiting
	// (default 256). When a sink's queue is full, new events for it are
	// dropped, logged and counted.
	QueueSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Redactor is applied to every event's free text (Error, Detail, Step,
	// Commands) before it is queued, in addition to the event's own.
	Redactor Redactor
	// Episodes keeps failure episodes (default NewMemoryEpisodes()).
	Episodes EpisodeStore
}

// Notifier fans events out to sinks without ever holding up its caller.
// Each sink has its own queue and goroutine, so a slow or unreachable
// destination delays only its own messages.
type Notifier struct {
	log      *slog.Logger
	retry    RetryPolicy
	now      func() time.Time
	redactor Redactor
	episodes EpisodeStore
	total    *prometheus.CounterVec

	// ctx is cancelled when Close runs out of time: in-flight sends stop
	// and what is still queued is dropped.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.RWMutex // guards closed and sending on the queues
	closed bool
	sinks  []*sinkWorker
	wg     sync.WaitGroup

	undelivered atomic.Int64
}

type sinkWorker struct {
	sink  Sink
	name  string
	queue chan Event
}

// New starts a Notifier with one worker per sink. Sink names must be
// unique and non-empty.
func New(cfg Config, sinks ...Sink) (*Notifier, error) {
	n := &Notifier{
		log:      cfg.Logger,
		retry:    cfg.Retry.withDefaults(),
		now:      cfg.Now,
		redactor: cfg.Redactor,
		episodes: cfg.Episodes,
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.episodes == nil {
		n.episodes = NewMemoryEpisodes()
	}
	size := cfg.QueueSize
	if size <= 0 {
		size = 256
	}
	seen := map[string]bool{}
	for _, s := range sinks {
		name := s.Name()
		if name == "" {
			return nil, errors.New("notify: a sink has an empty name")
		}
		if seen[name] {
			return nil, fmt.Errorf("notify: two sinks are named %q; give each a unique name", name)
		}
		seen[name] = true
		n.sinks = append(n.sinks, &sinkWorker{sink: s, name: name, queue: make(chan Event, size)})
	}
	total, err := registerTotal(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	n.total = total
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for _, w := range n.sinks {
		n.wg.Add(1)
		go n.run(w)
	}
	return n, nil
}

func registerTotal(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rotator_notifications_total",
		Help: "Notifications by sink, event kind and outcome (sent, failed, suppressed, dropped).",
	}, []string{"sink", "kind", "outcome"})
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("notify: register metrics: %w", err)
	}
	return c, nil
}

// kindLabel keeps the kind label to a fixed set.
func kindLabel(kind Kind) string {
	if kind == KindTest || slices.Contains(knownKinds, kind) {
		return string(kind)
	}
	return "other"
}

func (n *Notifier) count(sink string, kind Kind, outcome string) {
	n.total.WithLabelValues(sink, kindLabel(kind), outcome).Inc()
}

// Notify queues e for every sink and returns at once; it never blocks on
// the network or on a full queue. Free text is redacted before the event is
// queued. When a sink's queue is full the event is dropped for that sink,
// logged and counted (outcome "dropped"). Notify after Close drops.
func (n *Notifier) Notify(e Event) {
	if e.At.IsZero() {
		e.At = n.now()
	}
	e = redactEvent(e, n.redactor)

	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, w := range n.sinks {
		if n.closed {
			n.drop(w.name, e, "notifier closed")
			continue
		}
		select {
		case w.queue <- e:
		default:
			n.drop(w.name, e, "queue full")
		}
	}
}

func (n *Notifier) drop(sink string, e Event, reason string) {
	n.count(sink, e.Kind, OutcomeDropped)
	n.log.Warn("notification dropped",
		"sink", sink, "kind", e.Kind, "secret_id", e.SecretID, "run_id", e.RunID, "reason", reason)
}

// Close stops accepting events and waits until every queued event has been
// delivered or has failed, or until ctx is done. In that case in-flight
// sends are cancelled, what is still queued is dropped (and counted), and
// Close returns an error wrapping ctx.Err(). Close may be called once;
// later calls return nil at once.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	for _, w := range n.sinks {
		close(w.queue)
	}
	n.mu.Unlock()

	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done // with n.ctx cancelled the workers finish promptly
		return fmt.Errorf("notify: close: %d notifications not delivered: %w", n.undelivered.Load(), ctx.Err())
	}
}

// run delivers the events of one sink in order.
func (n *Notifier) run(w *sinkWorker) {
	defer n.wg.Done()
	for e := range w.queue {
		if n.ctx.Err() != nil {
			n.undelivered.Add(1)
			n.drop(w.name, e, "shutdown deadline passed")
			continue
		}
		n.handle(w, e)
	}
}

// handle applies the sink's filter and the episode rules to one event.
func (n *Notifier) handle(w *sinkWorker, e Event) {
	ctx := n.ctx
	key := EpisodeKey{SecretID: e.SecretID, Sink: w.name}
	switch {
	case isAlert(e.Kind):
		if !w.sink.Accepts(e.Kind) {
			return
		}
		ep, open, err := n.episodes.Lookup(ctx, key)
		if err != nil {
			// Better a repeated alert than a lost one.
			n.log.Error("notification episode lookup failed", "sink", w.name, "secret_id", e.SecretID, "error", err)
			open = false
		}
		if open && slices.Contains(ep.Kinds, e.Kind) {
			ep.Suppressed++
			if err := n.episodes.Save(ctx, key, ep); err != nil {
				n.log.Error("notification episode save failed", "sink", w.name, "secret_id", e.SecretID, "error", err)
			}
			n.count(w.name, e.Kind, OutcomeSuppressed)
			n.log.Debug("notification suppressed: failure episode already open",
				"sink", w.name, "kind", e.Kind, "secret_id", e.SecretID, "run_id", e.RunID, "episode_opened_at", ep.OpenedAt)
			return
		}
		rc, ok := n.deliver(ctx, w, SendRequest{Event: e})
		if !ok {
			// Not recorded: the next alert for the secret tries again.
			return
		}
		if !open {
			ep = Episode{OpenedAt: e.At, Alert: rc}
		}
		ep.Kinds = append(ep.Kinds, e.Kind)
		if err := n.episodes.Save(ctx, key, ep); err != nil {
			n.log.Error("notification episode save failed", "sink", w.name, "secret_id", e.SecretID, "error", err)
		}

	case e.Kind == KindRotationSucceeded || e.Kind == KindResolved:
		ep, open, err := n.episodes.Lookup(ctx, key)
		if err != nil {
			n.log.Error("notification episode lookup failed", "sink", w.name, "secret_id", e.SecretID, "error", err)
		}
		if open {
			if err := n.episodes.End(ctx, key); err != nil {
				n.log.Error("notification episode end failed", "sink", w.name, "secret_id", e.SecretID, "error", err)
			}
			switch {
			case w.sink.Accepts(KindResolved):
				n.deliver(ctx, w, SendRequest{Event: resolvedEvent(e, ep), Thread: ep.Alert})
			case e.Kind == KindRotationSucceeded && w.sink.Accepts(e.Kind):
				n.deliver(ctx, w, SendRequest{Event: e, Thread: ep.Alert})
			}
			return
		}
		if w.sink.Accepts(e.Kind) {
			n.deliver(ctx, w, SendRequest{Event: e})
		}

	default:
		if w.sink.Accepts(e.Kind) {
			n.deliver(ctx, w, SendRequest{Event: e})
		}
	}
}

// resolvedEvent turns the success that ends ep into a resolved message.
func resolvedEvent(e Event, ep Episode) Event {
	r := Event{
		Kind:     KindResolved,
		SecretID: e.SecretID,
		Class:    e.Class,
		RunID:    e.RunID,
		Channel:  e.Channel,
		At:       e.At,
		Detail:   e.Detail,
	}
	if r.Detail == "" {
		r.Detail = fmt.Sprintf("Failing since %s.", ep.OpenedAt.UTC().Format(time.RFC3339))
		if ep.Suppressed > 0 {
			r.Detail = fmt.Sprintf("Failing since %s; %d repeated alerts were not posted.",
				ep.OpenedAt.UTC().Format(time.RFC3339), ep.Suppressed)
		}
	}
	return r
}

// deliver sends req with bounded exponential backoff, each try with its
// own timeout, and records the outcome.
func (n *Notifier) deliver(ctx context.Context, w *sinkWorker, req SendRequest) (Receipt, bool) {
	e := req.Event
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(n.retry.Initial),
		backoff.WithMaxInterval(n.retry.Max),
		backoff.WithMaxElapsedTime(0),
	)
	bo := backoff.WithContext(backoff.WithMaxRetries(b, uint64(n.retry.Attempts-1)), ctx)
	try := 0
	var rc Receipt
	op := func() error {
		try++
		actx, cancel := context.WithTimeout(ctx, n.retry.Timeout)
		defer cancel()
		r, err := w.sink.Send(actx, req)
		if err != nil {
			if IsPermanent(err) {
				// backoff.Retry stops on its own marker and returns
				// what it wraps: err, still marked ours.
				return backoff.Permanent(err)
			}
			return err
		}
		rc = r
		return nil
	}
	onRetry := func(err error, wait time.Duration) {
		n.log.Warn("notification attempt failed; retrying",
			"sink", w.name, "kind", e.Kind, "secret_id", e.SecretID, "run_id", e.RunID,
			"try", try, "max_tries", n.retry.Attempts, "retry_in", wait, "error", err)
	}
	if err := backoff.RetryNotify(op, bo, onRetry); err != nil {
		if n.ctx.Err() != nil {
			n.undelivered.Add(1)
		}
		n.count(w.name, e.Kind, OutcomeFailed)
		n.log.Error("notification failed",
			"sink", w.name, "kind", e.Kind, "secret_id", e.SecretID, "run_id", e.RunID,
			"tries", try, "permanent", IsPermanent(err), "error", err)
		return Receipt{}, false
	}
	n.count(w.name, e.Kind, OutcomeSent)
	n.log.Debug("notification sent",
		"sink", w.name, "kind", e.Kind, "secret_id", e.SecretID, "run_id", e.RunID, "tries", try, "receipt", rc.String())
	return rc, true
}

// TestResult is what one sink answered to a test message.
type TestResult struct {
	Sink    string
	Receipt Receipt
	// Err is nil when the sink accepted the message.
	Err error
}

// Test sends a test message to every sink at once, synchronously, one try
// each (bounded by ctx and the retry timeout), bypassing filters, queues
// and episodes: the check behind `rotator notify test`. Results are in
// sink order.
func (n *Notifier) Test(ctx context.Context) []TestResult {
	e := Event{
		Kind:   KindTest,
		At:     n.now(),
		Detail: "This is a test message from rotator. If you can read it, notifications reach this destination.",
	}
	results := make([]TestResult, len(n.sinks))
	var wg sync.WaitGroup
	for i, w := range n.sinks {
		wg.Go(func() {
			tctx, cancel := context.WithTimeout(ctx, n.retry.Timeout)
			defer cancel()
			rc, err := w.sink.Send(tctx, SendRequest{Event: e})
			results[i] = TestResult{Sink: w.name, Receipt: rc, Err: err}
			if err != nil {
				n.count(w.name, KindTest, OutcomeFailed)
				n.log.Error("test notification failed", "sink", w.name, "error", err)
				return
			}
			n.count(w.name, KindTest, OutcomeSent)
		})
	}
	wg.Wait()
	return results
}
