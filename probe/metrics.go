package probe

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/metrics"
)

// probeMetrics holds the prober's collectors. A nil *probeMetrics records
// nothing.
type probeMetrics struct {
	perEndpoint bool
	duration    *prometheus.HistogramVec
	failures    *prometheus.CounterVec
	healthy     *prometheus.GaugeVec
}

func newProbeMetrics(reg prometheus.Registerer, perEndpoint bool, log *slog.Logger) *probeMetrics {
	if reg == nil {
		return nil
	}
	var addr []string
	if perEndpoint {
		addr = []string{"addr"}
	}
	m := &probeMetrics{perEndpoint: perEndpoint}
	var err error
	m.duration, err = metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace,
		Subsystem: "probe",
		Name:      "duration_seconds",
		Help:      "Duration of active health checks, by result.",
		Buckets:   prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. ~4s
	}, append([]string{"result"}, addr...)))
	if err != nil {
		log.Warn("probe: metrics", "err", err)
	}
	m.failures, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace,
		Subsystem: "probe",
		Name:      "failures_total",
		Help:      "Failed active health checks.",
	}, addr))
	if err != nil {
		log.Warn("probe: metrics", "err", err)
	}
	m.healthy, err = metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metrics.Namespace,
		Subsystem: "probe",
		Name:      "healthy_endpoints",
		Help:      "Probed endpoints currently judged healthy.",
	}, addr))
	if err != nil {
		log.Warn("probe: metrics", "err", err)
	}
	return m
}

func (m *probeMetrics) labels(addr string) []string {
	if m.perEndpoint {
		return []string{addr}
	}
	return nil
}

// observe records one completed check.
func (m *probeMetrics) observe(addr string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "failure"
		m.failures.WithLabelValues(m.labels(addr)...).Inc()
	}
	m.duration.WithLabelValues(append([]string{result}, m.labels(addr)...)...).Observe(d.Seconds())
}

// healthyDelta moves the healthy gauge by delta (+1 or -1).
func (m *probeMetrics) healthyDelta(addr string, delta float64) {
	if m == nil {
		return
	}
	m.healthy.WithLabelValues(m.labels(addr)...).Add(delta)
}

// forget drops addr's per-endpoint series once it is no longer probed.
func (m *probeMetrics) forget(addr string) {
	if m == nil || !m.perEndpoint {
		return
	}
	l := prometheus.Labels{"addr": addr}
	m.duration.DeletePartialMatch(l)
	m.failures.Delete(l)
	m.healthy.Delete(l)
}
