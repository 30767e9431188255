package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/rotator/rotator/state"
)

// The per-secret metrics are read from the state database by one
// goroutine (metricsCache.run), every Config.MetricsRefresh and after each
// reload, one query at a time: at most one state connection, however many
// scrapers there are. A scrape only reads the last snapshot; it never
// queries the database, so scrapes cannot take the connections that lease
// renewals and /readyz need.

// DefaultMetricsRefresh is how often the per-secret metrics are read from
// the state database when Config.MetricsRefresh is zero.
const DefaultMetricsRefresh = 30 * time.Second

var (
	descAge            = prometheus.NewDesc("rotator_secret_age_seconds", "Time since the secret's last successful rotation (since it was first seen, if never rotated).", []string{"secret", "class"}, nil)
	descNextDue        = prometheus.NewDesc("rotator_secret_next_due_timestamp_seconds", "When the secret is next due (Unix time).", []string{"secret", "class"}, nil)
	descOverdue        = prometheus.NewDesc("rotator_secrets_overdue", "Secrets older than 1.1 × their interval.", nil, nil)
	descQuarantined    = prometheus.NewDesc("rotator_secrets_quarantined", "Secrets with no more automatic attempts (rotator resume lifts it).", nil, nil)
	descDrift          = prometheus.NewDesc("rotator_secrets_drift", "Secrets in drift: the state database and the stores disagree; nothing touches them until rotator adopt.", nil, nil)
	descNeedsAttention = prometheus.NewDesc("rotator_runs_needs_attention", "Runs whose compensation is not complete (a store could not be put back); later ticks continue them.", nil, nil)
	descLastTick       = prometheus.NewDesc("rotator_last_tick_timestamp_seconds", "When the daemon last finished a tick (Unix time).", nil, nil)
	descRefreshed      = prometheus.NewDesc("rotator_metrics_refreshed_timestamp_seconds", "When the per-secret metrics were last read from the state database (Unix time; 0: never).", nil, nil)
	descRefreshes      = prometheus.NewDesc("rotator_metrics_refreshes_total", "Reads of the per-secret metrics from the state database (successful or not).", nil, nil)
	descHeld           = prometheus.NewDesc("rotator_runs_held", "Runs held at verify: the grace ended with clients on the old credential (on_timeout hold); both credentials stay valid until a person looks.", nil, nil)
	descManaged        = prometheus.NewDesc("rotator_secrets_managed", "Secrets of the policies with a row in the state database.", nil, nil)
)

// PerSecret says whether /metrics exports the series labelled by secret
// (Config.PerSecretMetrics). The aggregates are always exported.
type PerSecret string

const (
	// PerSecretAuto (the default): per-secret series while the policies
	// hold at most PerSecretAutoMax secrets.
	PerSecretAuto PerSecret = "auto"
	PerSecretOn   PerSecret = "on"
	PerSecretOff  PerSecret = "off"
)

// PerSecretAutoMax is the number of secrets up to which PerSecretAuto
// exports per-secret series: a scrape stays well under 1 MB.
const PerSecretAutoMax = 1000

// ParsePerSecret reads a PerSecret ("" is PerSecretAuto).
func ParsePerSecret(s string) (PerSecret, error) {
	switch p := PerSecret(s); p {
	case "":
		return PerSecretAuto, nil
	case PerSecretAuto, PerSecretOn, PerSecretOff:
		return p, nil
	}
	return "", fmt.Errorf("per-secret metrics %q: expected auto, on or off", s)
}

// perSecret reports whether the series labelled by secret are exported
// for generation g.
func (d *Daemon) perSecret(g *Generation) bool {
	switch d.cfg.PerSecretMetrics {
	case PerSecretOn:
		return true
	case PerSecretOff:
		return false
	}
	return g == nil || len(g.File.Secrets) <= PerSecretAutoMax
}

