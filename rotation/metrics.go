package rotation

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus collectors. Labels carry secret ids,
// classes, steps and outcomes — never secret material.
type Metrics struct {
	Rotations        *prometheus.CounterVec
	RotationDuration *prometheus.HistogramVec
	StepDuration     *prometheus.HistogramVec
}

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotator_rotations_total",
			Help: "Runs that ended, by secret, class and outcome (succeeded, failed, rolled_back).",
		}, []string{"secret", "class", "outcome"}),
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
	}
	if reg != nil {
		reg.MustRegister(m.Rotations, m.RotationDuration, m.StepDuration)
	}
	return m
}
