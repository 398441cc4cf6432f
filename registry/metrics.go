package registry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/metrics"
)

// registryMetrics are the registry's Prometheus series, labelled by service
// (bounded by the services one process registers).
type registryMetrics struct {
	registrations     prometheus.Counter
	leaseLosses       prometheus.Counter
	reregistrations   prometheus.Counter
	keepaliveFailures prometheus.Counter
	registered        prometheus.Gauge
}

func newRegistryMetrics(r prometheus.Registerer, service string) (*registryMetrics, error) {
	counter := func(name, help string) (*prometheus.CounterVec, error) {
		return metrics.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: "registry", Name: name, Help: help,
		}, []string{"service"}))
	}
	regs, err := counter("registrations_total", "Instances registered by Register.")
	if err != nil {
		return nil, err
	}
	losses, err := counter("lease_losses_total", "Leases lost: keepalive ended without Close (expired, revoked, or etcd unreachable past the TTL).")
	if err != nil {
		return nil, err
	}
	rereg, err := counter("reregistrations_total", "Instances registered again under a new lease after a loss or an out-of-band delete.")
	if err != nil {
		return nil, err
	}
	kaf, err := counter("keepalive_failures_total", "Failed attempts to grant a lease, keep it alive or write the instance key.")
	if err != nil {
		return nil, err
	}
	gauge, err := metrics.Register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metrics.Namespace, Subsystem: "registry", Name: "registered",
		Help: "Registrations whose key is currently written under a live lease.",
	}, []string{"service"}))
	if err != nil {
		return nil, err
	}
	return &registryMetrics{
		registrations:     regs.WithLabelValues(service),
		leaseLosses:       losses.WithLabelValues(service),
		reregistrations:   rereg.WithLabelValues(service),
		keepaliveFailures: kaf.WithLabelValues(service),
		registered:        gauge.WithLabelValues(service),
	}, nil
}
