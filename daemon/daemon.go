package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rotator/rotator/announce"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

// Config is what the daemon needs; main builds it from flags.
type Config struct {
	DB     *state.DB
	Engine *rotation.Engine
	Logger *slog.Logger
	// Load loads the policies file and builds a generation from it; it is
	// called at start and on every reload (see LoadRequest).
	Load func(LoadRequest) (*Generation, error)
	// PoliciesPath is watched for changes every Watch (0: only SIGHUP).
	PoliciesPath string
	Watch        time.Duration
	// Listen is the address of /healthz, /readyz and /metrics.
	Listen string
	// MetricsRefresh is how often the per-secret metrics are read from
	// the state database (default DefaultMetricsRefresh); scrapes are
	// served from the last read.
	MetricsRefresh time.Duration
	// PerSecretMetrics says whether /metrics exports the series labelled
	// by secret (default PerSecretAuto); the aggregates are always there.
	PerSecretMetrics PerSecret
	// MaxScrapes caps the /metrics requests in flight (default
	// DefaultMaxScrapes); beyond it /metrics answers 503. /healthz and
	// /readyz are not counted.
	MaxScrapes int
	// IdleTimeout closes an idle keep-alive connection (default
	// DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Tick is the robfig/cron spec of the ticks.
	Tick string
	// Shutdown bounds how long running steps may take on SIGTERM.
	Shutdown time.Duration
	TickCfg  rotation.TickConfig
	// Registry receives the daemon's metrics (and should hold the
	// engine's and the notifier's).
	Registry *prometheus.Registry
	// Notifier, when set, is closed (flushed) on shutdown.
	Notifier interface{ Close(context.Context) error }
	// Ready is told the address the HTTP server listens on.
	Ready func(addr string)
}

// LoadRequest is what Config.Load is asked for.
type LoadRequest struct {
	// Prev is the File in force, whose unchanged pieces the load may take
	// (policy.LoadReusing); nil at start and on a lean reload.
	Prev *policy.File
	// File, when set, is the policies to build the generation from,
	// already loaded, instead of reading the file: the policies in force
	// parsed again from their text, after a lean reload whose new file
	// was refused (lean.go). Load builds it as it builds a file it loads.
	File *policy.File
}

// Defaults of the HTTP server. A request must send its headers within
// ReadHeaderTimeout and its body within ReadTimeout; a response must be
// written within WriteTimeout.
const (
	DefaultMaxScrapes  = 4
	DefaultIdleTimeout = 60 * time.Second
	ReadHeaderTimeout  = 5 * time.Second
	ReadTimeout        = 10 * time.Second
	WriteTimeout       = 30 * time.Second
)

// ErrTickSpec wraps a --tick spec that does not parse.
var ErrTickSpec = errors.New("tick spec")

// Daemon runs ticks on a schedule and serves its HTTP endpoints.
type Daemon struct {
	cfg Config
	// gen is the generation in force. Whoever works with it takes it
	// through UseGeneration (or Generation), which hold gate shared; a
	// reload swaps it holding gate exclusively, and a lean reload
	// (lean.go) holds gate while gen is nil. loaded is set by the first
	// load: the policies have been in force since (/readyz).
	gen      atomic.Pointer[Generation]
	gate     sync.RWMutex
	loaded   atomic.Bool
	lastTick atomic.Int64
	ann      announce.Announcer
	// ticking makes ticks exclusive: the first tick runs outside the
	// ticker (at once, on start), and two overlapping ticks would find
	// each other's secrets busy (every run has a lease holder of its own).
	// first is that first tick, awaited on shutdown.
	ticking sync.Mutex
	first   sync.WaitGroup
	// checks is the scheduled published-credential check (check.go); set
	// by Run before the first tick.
	checks *checkLoop
	// metrics is the per-secret metrics, read on their own schedule.
	metrics *metricsCache
	// wake ticks when the earliest waiting run's wait_until comes
	// (wake.go); wakes tracks its loop, awaited on shutdown.
	wake  *waker
	wakes sync.WaitGroup
	// gather is what /metrics serves (metrics.go).
	gather gatherer
	// page is the status page (SetPage); nil: not served.
	page       http.Handler
	pageListen string
	// onDrain, in tests, is told when a lean reload starts to wait for
	// the users of the generation it drops.
	onDrain func()
	// leaning is set while a lean reload holds (or is taking) gate: a
	// tick that comes meanwhile does not wait for it but is deferred
	// (tickDeferred), and the reload runs one when it ends (lean.go).
	leanMu       sync.Mutex
	leaning      bool
	tickDeferred bool
}

