package loadreport

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/metrics"
)

// registerMetrics registers r's gauges on reg. They read r's counters when
// scraped, so the request path pays nothing for them.
func registerMetrics(r *Reporter, reg prometheus.Registerer, log *slog.Logger) {
	if reg == nil {
		return
	}
	_, err := metrics.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metrics.Namespace,
		Subsystem: "loadreport",
		Name:      "requests_in_flight",
		Help:      "Requests in flight counted by the load reporter (the RIF it reports).",
	}, func() float64 { return float64(r.InFlight()) }))
	if err != nil {
		log.Warn("loadreport: metrics", "err", err)
	}
}
