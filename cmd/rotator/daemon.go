package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/daemon/statuspage"
	"github.com/rotator/rotator/rotation"
)

func (a *app) daemonCmd() *cobra.Command {
	var (
		listen     string
		tick       string
		shutdown   time.Duration
		watch      time.Duration
		refresh    time.Duration
		maxScrapes int
		perSecret  string
		page       pageFlags
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
policies loaded), /metrics (Prometheus), unauthenticated. The default :9090
listens on every interface, as Kubernetes probes need; on a shared host use
--listen 127.0.0.1:9090, in a cluster a NetworkPolicy. /metrics is served
from memory, read from the state database every --metrics-refresh; at most
--max-scrapes scrapes run at once (more get 503); the probes are never
capped. Series labelled by secret (rotator_secret_age_seconds,
rotator_secret_next_due_timestamp_seconds, rotator_published_credential_ok,
rotator_published_stores_agree, and the secret label of
rotator_rotations_total) are exported with --per-secret-metrics on, and by
default (auto) while the policies hold at most 1,000 secrets; the aggregates
(rotator_secrets_managed, _overdue, _quarantined, _drift,
rotator_published_credentials_failing, rotator_published_stores_disagree) are
always there, so a scrape stays small at 100,000 secrets.

Status page (off unless --status-page): a read-only HTML page of every
secret (condition, version, credential name, age, next due, last outcome)
and of each secret's runs, with the commands that act on it; no JavaScript,
no outside resources, never a secret value. It reads the state database at
most once per --status-page-refresh however many people look. It is served
either on an address of its own (--status-page-listen, e.g. 127.0.0.1:8080
behind 'kubectl port-forward') or, on the --listen address, only with a
token (--status-page-token-file or ROTATOR_STATUS_PAGE_TOKEN), which a
browser sends as the basic-auth password and a client as a bearer token.

Checks: the daemon tests what every store publishes as current, as 'rotator
check' does: every secret right after start, then once per
defaults.check.interval (default 15m) at its own offset within it, and after
each run ends or is held. rotator_published_credential_ok{secret,store} is 0
(rotator_published_credentials_failing above 0) while a published credential
does not work, and a credential_broken
notification is sent once per broken credential.

Signals: SIGHUP reloads the policies file (a bad file is rejected and the old
policies stay in force); SIGTERM or SIGINT stops taking new work, lets running
steps finish within --shutdown-timeout (runs are journaled step by step, so
anything cut off resumes on the next start), and exits 0.`,
		Example: `  rotator daemon --listen :9090
  rotator daemon --tick '@every 30s' --concurrency 8 --watch-policies 10s
  rotator daemon --status-page --status-page-listen 127.0.0.1:8080`,
		Args: cobra.NoArgs,
	}
	tickCfg := tickFlags(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		per, err := daemon.ParsePerSecret(perSecret)
		if err != nil {
			return withCode(exitUsage, fmt.Errorf("--per-secret-metrics: %w", err))
		}
		token, err := page.token() // a usage error before anything opens
		if err != nil {
			return err
		}
		e, db, err := a.engine(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		reg := prometheus.NewRegistry()
		e.Metrics = rotation.NewMetrics(reg)
		cfg := daemon.Config{
			DB: db, Engine: e, Logger: a.logger, Registry: reg,
			// A reload reuses what has not changed in the policies in
			// force (req.Prev); after a lean reload's new file was
			// refused, the policies in force come back parsed again
			// (req.File).
			Load: func(req daemon.LoadRequest) (*daemon.Generation, error) {
				f := req.File
				if f == nil {
					var err error
					if f, err = a.reloadPolicy(req.Prev); err != nil {
						return nil, err
					}
				}
				w := newWiring(f, a.logger)
				g, err := daemon.NewGeneration(f, w)
				if err != nil {
					w.Close()
				}
				return g, err
			},
			PoliciesPath: a.policiesPath, Watch: watch, Listen: listen, Tick: tick, Shutdown: shutdown,
			MetricsRefresh: refresh, MaxScrapes: maxScrapes, PerSecretMetrics: per,
			TickCfg: *tickCfg,
		}
		d, err := daemon.New(ctx, cfg)
		if err != nil {
			return err
		}
		if page.on {
			p, err := statuspage.New(statuspage.Config{DB: db, Source: d, Refresh: page.refresh, Token: token, Logger: a.logger})
			if err != nil {
				return err
			}
			d.SetPage(p, page.listen)
		}
		n, err := a.notifier(d.Generation().File, db, reg)
		if err != nil {
			return err
		}
		if n != nil {
			e.Events = n.Send
			d.SetNotifier(n)
		}
		err = d.Run(ctx)
		if errors.Is(err, daemon.ErrTickSpec) {
			return withCode(exitUsage, fmt.Errorf("--tick: %w", err))
		}
		return err
	}
	c.Flags().StringVar(&listen, "listen", envOr("ROTATOR_LISTEN", ":9090"), "address for /healthz, /readyz and /metrics (env ROTATOR_LISTEN); the default, every interface, is what Kubernetes probes need")
	c.Flags().DurationVar(&refresh, "metrics-refresh", daemon.DefaultMetricsRefresh, "how often /metrics' per-secret values are read from the state database (scrapes never query it)")
	c.Flags().StringVar(&perSecret, "per-secret-metrics", envOr("ROTATOR_PER_SECRET_METRICS", string(daemon.PerSecretAuto)),
		"export /metrics series labelled by secret: on, off, or auto (on while the policies hold at most 1,000 secrets) (env ROTATOR_PER_SECRET_METRICS); aggregates are always exported")
	c.Flags().IntVar(&maxScrapes, "max-scrapes", daemon.DefaultMaxScrapes, "/metrics requests in flight; more are answered 503")
	c.Flags().StringVar(&tick, "tick", "@every 1m", "how often to look for due secrets (robfig/cron spec)")
	c.Flags().DurationVar(&shutdown, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long running steps may take to finish")
	c.Flags().DurationVar(&watch, "watch-policies", 0, "also reload the policies file when it changes, checking this often (0: only on SIGHUP)")
	c.Flags().BoolVar(&page.on, "status-page", false, "serve the read-only status page (see --status-page-listen and --status-page-token-file)")
	c.Flags().StringVar(&page.listen, "status-page-listen", os.Getenv("ROTATOR_STATUS_PAGE_LISTEN"), "serve the status page on this address of its own (env ROTATOR_STATUS_PAGE_LISTEN); empty: at / of --listen, which needs a token")
	c.Flags().StringVar(&page.tokenFile, "status-page-token-file", "", "require this file's token on the status page (or env ROTATOR_STATUS_PAGE_TOKEN): bearer token, or basic-auth password")
	c.Flags().DurationVar(&page.refresh, "status-page-refresh", statuspage.DefaultRefresh, "how long one read of the state database serves every status page view")
	return c
}

// pageFlags are the status page's flags.
type pageFlags struct {
	on        bool
	listen    string
	tokenFile string
	refresh   time.Duration
}

// token reads the status page token and refuses an open page on the
// shared --listen address (every interface by default, what probes and
// scrapers reach).
func (p pageFlags) token() (string, error) {
	if !p.on {
		return "", nil
	}
	token := os.Getenv("ROTATOR_STATUS_PAGE_TOKEN")
	if p.tokenFile != "" {
		b, err := os.ReadFile(p.tokenFile)
		if err != nil {
			return "", withCode(exitUsage, fmt.Errorf("--status-page-token-file: %w", err))
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return "", withCode(exitUsage, fmt.Errorf("--status-page-token-file %s is empty", p.tokenFile))
		}
	}
	if token == "" && p.listen == "" {
		return "", withCode(exitUsage, errors.New("--status-page on the --listen address needs a token (--status-page-token-file or ROTATOR_STATUS_PAGE_TOKEN), or an address of its own (--status-page-listen 127.0.0.1:8080)"))
	}
	return token, nil
}

// tickFlags adds the bounds of a tick, --concurrency and --per-server, to
// c: the daemon and `run --due` take the same flags with the same defaults
// and pass them to the same rotation.Engine.Tick.
func tickFlags(c *cobra.Command) *rotation.TickConfig {
	cfg := &rotation.TickConfig{}
	c.Flags().IntVar(&cfg.Concurrency, "concurrency", 4, "secrets rotated at once (per tick)")
	c.Flags().IntVar(&cfg.PerServer, "per-server", 1, "rotations at once against one target server (one Postgres admin DSN)")
	return cfg
}