// New registers the daemon's metrics and loads the policies (syncing the
// due times); a bad policies file is an error.
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	if cfg.MetricsRefresh <= 0 {
		cfg.MetricsRefresh = DefaultMetricsRefresh
	}
	if cfg.MaxScrapes <= 0 {
		cfg.MaxScrapes = DefaultMaxScrapes
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	d := &Daemon{cfg: cfg, wake: newWaker()}
	d.metrics = newMetricsCache(d)
	d.gather = newGatherer(d)
	cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry.MustRegister(&collector{d: d})
	if err := d.reload(ctx); err != nil {
		return nil, err
	}
	// The first scrape already has the per-secret metrics.
	d.metrics.refresh(ctx)
	return d, nil
}

// SetNotifier sets the notifier flushed on shutdown (built after New,
// from the loaded policies).
func (d *Daemon) SetNotifier(n interface{ Close(context.Context) error }) { d.cfg.Notifier = n }

// SetPage serves the status page (daemon/statuspage), before Run: on its
// own address when listen is not empty, else at / of the --listen address
// beside /healthz, /readyz and /metrics.
func (d *Daemon) SetPage(h http.Handler, listen string) { d.page, d.pageListen = h, listen }

// Generation is the policies in force; during a lean reload it waits for
// the reload to end. It is not counted as a user (UseGeneration): a lean
// reload may drop it while the caller still holds it.
func (d *Daemon) Generation() *Generation {
	d.gate.RLock()
	defer d.gate.RUnlock()
	return d.gen.Load()
}

// UseGeneration is the policies in force, counted as a user until done
// is called: the generation is not closed, nor dropped by a lean reload,
// before that (a lean reload waits for it). During a lean reload it
// waits for the reload to end. g is nil only before the first load.
func (d *Daemon) UseGeneration() (g *Generation, done func()) {
	d.gate.RLock()
	defer d.gate.RUnlock()
	g = d.gen.Load()
	if g == nil {
		return nil, func() {}
	}
	g.users.Add(1)
	return g, g.users.Done
}

