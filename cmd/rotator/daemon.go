package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

// generation is one loaded policies file and what was built from it. A
// reload makes a new one; the old one is closed once the ticks using it end.
type generation struct {
	file   *policy.File
	wiring *wiring
	rules  map[string]schedule.Rule
	// specs indexes file.Secrets by id: policy.File.Secret is a linear
	// scan, and the metrics collector looks up every secret at scrape
	// (with 100,000 secrets that scan made one scrape take ~39 s).
	specs   map[string]*policy.SecretSpec
	mu      sync.Mutex
	targets map[string]rotation.Target
	users   sync.WaitGroup
}

func (g *generation) target(ctx context.Context, id string) (rotation.Target, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.targets[id]; ok {
		return t, true, nil
	}
	s, ok := g.specs[id]
	if !ok {
		return rotation.Target{}, false, nil
	}
	t, err := g.wiring.target(ctx, s)
	if err != nil {
		return t, true, err
	}
	scheduleTarget(&t, g.rules[id], g.file.Settings(s).Retry)
	g.targets[id] = t
	return t, true, nil
}

type daemon struct {
	a        *app
	db       *state.DB
	engine   *rotation.Engine
	reg      *prometheus.Registry
	gen      atomic.Pointer[generation]
	loadedAt atomic.Int64
	tickCfg  rotation.TickConfig
	lastTick atomic.Int64
	notifier eventSink
	ann      announcer
	// ticking makes ticks exclusive: the first tick runs outside the
	// ticker (at once, on start), and two overlapping ticks would run the
	// same secret twice in this process (the lease is re-entrant for its
	// holder, host:pid). first is that first tick, awaited on shutdown.
	ticking sync.Mutex
	first   sync.WaitGroup
}

// eventSink receives engine events (notify, when configured).
type eventSink interface {
	Send(rotation.Event)
	Close(ctx context.Context) error
}