// The engine's families labelled by secret (rotation.Metrics). Without
// per-secret series, /metrics serves rotator_rotations_total summed over
// the secrets (labels class and outcome), and the two check families only
// through their aggregates (always served).
const (
	famRotations    = "rotator_rotations_total"
	famPublishedOK  = "rotator_published_credential_ok"
	famStoresAgree  = "rotator_published_stores_agree"
	famFailing      = "rotator_published_credentials_failing"
	famDisagreeing  = "rotator_published_stores_disagree"
	helpFailing     = "Published credentials (secret and store) whose last check found them not working or could not check them: the count of rotator_published_credential_ok == 0 (which is exported with per-secret series on)."
	helpDisagreeing = "Secrets whose stores publish different current versions at the last check: the count of rotator_published_stores_agree == 0."
)

// secretRow is what a scrape needs of one secret.
type secretRow struct {
	id, class string
	since     time.Time
	nextDue   *time.Time // nil: none, or quarantined
}

// snapshot is one read of the state database.
type snapshot struct {
	at time.Time
	// gen, n and last say what it was built from: the generation (weak:
	// a snapshot does not keep a replaced generation in memory), and the
	// fingerprint of rotator_secrets (state.DB.SecretsChanged).
	gen  weak.Pointer[Generation]
	n    int
	last time.Time
	// secrets is nil without per-secret series.
	secrets []secretRow
	// overdueAt holds, sorted, the instant (Unix ns) after which each
	// secret is overdue (schedule.Overdue): a scrape counts the overdue
	// secrets with one binary search.
	overdueAt                            []int64
	managed, quarantined, drift, needing int
	held                                 int
}

// fullEvery forces a full read every so many refreshes even when the
// fingerprint did not move (a transaction that committed late with an
// older updated_at).
const fullEvery = 10

// metricsCache holds the last snapshot and refreshes it.
type metricsCache struct {
	d         *Daemon
	snap      atomic.Pointer[snapshot]
	refreshes atomic.Int64
	wake      chan struct{}
	// mu makes refreshes exclusive (the loop, and the first one in Run);
	// light counts the refreshes since the last full read.
	mu    sync.Mutex
	light int
}

func newMetricsCache(d *Daemon) *metricsCache {
	return &metricsCache{d: d, wake: make(chan struct{}, 1)}
}

// poke asks for a refresh now (after a reload).
func (c *metricsCache) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run refreshes every interval, and when poked, until ctx ends.
func (c *metricsCache) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
		c.refresh(ctx)
	}
}

// refresh reads the runs needing attention, the held runs and the
// fingerprint of the secrets, then, when the secrets changed (or the
// generation, or every fullEvery refreshes), their summaries; on an error
// the previous snapshot stays. An idle daemon thus reads three counts, not
// every row.
func (c *metricsCache) refresh(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select { // this read answers a pending poke
	case <-c.wake:
	default:
	}
	c.refreshes.Add(1)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	g, done := c.d.UseGeneration()
	defer done()
	if g == nil {
		return
	}
	warn := func(err error) {
		c.d.cfg.Logger.Warn("metrics not refreshed; the previous values are served", "err", err.Error())
	}
	needing, err := c.d.cfg.DB.CountActiveRuns(ctx, state.RunNeedsAttention)
	if err != nil {
		warn(err)
		return
	}
	held, err := c.d.cfg.DB.CountHeldRuns(ctx)
	if err != nil {
		warn(err)
		return
	}
	n, last, err := c.d.cfg.DB.SecretsChanged(ctx)
	if err != nil {
		warn(err)
		return
	}
	per := c.d.perSecret(g)
	if prev := c.snap.Load(); prev != nil && prev.gen == weak.Make(g) && prev.n == n && prev.last.Equal(last) &&
		(prev.secrets != nil) == per && c.light < fullEvery {
		s := *prev
		s.at, s.needing, s.held = time.Now(), needing, held
		c.snap.Store(&s)
		c.light++
		return
	}
	all, err := c.d.cfg.DB.SecretSummaries(ctx)
	if err != nil {
		warn(err)
		return
	}
	c.light = 0
	s := &snapshot{at: time.Now(), gen: weak.Make(g), n: n, last: last, needing: needing, held: held, overdueAt: make([]int64, 0, len(all))}
	if per {
		s.secrets = make([]secretRow, 0, len(all))
	}
	for _, sec := range all {
		set, ok := g.Settings(sec.ID)
		if !ok {
			continue
		}
		s.managed++
		if iv := set.Interval; iv > 0 {
			// schedule.Overdue: older than interval + interval/10.
			s.overdueAt = append(s.overdueAt, sec.Since.Add(iv+iv/10).UnixNano())
		}
		switch sec.Status {
		case state.SecretQuarantined:
			s.quarantined++
		case state.SecretDrift:
			s.drift++
		}
		if per {
			row := secretRow{id: sec.ID, class: sec.Class, since: sec.Since}
			if sec.NextDueAt != nil && sec.Status != state.SecretQuarantined {
				row.nextDue = sec.NextDueAt
			}
			s.secrets = append(s.secrets, row)
		}
	}
	slices.Sort(s.overdueAt)
	c.snap.Store(s)
}

