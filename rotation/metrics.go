package rotation

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus collectors. Labels carry secret ids,
// classes, steps and outcomes — never secret material.
//
// The series labelled by secret (Rotations, PublishedOK, StoresAgree) are
// set only while per-secret series are on (SetPerSecret; on by default):
// at 100,000 secrets they would make every scrape large and slow. Their
// aggregates are always kept: RotationsByClass, and the counts of failing
// published credentials and of disagreeing stores (Failing).
type Metrics struct {
	Rotations        *prometheus.CounterVec
	RotationDuration *prometheus.HistogramVec
	StepDuration     *prometheus.HistogramVec

	// Published-credential check (Check, check.go).
	PublishedOK *prometheus.GaugeVec
	StoresAgree *prometheus.GaugeVec

	// RotationsByClass is Rotations summed over the secrets (labels class
	// and outcome), under the same name: NewMetrics does not register it;
	// whoever serves the metrics without per-secret series serves it in
	// Rotations' place.
	RotationsByClass *prometheus.CounterVec

	perSecret atomic.Bool
	mu        sync.Mutex
	failing   map[[2]string]bool // secret, store: the last check failed
	disagree  map[string]bool    // secret: its stores disagreed at the last check
}

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	rotations := prometheus.CounterOpts{
		Name: "rotator_rotations_total",
		Help: "Runs that ended, by secret, class and outcome (succeeded, failed, rolled_back).",
	}
	m := &Metrics{
		Rotations: prometheus.NewCounterVec(rotations, []string{"secret", "class", "outcome"}),
		RotationDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rotator_rotation_duration_seconds",
			Help:    "Wall time of runs from start to end (verify and monitor waits included), by class and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 4, 10),
		}, []string{"class", "outcome"}),
		StepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rotator_step_duration_seconds",
			Help:    "Duration of each external action of a run (one try), by step and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"step", "outcome"}),

		// Published-credential check (Check, check.go).
		PublishedOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_published_credential_ok",
			Help: "1 when the credential a store publishes as current works at the target (logs in, verifies, has the token's shape); 0 when it does not or could not be checked. Set by each check.",
		}, []string{"secret", "store"}),
		StoresAgree: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_published_stores_agree",
			Help: "1 when every store of the secret publishes the same current version (number, run id, fingerprint, username); 0 when they differ. Set by each check.",
		}, []string{"secret"}),
		failing:  map[[2]string]bool{},
		disagree: map[string]bool{},
	}
	rotations.Help = "Runs that ended, by class and outcome (succeeded, failed, rolled_back), summed over the secrets."
	m.RotationsByClass = prometheus.NewCounterVec(rotations, []string{"class", "outcome"})
	m.perSecret.Store(true)
	if reg != nil {
		reg.MustRegister(m.Rotations, m.RotationDuration, m.StepDuration)
		reg.MustRegister(m.PublishedOK, m.StoresAgree)
	}
	return m
}

// SetPerSecret turns the series labelled by secret on or off; turned off,
// they are dropped (the aggregates stay).
func (m *Metrics) SetPerSecret(on bool) {
	if m.perSecret.Swap(on) && !on {
		m.Rotations.Reset()
		m.PublishedOK.Reset()
		m.StoresAgree.Reset()
	}
}

// PerSecret reports whether the series labelled by secret are set.
func (m *Metrics) PerSecret() bool { return m.perSecret.Load() }

// Failing counts the published credentials (secret and store) whose last
// check failed, and the secrets whose stores disagreed at their last check.
func (m *Metrics) Failing() (credentials, disagreeing int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.failing), len(m.disagree)
}

// Forget drops a secret's check results (it left the policies).
func (m *Metrics) Forget(secret string) {
	m.mu.Lock()
	for k := range m.failing {
		if k[0] == secret {
			delete(m.failing, k)
		}
	}
	delete(m.disagree, secret)
	m.mu.Unlock()
	m.PublishedOK.DeletePartialMatch(prometheus.Labels{"secret": secret})
	m.StoresAgree.DeleteLabelValues(secret)
}

// Rotated counts a run that ended.
func (m *Metrics) Rotated(secret, class, outcome string) {
	m.RotationsByClass.WithLabelValues(class, outcome).Inc()
	if m.PerSecret() {
		m.Rotations.WithLabelValues(secret, class, outcome).Inc()
	}
}

// Published records a store's check of a secret: ok, or not; unpublished
// (the store holds nothing) drops it.
func (m *Metrics) Published(secret, store string, ok, unpublished bool) {
	k := [2]string{secret, store}
	m.mu.Lock()
	if ok || unpublished {
		delete(m.failing, k)
	} else {
		m.failing[k] = true
	}
	m.mu.Unlock()
	switch {
	case unpublished:
		m.PublishedOK.DeleteLabelValues(secret, store)
	case !m.PerSecret():
	case ok:
		m.PublishedOK.WithLabelValues(secret, store).Set(1)
	default:
		m.PublishedOK.WithLabelValues(secret, store).Set(0)
	}
}

// Agreed records whether a secret's stores agree.
func (m *Metrics) Agreed(secret string, agree bool) {
	m.mu.Lock()
	if agree {
		delete(m.disagree, secret)
	} else {
		m.disagree[secret] = true
	}
	m.mu.Unlock()
	if !m.PerSecret() {
		return
	}
	v := 1.0
	if !agree {
		v = 0
	}
	m.StoresAgree.WithLabelValues(secret).Set(v)
}