func (a *app) daemonCmd() *cobra.Command {
	var (
		listen     string
		tick       string
		shutdown   time.Duration
		watch      time.Duration
		concurrent int
		perServer  int
	)
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run forever: rotate what is due on every tick; serve /healthz, /readyz, /metrics",
		Long: `daemon runs the scheduler: on every tick (default every minute) it asks the state
database for the secrets that are due or have a run to advance, and advances
them with bounded concurrency (globally, and per target server). A run that
must wait (verify waiting for clients, the monitor window) does not hold a
worker: a later tick continues it. Several daemons, CronJobs and people may run
at once: a per-secret lease in the state database makes each step run in one
place.

HTTP (--listen): /healthz (alive), /readyz (state database reachable and
policies loaded), /metrics (Prometheus).

Signals: SIGHUP reloads the policies file (a bad file is rejected and the old
policies stay in force); SIGTERM or SIGINT stops taking new work, lets running
steps finish within --shutdown-timeout (runs are journaled step by step, so
anything cut off resumes on the next start), and exits 0.`,
		Example: `  rotator daemon --listen :9090
  rotator daemon --tick '@every 30s' --concurrency 8 --watch-policies 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDaemon(cmd.Context(), listen, tick, shutdown, watch, rotation.TickConfig{Concurrency: concurrent, PerServer: perServer})
		},
	}
	c.Flags().StringVar(&listen, "listen", envOr("ROTATOR_LISTEN", ":9090"), "address for /healthz, /readyz and /metrics (env ROTATOR_LISTEN)")
	c.Flags().StringVar(&tick, "tick", "@every 1m", "how often to look for due secrets (robfig/cron spec)")
	c.Flags().DurationVar(&shutdown, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long running steps may take to finish")
	c.Flags().DurationVar(&watch, "watch-policies", 0, "also reload the policies file when it changes, checking this often (0: only on SIGHUP)")
	c.Flags().IntVar(&concurrent, "concurrency", 4, "secrets rotated at once")
	c.Flags().IntVar(&perServer, "per-server", 1, "rotations at once against one target server")
	return c
}

func (a *app) runDaemon(ctx context.Context, listen, tickSpec string, shutdown, watch time.Duration, cfg rotation.TickConfig) error {
	e, db, err := a.engine(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	d := &daemon{a: a, db: db, engine: e, reg: prometheus.NewRegistry(), tickCfg: cfg}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.Metrics = rotation.NewMetrics(d.reg)
	d.reg.MustRegister(&secretCollector{d: d})
	if err := d.reload(ctx); err != nil {
		return err
	}
	if n, err := a.notifier(d.gen.Load().file, db, d.reg); err != nil {
		return err
	} else if n != nil {
		d.notifier = n
		e.Events = n.Send
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another --listen)", listen, err)
	}
	srv := &http.Server{Handler: d.mux(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	a.logger.Info("daemon started", "listen", ln.Addr().String(), "tick", tickSpec, "secrets", len(d.gen.Load().file.Secrets))

	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	ticker, err := schedule.NewTicker(tickSpec, a.logger, func(context.Context) { d.tick(runCtx) })
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("--tick %q: %w", tickSpec, err))
	}
	ticker.Start()
	d.first.Add(1)
	go func() { // resume interrupted runs and rotate what is due at once
		defer d.first.Done()
		d.tick(runCtx)
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var watchC <-chan time.Time
	var lastStat os.FileInfo
	if watch > 0 {
		t := time.NewTicker(watch)
		defer t.Stop()
		watchC = t.C
		lastStat, _ = os.Stat(a.policiesPath)
	}
	for {
		select {
		case <-hup:
			d.reloadLogged(runCtx, "SIGHUP")
		case <-watchC:
			st, err := os.Stat(a.policiesPath)
			if err == nil && (lastStat == nil || !st.ModTime().Equal(lastStat.ModTime()) || st.Size() != lastStat.Size()) {
				lastStat = st
				d.reloadLogged(runCtx, "file changed")
			}
		case <-ctx.Done():
			a.logger.Info("stopping: no new work; waiting for running steps", "timeout", shutdown.String())
			sctx, cancel := context.WithTimeout(context.Background(), shutdown)
			stopErr := ticker.Stop(sctx)
			if stopErr == nil {
				stopErr = waitGroup(sctx, &d.first)
			}
			if stopErr != nil {
				a.logger.Warn("steps still running at the deadline; interrupting them (they resume on the next start)")
				cancelRuns()
				_ = ticker.Stop(context.Background())
				d.first.Wait()
			}
			_ = srv.Shutdown(sctx)
			if d.notifier != nil {
				_ = d.notifier.Close(sctx)
			}
			cancel()
			if g := d.gen.Load(); g != nil {
				g.wiring.Close()
			}
			a.logger.Info("daemon stopped")
			return nil
		}
	}
}

func (d *daemon) reloadLogged(ctx context.Context, why string) {
	if err := d.reload(ctx); err != nil {
		d.a.logger.Error("policies not reloaded; the old ones stay in force", "reason", why, "err", err.Error())
		return
	}
	d.a.logger.Info("policies reloaded", "reason", why, "secrets", len(d.gen.Load().file.Secrets))
}

// reload loads the policies, builds a new generation and records the due
// times; the previous generation is closed once nothing uses it.
func (d *daemon) reload(ctx context.Context) error {
	f, err := d.a.loadPolicy()
	if err != nil {
		return err
	}
	rs, err := rules(f)
	if err != nil {
		return err
	}
	g := &generation{file: f, wiring: newWiring(f, d.a.logger), rules: rs, targets: map[string]rotation.Target{},
		specs: make(map[string]*policy.SecretSpec, len(f.Secrets))}
	for _, s := range f.Secrets {
		g.specs[s.ID] = s
	}
	if err := syncSchedule(ctx, d.db, f, rs, g.wiring.adoptedAge, time.Now()); err != nil {
		g.wiring.Close()
		return err
	}
	old := d.gen.Swap(g)
	d.loadedAt.Store(time.Now().Unix())
	// Loading a large policies file allocates far more than it keeps
	// (100,000 secrets: ~1.2 GiB allocated, ~50 MiB kept); give the rest
	// back to the OS now rather than idling at the load's peak.
	debug.FreeOSMemory()
	if old != nil {
		go func() { old.users.Wait(); old.wiring.Close() }()
	}
	return nil
}

// waitGroup waits for wg, or for ctx to end.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *daemon) tick(ctx context.Context) {
	if !d.ticking.TryLock() {
		d.a.logger.Warn("tick skipped: the previous tick is still running")
		return
	}
	defer d.ticking.Unlock()
	g := d.gen.Load()
	g.users.Add(1)
	defer g.users.Done()
	rep, err := d.engine.Tick(ctx, g.target, d.tickCfg)
	d.lastTick.Store(time.Now().Unix())
	if err != nil && ctx.Err() == nil {
		d.a.logger.Error("tick failed", "err", err.Error())
		return
	}
	if rep.Due > 0 {
		d.a.logger.Info("tick", "due", rep.Due, "succeeded", rep.Succeeded, "failed", rep.Failed, "waiting", rep.Waiting,
			"held", rep.Held, "busy", rep.Busy, "not_due", rep.NotDue, "errors", rep.Errors)
	}
	for _, e := range rep.Errs {
		d.a.logger.Error("run could not advance", "err", e.Error())
	}
	d.ann.announce(ctx, d, time.Now())
}

func (d *daemon) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	m.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if d.gen.Load() == nil {
			http.Error(w, "policies not loaded", http.StatusServiceUnavailable)
			return
		}
		if err := d.db.Ping(ctx); err != nil {
			http.Error(w, "state database unreachable: "+d.db.Where(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	m.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	return m
}

// secretCollector exports each secret's age and next due time, and the
// overdue and quarantined counts, read from the state database at scrape.
type secretCollector struct{ d *daemon }

var (
	descAge         = prometheus.NewDesc("rotator_secret_age_seconds", "Time since the secret's last successful rotation (since it was first seen, if never rotated).", []string{"secret", "class"}, nil)
	descNextDue     = prometheus.NewDesc("rotator_secret_next_due_timestamp_seconds", "When the secret is next due (Unix time).", []string{"secret", "class"}, nil)
	descOverdue     = prometheus.NewDesc("rotator_secrets_overdue", "Secrets older than 1.1 × their interval.", nil, nil)
	descQuarantined = prometheus.NewDesc("rotator_secrets_quarantined", "Secrets with no more automatic attempts (rotator resume lifts it).", nil, nil)
	descLastTick    = prometheus.NewDesc("rotator_last_tick_timestamp_seconds", "When the daemon last finished a tick (Unix time).", nil, nil)
)

func (c *secretCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAge, descNextDue, descOverdue, descQuarantined, descLastTick} {
		ch <- d
	}
}

func (c *secretCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g := c.d.gen.Load()
	all, err := c.d.db.Secrets(ctx)
	if err != nil || g == nil {
		return
	}
	now := time.Now()
	overdue, quarantined := 0, 0
	for _, s := range all {
		spec, ok := g.specs[s.ID]
		if !ok {
			continue
		}
		since := s.CreatedAt
		if s.LastSuccessAt != nil {
			since = *s.LastSuccessAt
		}
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, now.Sub(since).Seconds(), s.ID, s.Class)
		if s.NextDueAt != nil {
			ch <- prometheus.MustNewConstMetric(descNextDue, prometheus.GaugeValue, float64(s.NextDueAt.Unix()), s.ID, s.Class)
		}
		if schedule.Overdue(since, now, g.file.Settings(spec).Interval) {
			overdue++
		}
		if s.Status == "quarantined" {
			quarantined++
		}
	}
	ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, float64(overdue))
	ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.GaugeValue, float64(quarantined))
	ch <- prometheus.MustNewConstMetric(descLastTick, prometheus.GaugeValue, float64(c.d.lastTick.Load()))
}