// overdue counts the secrets overdue at now.
func (s *snapshot) overdue(now time.Time) int {
	// The deadlines before now have passed: the index of the first one
	// not before now is their number.
	i, _ := slices.BinarySearch(s.overdueAt, now.UnixNano())
	return i
}

// collector exports the last snapshot (ages computed at the scrape) and
// the time of the last tick. It does no I/O.
type collector struct{ d *Daemon }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAge, descNextDue, descOverdue, descQuarantined, descDrift,
		descNeedsAttention, descHeld, descLastTick, descRefreshed, descRefreshes, descManaged} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.d.metrics
	ch <- prometheus.MustNewConstMetric(descLastTick, prometheus.GaugeValue, float64(c.d.lastTick.Load()))
	ch <- prometheus.MustNewConstMetric(descRefreshes, prometheus.CounterValue, float64(m.refreshes.Load()))
	s := m.snap.Load()
	if s == nil {
		ch <- prometheus.MustNewConstMetric(descRefreshed, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descRefreshed, prometheus.GaugeValue, float64(s.at.Unix()))
	now := time.Now()
	for _, r := range s.secrets {
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, now.Sub(r.since).Seconds(), r.id, r.class)
		if r.nextDue != nil {
			ch <- prometheus.MustNewConstMetric(descNextDue, prometheus.GaugeValue, float64(r.nextDue.Unix()), r.id, r.class)
		}
	}
	ch <- prometheus.MustNewConstMetric(descManaged, prometheus.GaugeValue, float64(s.managed))
	ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, float64(s.overdue(now)))
	ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.GaugeValue, float64(s.quarantined))
	ch <- prometheus.MustNewConstMetric(descDrift, prometheus.GaugeValue, float64(s.drift))
	ch <- prometheus.MustNewConstMetric(descNeedsAttention, prometheus.GaugeValue, float64(s.needing))
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(s.held))
}

// gatherer is what /metrics serves: the registry, and the aggregates of
// the engine's series labelled by secret (rotation.Metrics), always; the
// per-secret ones are empty while per-secret series are off, and
// rotator_rotations_total is then served summed over the secrets.
type gatherer struct {
	d *Daemon
	// byClass holds the engine's RotationsByClass.
	byClass *prometheus.Registry
}

func newGatherer(d *Daemon) gatherer {
	g := gatherer{d: d, byClass: prometheus.NewRegistry()}
	if m := d.cfg.Engine.Metrics; m != nil {
		g.byClass.MustRegister(m.RotationsByClass)
	}
	return g
}

func (g gatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.d.cfg.Registry.Gather()
	m := g.d.cfg.Engine.Metrics
	if m == nil {
		return mfs, err
	}
	if !m.PerSecret() {
		out := mfs[:0]
		for _, mf := range mfs {
			switch mf.GetName() {
			case famRotations, famPublishedOK, famStoresAgree:
				continue
			}
			out = append(out, mf)
		}
		byClass, berr := g.byClass.Gather()
		mfs, err = append(out, byClass...), errors.Join(err, berr)
	}
	failing, disagreeing := m.Failing()
	mfs = append(mfs, gauge(famFailing, helpFailing, float64(failing)), gauge(famDisagreeing, helpDisagreeing, float64(disagreeing)))
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs, err
}

func gauge(name, help string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(v)}}}}
}
