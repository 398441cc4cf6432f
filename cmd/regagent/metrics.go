package main

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/smartroute/smartroute/internal/metrics"
)

// agentMetrics are the agent's own series. The registry's and the probe's
// series are registered on the same Registry by those packages.
type agentMetrics struct {
	registerFailures prometheus.Counter
	deregistrations  *prometheus.CounterVec
}

// Reasons of smartroute_regagent_deregistrations_total.
const (
	reasonUnhealthy = "unhealthy"
	reasonShutdown  = "shutdown"
)

// newRegistry returns the agent's Prometheus registry, with the Go runtime
// and process collectors, the build info and the agent's series. status
// feeds the gauges at scrape time.
func newRegistry(a *agent) (*prometheus.Registry, *agentMetrics) {
	reg := prometheus.NewRegistry()
	sub := func(name string) string {
		return prometheus.BuildFQName(metrics.Namespace, "regagent", name)
	}
	gauge := func(name, help string, f func(s agentStatus) bool) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: sub(name), Help: help}, func() float64 {
			if f(a.status()) {
				return 1
			}
			return 0
		})
	}
	m := &agentMetrics{
		registerFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: sub("register_failures_total"),
			Help: "Failed attempts to connect to etcd or to register the instance; the agent retries with backoff.",
		}),
		deregistrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: sub("deregistrations_total"),
			Help: "Instances deregistered by the agent, by reason: unhealthy (the local check failed fall times) or shutdown.",
		}, []string{"reason"}),
	}
	m.deregistrations.WithLabelValues(reasonUnhealthy)
	m.deregistrations.WithLabelValues(reasonShutdown)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        sub("build_info"),
		Help:        "Always 1; the labels carry the agent's version and Go version.",
		ConstLabels: prometheus.Labels{"version": versionString(), "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.registerFailures,
		m.deregistrations,
		gauge("registered", "1 while the instance's key is written in etcd under a live lease.",
			func(s agentStatus) bool { return s.registered }),
		gauge("check_healthy", "1 while the local health check passes (after rise successes, until fall failures).",
			func(s agentStatus) bool { return s.healthy }),
		gauge("draining", "1 from the shutdown signal until the instance is deregistered.",
			func(s agentStatus) bool { return s.draining }),
	)
	return reg, m
}