// Run ticks until ctx ends (SIGTERM), reloading the policies on SIGHUP and
// when the file changes; then it stops taking work, waits for running steps
// up to Config.Shutdown, and returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.cfg
	log := cfg.Logger
	// SIGHUP is taken over before the daemon is reachable: a reload asked
	// for as soon as /healthz answers must not kill it (SIGHUP's default).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another --listen)", cfg.Listen, err)
	}
	// The check loop exists before anything is served: the status page
	// reads its last reports (kept only when the page is served).
	d.checks = newCheckLoop(d, cfg.TickCfg.Concurrency, d.page != nil)
	srv := &http.Server{Handler: d.mux(), ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, IdleTimeout: cfg.IdleTimeout}
	var pageSrv *http.Server
	if d.page != nil && d.pageListen != "" {
		pln, err := net.Listen("tcp", d.pageListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s: %w (choose another --status-page-listen)", d.pageListen, err)
		}
		pageSrv = &http.Server{Handler: d.page, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
			WriteTimeout: WriteTimeout, IdleTimeout: cfg.IdleTimeout}
		go func() { _ = pageSrv.Serve(pln) }()
		log.Info("status page", "listen", pln.Addr().String())
		defer func() { _ = pageSrv.Close() }()
	}
	go func() { _ = srv.Serve(ln) }()
	log.Info("daemon started", "listen", ln.Addr().String(), "tick", cfg.Tick, "secrets", len(d.gen.Load().File.Secrets))
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}

	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	checkCtx, stopChecks := context.WithCancel(runCtx)
	defer stopChecks()
	go d.checks.run(checkCtx)
	metricsCtx, stopMetrics := context.WithCancel(runCtx)
	defer stopMetrics()
	go d.metrics.run(metricsCtx, cfg.MetricsRefresh)
	ticker, err := schedule.NewTicker(cfg.Tick, log, func(context.Context) { d.tick(runCtx) })
	if err != nil {
		_ = srv.Close()
		stopChecks()
		<-d.checks.done
		return fmt.Errorf("%w %q: %w", ErrTickSpec, cfg.Tick, err)
	}
	ticker.Start()
	d.first.Add(1)
	go func() { // resume interrupted runs and rotate what is due at once
		defer d.first.Done()
		d.tick(runCtx)
	}()
	wakeCtx, stopWake := context.WithCancel(runCtx)
	defer stopWake()
	d.wakes.Add(1)
	go func() { // continue waiting runs at their wait_until
		defer d.wakes.Done()
		for {
			select {
			case <-wakeCtx.Done():
				return
			case <-d.wake.c:
				d.tickAfterOthers(wakeCtx)
			}
		}
	}()

	var watchC <-chan time.Time
	var lastStat os.FileInfo
	if cfg.Watch > 0 {
		t := time.NewTicker(cfg.Watch)
		defer t.Stop()
		watchC = t.C
		lastStat, _ = os.Stat(cfg.PoliciesPath)
	}
	// fatal: a lean reload left no policies in force; the daemon stops
	// as on SIGTERM and Run returns it. stopped: a SIGTERM stopped a
	// reload (its load or sync, or a lean reload's wait for the runs in
	// flight), which the shutdown's log says.
	var fatal error
	var stopped *stoppedError
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	reload := func(why string) {
		// ctx, not runCtx: a SIGTERM stops the reload, so that the drain
		// begins at once (the pod is killed at the end of its grace
		// period), not after a load and sync of tens of seconds. None
		// starts once the daemon is stopping.
		if ctx.Err() != nil {
			return
		}
		err := d.reloadLogged(ctx, why)
		switch {
		case errors.As(err, &stopped):
		case err != nil:
			fatal = err
			stopLoop()
		}
	}
	for {
		select {
		case <-hup:
			reload("SIGHUP")
		case <-watchC:
			st, err := os.Stat(cfg.PoliciesPath)
			if err == nil && (lastStat == nil || !st.ModTime().Equal(lastStat.ModTime()) || st.Size() != lastStat.Size()) {
				lastStat = st
				reload("file changed")
			}
		case <-loopCtx.Done():
			if stopped != nil {
				log.Info("stopping: no new work; waiting for running steps", "timeout", cfg.Shutdown.String(),
					"reload", "stopped "+stopped.stage, "policies_in_force", stopped.inForce())
			} else {
				log.Info("stopping: no new work; waiting for running steps", "timeout", cfg.Shutdown.String())
			}
			stopChecks() // read-only: nothing to finish
			<-d.checks.done
			stopMetrics()
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown)
			d.wake.stop()
			stopWake() // a wake tick in progress finishes like a cron tick
			stopErr := ticker.Stop(sctx)
			if stopErr == nil {
				stopErr = waitGroup(sctx, &d.first)
			}
			if stopErr == nil {
				stopErr = waitGroup(sctx, &d.wakes)
			}
			if stopErr != nil {
				log.Warn("steps still running at the deadline; interrupting them (they resume on the next start)")
				cancelRuns()
				_ = ticker.Stop(context.Background())
				d.first.Wait()
				d.wakes.Wait()
			}
			_ = srv.Shutdown(sctx)
			if cfg.Notifier != nil {
				_ = cfg.Notifier.Close(sctx)
			}
			cancel()
			if g := d.Generation(); g != nil {
				g.Close()
			}
			if fatal != nil {
				log.Error("daemon stopped", "err", fatal.Error())
				return fatal
			}
			log.Info("daemon stopped")
			return nil
		}
	}
}

// reloadLogged reloads and logs the outcome; the error is errNoPolicies
// (the daemon must stop) or a *stoppedError (ctx ended: the daemon is
// stopping), never a refused file.
func (d *Daemon) reloadLogged(ctx context.Context, why string) error {
	start := time.Now()
	err := d.reload(ctx)
	var stopped *stoppedError
	switch {
	case errors.As(err, &stopped):
		d.cfg.Logger.Warn("policies reload stopped: the daemon is shutting down", "reason", why, "while", stopped.stage,
			"policies_in_force", stopped.inForce(), "took", time.Since(start).Round(time.Millisecond).String())
		return err
	case errors.Is(err, errNoPolicies):
		d.cfg.Logger.Error("policies not reloaded, and the old ones could not be put back: no policies in force; stopping", "reason", why, "err", err.Error())
		return err
	case err != nil:
		d.cfg.Logger.Error("policies not reloaded; the old ones stay in force", "reason", why, "err", err.Error(),
			"took", time.Since(start).Round(time.Millisecond).String())
		return nil
	}
	d.cfg.Logger.Info("policies reloaded", "reason", why, "secrets", len(d.gen.Load().File.Secrets),
		"took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// ReloadGCPercent is the garbage collector's target (GOGC) while the
// daemon loads policies, syncs their due times and still holds the
// generation they replace. A reload holds two generations and the loader's
// garbage; with the default GOGC of 100 the heap may grow to twice what is
// live, which at 100,000 secrets was most of the reload's peak RSS.
// Collecting more often for the duration of a (re)load (seconds; tens of
// seconds at 100,000 secrets on a busy machine) bounds that peak; the setting in force (GOGC) is restored once the old generation is
// closed. A process run with GOGC=off (governed by GOMEMLIMIT) or a lower
// GOGC is left as it is.
const ReloadGCPercent = 25

// reloadGC holds GOGC at ReloadGCPercent while any reload (of any daemon
// in the process: the setting is the process's) is in progress.
var reloadGC gcHold

// HoldGC holds GOGC at ReloadGCPercent, as a reload does, until release
// is called: for work of the process that allocates much and keeps little
// (the status page's read of every secret).
func HoldGC() (release func()) {
	reloadGC.acquire()
	var once sync.Once
	return func() { once.Do(reloadGC.release) }
}

// gcHold lowers GOGC while it is held at least once.
type gcHold struct {
	mu   sync.Mutex
	n    int
	prev int
	set  bool
}

func (h *gcHold) acquire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		// Off, or already lower: left as it is (read, not set and put
		// back: GOGC is never 25 for a moment where it was lower).
		h.set = gcPercent() > ReloadGCPercent
		if h.set {
			h.prev = debug.SetGCPercent(ReloadGCPercent)
		}
	}
	h.n++
}

