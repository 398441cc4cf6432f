package client

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/metrics"
)

// clientMetrics are one client's Prometheus series, curried with its
// service name. Labels are bounded: service (one per client), policy,
// outcome and state from small fixed sets; the endpoint label exists only
// with WithPerEndpointMetrics.
type clientMetrics struct {
	picks          prometheus.Counter
	requests       *prometheus.CounterVec // outcome
	retries        prometheus.Counter
	hedges         prometheus.Counter
	ejections      prometheus.Counter
	resolverErrors prometheus.Counter
	duration       prometheus.Observer
	endpoints      *prometheus.GaugeVec // state

	// perEndpointMu orders the per-endpoint series' writes with their
	// deletion: an attempt that ends after its endpoint was removed must
	// not bring the series back (with churn, they would grow without
	// bound).
	perEndpoint      bool
	perEndpointMu    sync.Mutex
	endpointRequests *prometheus.CounterVec   // endpoint, outcome
	endpointDuration *prometheus.HistogramVec // endpoint
}

// Outcomes of requests, the values of the "outcome" label.
const (
	outcomeLabelOK       = "ok"
	outcomeLabelHTTP5xx  = "http_5xx"
	outcomeLabelHTTP4xx  = "http_4xx"
	outcomeLabelError    = "error"
	outcomeLabelCanceled = "canceled"
	outcomeLabelDeadline = "deadline_exceeded"
	outcomeLabelNoRoute  = "no_endpoint"
	outcomeLabelRejected = "rejected" // refused by overload protection
)

// latencyBucketsSeconds span a fast LAN call to a slow timeout.
var latencyBucketsSeconds = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newClientMetrics(r prometheus.Registerer, service string, policy Policy, perEndpoint bool) (*clientMetrics, error) {
	const sub = "client"
	labels := prometheus.Labels{"service": service}
	var err error
	reg := func(c prometheus.Collector) prometheus.Collector {
		if err != nil {
			return c
		}
		var got prometheus.Collector
		got, err = metrics.Register(r, c)
		return got
	}
	picks := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "picks_total", Help: "Endpoints picked, by policy."}, []string{"service", "policy"})).(*prometheus.CounterVec)
	requests := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "requests_total", Help: "Requests finished (after retries and hedges), by outcome."}, []string{"service", "outcome"})).(*prometheus.CounterVec)
	retries := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "retries_total", Help: "Attempts retried on another endpoint."}, []string{"service"})).(*prometheus.CounterVec)
	hedges := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "hedges_total", Help: "Hedged attempts sent."}, []string{"service"})).(*prometheus.CounterVec)
	ejections := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "ejections_total", Help: "Endpoints ejected by outlier detection."}, []string{"service"})).(*prometheus.CounterVec)
	resolverErrors := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "resolver_errors_total", Help: "Resolver errors; the last good endpoint set stays in use."}, []string{"service"})).(*prometheus.CounterVec)
	duration := reg(prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "request_duration_seconds", Help: "Request latency to response headers, retries and hedges included.",
		Buckets: latencyBucketsSeconds}, []string{"service"})).(*prometheus.HistogramVec)
	endpoints := reg(prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "endpoints", Help: "Endpoints in the table, by state (eligible, ejected, breaker_open, unhealthy, draining, unselected, unconnected)."}, []string{"service", "state"})).(*prometheus.GaugeVec)
	m := &clientMetrics{
		picks:          picks.With(prometheus.Labels{"service": service, "policy": string(policy)}),
		requests:       requests.MustCurryWith(labels),
		retries:        retries.With(labels),
		hedges:         hedges.With(labels),
		ejections:      ejections.With(labels),
		resolverErrors: resolverErrors.With(labels),
		duration:       duration.With(labels),
		endpoints:      endpoints.MustCurryWith(labels),
		perEndpoint:    perEndpoint,
	}
	if perEndpoint {
		er := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
			Name: "endpoint_requests_total", Help: "Attempts per endpoint, by outcome (opt-in)."}, []string{"service", "endpoint", "outcome"})).(*prometheus.CounterVec)
		ed := reg(prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metrics.Namespace, Subsystem: sub,
			Name: "endpoint_request_duration_seconds", Help: "Attempt latency per endpoint (opt-in).",
			Buckets: latencyBucketsSeconds}, []string{"service", "endpoint"})).(*prometheus.HistogramVec)
		if err == nil {
			m.endpointRequests = er.MustCurryWith(labels)
			m.endpointDuration = ed.MustCurryWith(labels).(*prometheus.HistogramVec)
		}
	}
	return m, err
}

// observeSnapshot sets the endpoint-state gauges from a new snapshot.
func (m *clientMetrics) observeSnapshot(s *snapshot, now int64) {
	counts := map[string]float64{"eligible": 0, "ejected": 0, "breaker_open": 0, "unhealthy": 0, "draining": 0, "unselected": 0, "unconnected": 0}
	for _, ep := range s.all {
		switch classify(s.cfg, ep, now) {
		case eligible:
			counts["eligible"]++
		case excludedEjected:
			counts["ejected"]++
		case excludedBreakerOpen:
			counts["breaker_open"]++
		case excludedUnhealthy:
			counts["unhealthy"]++
		case excludedDraining:
			counts["draining"]++
		case excludedNotConnected:
			counts["unconnected"]++
		case excludedSelector:
			counts["unselected"]++
		}
	}
	for state, n := range counts {
		m.endpoints.WithLabelValues(state).Set(n)
	}
}

// attempt records one attempt on an endpoint, when per-endpoint series are
// on and the endpoint is still in the table.
func (m *clientMetrics) attempt(ep *endpoint, outcome string, d time.Duration) {
	if !m.perEndpoint || m.endpointRequests == nil {
		return
	}
	m.perEndpointMu.Lock()
	defer m.perEndpointMu.Unlock()
	if ep.removed.Load() {
		return // forget ran, or is about to: no series for it again
	}
	m.endpointRequests.WithLabelValues(ep.addr, outcome).Inc()
	m.endpointDuration.WithLabelValues(ep.addr).Observe(d.Seconds())
}

// forget drops the per-endpoint series of a removed endpoint (ep.removed
// is set before).
func (m *clientMetrics) forget(addr string) {
	if !m.perEndpoint || m.endpointRequests == nil {
		return
	}
	m.perEndpointMu.Lock()
	defer m.perEndpointMu.Unlock()
	m.endpointRequests.DeletePartialMatch(prometheus.Labels{"endpoint": addr})
	m.endpointDuration.DeleteLabelValues(addr)
}