// gcPercent is GOGC as set now (-1: off).
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(int64(s[0].Value.Uint64()))
}

func (h *gcHold) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if h.n == 0 && h.set {
		debug.SetGCPercent(h.prev)
		h.set = false
	}
}

// reload loads the policies, builds a new generation and records the due
// times; the previous generation is closed once nothing uses it. Memory:
// the heap the idle daemon kept (up to twice the live heap at GOGC 100) is
// returned to the OS first, and the load runs at ReloadGCPercent until the
// old generation is closed and its memory returned too. A reload of a
// large file that would reuse less than half of the policies in force is
// a lean one (lean.go): the old generation is dropped before the load.
func (d *Daemon) reload(ctx context.Context) error {
	reloadGC.acquire()
	var prev *policy.File
	inForce := d.gen.Load()
	if inForce != nil {
		if src, ok := d.leanSource(inForce.File); ok {
			return d.reloadLean(ctx, src)
		}
		prev = inForce.File
	}
	debug.FreeOSMemory()
	g, err := d.load(ctx, LoadRequest{Prev: prev})
	if err != nil {
		reloadGC.release()
		return ifStopped(ctx, "loading the policies", true, err)
	}
	if err := g.Sync(ctx, d.cfg.DB, time.Now()); err != nil {
		g.Close()
		if inForce != nil {
			d.syncAgain(ctx, inForce)
		}
		reloadGC.release()
		return ifStopped(ctx, "syncing the due times", true, err)
	}
	d.gate.Lock()
	old := d.gen.Swap(g)
	d.gate.Unlock()
	d.loaded.Store(true)
	if m := d.cfg.Engine.Metrics; m != nil {
		m.SetPerSecret(d.perSecret(g))
	}
	// Loading a large policies file allocates far more than it keeps
	// (100,000 secrets: ~1.2 GiB allocated, ~50 MiB kept): the rest, and
	// the old generation once its ticks and checks are over (the check
	// loop and the metrics refer to generations weakly), go back to the
	// OS rather than idling at the load's peak.
	done := func() {
		debug.FreeOSMemory()
		reloadGC.release()
	}
	if old != nil {
		go func() {
			old.users.Wait()
			old.Close()
			done()
		}()
	} else {
		done()
	}
	if d.checks != nil {
		d.checks.poke()
	}
	d.metrics.poke()
	return nil
}

// syncAgain syncs the due times of the policies in force g again, after
// the sync of a refused file failed: it may have written rows (their
// class, their due times) before it failed, and cleared the mark only;
// the daemon syncs at a reload, so until the next one those rows would
// follow the refused file (a due time 90 days on where the policies in
// force say 30). A sync with nothing written is skipped (the mark is
// still theirs). Not on a shutdown: the next start syncs.
func (d *Daemon) syncAgain(ctx context.Context, g *Generation) {
	if ctx.Err() != nil {
		return
	}
	if err := g.Sync(ctx, d.cfg.DB, time.Now()); err != nil && ctx.Err() == nil {
		d.cfg.Logger.Warn("the due times of the policies in force could not be synced again after the refused file's sync; until the next reload some may follow the refused file",
			"err", err.Error())
	}
}

// load calls Config.Load, and stops waiting for it when ctx ends (a
// shutdown). A load reads, parses and builds; it writes nothing, so what
// a stopped load returns later is only closed.
func (d *Daemon) load(ctx context.Context, req LoadRequest) (*Generation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type loaded struct {
		g   *Generation
		err error
	}
	c := make(chan loaded, 1)
	go func() {
		g, err := d.cfg.Load(req)
		c <- loaded{g, err}
	}()
	select {
	case l := <-c:
		return l.g, l.err
	case <-ctx.Done():
		go func() {
			if l := <-c; l.g != nil {
				l.g.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// stoppedError is a reload stopped by the daemon's shutdown (its context
// ended): stage says where, kept whether the policies in force before it
// still are.
type stoppedError struct {
	stage string
	kept  bool
	err   error
}

func (e *stoppedError) Error() string {
	return "policies reload stopped by the shutdown while " + e.stage + ": " + e.err.Error()
}

func (e *stoppedError) Unwrap() error { return e.err }

// inForce says, for the logs, what is in force after the stop.
func (e *stoppedError) inForce() string {
	if e.kept {
		return "the old ones"
	}
	return "none: the old ones were dropped before the load and are not built again for a shutdown (nothing was running)"
}

// ifStopped is err, or a *stoppedError when ctx has ended (a shutdown).
func ifStopped(ctx context.Context, stage string, kept bool, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return &stoppedError{stage: stage, kept: kept, err: err}
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

func (d *Daemon) tick(ctx context.Context) {
	if !d.ticking.TryLock() {
		d.cfg.Logger.Warn("tick skipped: the previous tick is still running")
		return
	}
	defer d.ticking.Unlock()
	d.tickLocked(ctx)
}

// tickAfterOthers is a wake-up's tick: it waits for a tick in progress
// instead of being skipped, since that tick may have looked before the
// wake-up's wait_until.
func (d *Daemon) tickAfterOthers(ctx context.Context) {
	d.ticking.Lock()
	defer d.ticking.Unlock()
	if ctx.Err() != nil {
		return
	}
	d.tickLocked(ctx)
}

func (d *Daemon) tickLocked(ctx context.Context) {
	log := d.cfg.Logger
	g, done, deferred := d.useForTick()
	if deferred {
		// Not "skipped": the lean reload runs a tick when it ends
		// (lean.go); the due secrets stay due in the state database.
		log.Info("tick deferred: a policies reload is in progress; a tick runs as soon as it ends")
		return
	}
	// Whatever the tick does, the next waiting run is woken at its
	// wait_until (runs of other processes too).
	defer d.armWake(ctx)
	defer done()
	if g == nil {
		return // no policies: the daemon is stopping (errNoPolicies)
	}
	// The tick's targets are built as it asks for them and freed when its
	// runs have returned (deferred before users.Done: the generation is
	// closed only after).
	lookup, release := g.Lookup()
	defer release()
	rep, err := d.cfg.Engine.Tick(ctx, lookup, d.cfg.TickCfg)
	d.lastTick.Store(time.Now().Unix())
	if err != nil && ctx.Err() == nil {
		log.Error("tick failed", "err", err.Error())
		return
	}
	if rep.Due > 0 {
		log.Info("tick", "due", rep.Due, "succeeded", rep.Succeeded, "failed", rep.Failed, "waiting", rep.Waiting,
			"held", rep.Held, "busy", rep.Busy, "not_due", rep.NotDue, "errors", rep.Errors)
	}
	for _, e := range rep.Errs {
		log.Error("run could not advance", "err", e.Error())
	}
	if d.checks != nil {
		d.checks.afterTick(rep)
	}
	if len(rep.Results) > 0 {
		// Runs changed the state: the metrics read it again (coalesced).
		d.metrics.poke()
	}
	if emit := d.cfg.Engine.Events; emit != nil {
		if err := d.ann.Announce(ctx, d.cfg.DB, g, emit, time.Now()); err != nil {
			log.Warn("could not scan for overdue secrets", "err", err.Error())
		}
	}
}

func (d *Daemon) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	m.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		// Not gen: a lean reload has none in force for a while (and ticks
		// wait for it), which is no reason to take the pod out of service.
		if !d.loaded.Load() {
			http.Error(w, "policies not loaded", http.StatusServiceUnavailable)
			return
		}
		if err := d.cfg.DB.Ping(ctx); err != nil {
			http.Error(w, "state database unreachable: "+d.cfg.DB.Where(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	// /metrics reads memory only (metrics.go); the cap keeps a flood of
	// scrapes from holding goroutines and CPU. Probes are not capped.
	m.Handle("/metrics", promhttp.HandlerFor(d.gather, promhttp.HandlerOpts{MaxRequestsInFlight: d.cfg.MaxScrapes}))
	if d.page != nil && d.pageListen == "" {
		m.Handle("/", d.page)
	}
	return m
}
