package overload

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/metrics"
)

// guardMetrics are one guard's Prometheus series, curried with its
// service. Labels are bounded: scope (service or endpoint), reason, breaker
// (the rule names), from and to (the states); the endpoint label exists
// only with WithPerEndpointMetrics.
type guardMetrics struct {
	rejectProbability prometheus.Gauge
	rejections        [2][ReasonRetryLimit + 1]prometheus.Counter // [endpoint scope][reason]
	breakerState      *prometheus.GaugeVec                        // breaker
	transitions       *prometheus.CounterVec                      // scope, breaker, from, to
	endpointBreakers  *prometheus.GaugeVec                        // breaker, state
	endpointState     *prometheus.GaugeVec                        // endpoint, breaker (opt-in)
}

const (
	scopeService  = "service"
	scopeEndpoint = "endpoint"
)

func newGuardMetrics(r prometheus.Registerer, service string, rules, endpointRules []BreakerRule, perEndpoint bool) (*guardMetrics, error) {
	const sub = "overload"
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
	prob := reg(prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "throttle_reject_probability", Help: "Probability that adaptive throttling rejects a request locally, as of the last request."},
		[]string{"service"})).(*prometheus.GaugeVec)
	rejections := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "rejections_total", Help: "Requests refused without being sent, by scope (service or endpoint) and reason (throttled, breaker_open, concurrency_limit, retry_limit)."},
		[]string{"service", "scope", "reason"})).(*prometheus.CounterVec)
	state := reg(prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "breaker_state", Help: "State of each service circuit breaker: 0 closed, 1 half-open, 2 open."},
		[]string{"service", "breaker"})).(*prometheus.GaugeVec)
	transitions := reg(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "breaker_transitions_total", Help: "Circuit breaker state changes, by scope (service or endpoint), breaker, from and to."},
		[]string{"service", "scope", "breaker", "from", "to"})).(*prometheus.CounterVec)
	endpoints := reg(prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: sub,
		Name: "endpoint_breakers", Help: "Endpoints whose breaker is in each state, by breaker and state (closed, half_open, open)."},
		[]string{"service", "breaker", "state"})).(*prometheus.GaugeVec)
	var perEP *prometheus.GaugeVec
	if perEndpoint {
		perEP = reg(prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: sub,
			Name: "endpoint_breaker_state", Help: "State of each endpoint circuit breaker (opt-in): 0 closed, 1 half-open, 2 open."},
			[]string{"service", "endpoint", "breaker"})).(*prometheus.GaugeVec)
	}
	if err != nil {
		return nil, err
	}
	m := &guardMetrics{
		rejectProbability: prob.With(labels),
		breakerState:      state.MustCurryWith(labels),
		transitions:       transitions.MustCurryWith(labels),
		endpointBreakers:  endpoints.MustCurryWith(labels),
	}
	if perEP != nil {
		m.endpointState = perEP.MustCurryWith(labels)
	}
	for i, scope := range []string{scopeService, scopeEndpoint} {
		for r := ReasonThrottled; r <= ReasonRetryLimit; r++ {
			m.rejections[i][r] = rejections.With(prometheus.Labels{"service": service, "scope": scope, "reason": r.String()})
		}
	}
	m.rejectProbability.Set(0)
	for _, rule := range rules {
		m.breakerState.WithLabelValues(rule.Name).Set(float64(Closed))
	}
	for _, rule := range endpointRules {
		for _, st := range []State{Closed, HalfOpen, Open} {
			m.endpointBreakers.WithLabelValues(rule.Name, st.String()).Add(0)
		}
	}
	return m, nil
}

func (m *guardMetrics) rejected(endpoint bool, r Reason) {
	i := 0
	if endpoint {
		i = 1
	}
	m.rejections[i][r].Inc()
}

// transition counts a breaker's state change (endpoint "" for a service
// breaker).
func (m *guardMetrics) transition(endpoint, breaker string, from, to State) {
	scope := scopeService
	if endpoint != "" {
		scope = scopeEndpoint
	}
	m.transitions.WithLabelValues(scope, breaker, from.String(), to.String()).Inc()
	if endpoint == "" {
		m.breakerState.WithLabelValues(breaker).Set(float64(to))
		return
	}
	m.endpointBreakers.WithLabelValues(breaker, from.String()).Dec()
	m.endpointBreakers.WithLabelValues(breaker, to.String()).Inc()
	if m.endpointState != nil {
		m.endpointState.WithLabelValues(endpoint, breaker).Set(float64(to))
	}
}

// endpointAdded counts a new endpoint's breakers as closed.
func (m *guardMetrics) endpointAdded(endpoint string, rules []BreakerRule) {
	for _, r := range rules {
		m.endpointBreakers.WithLabelValues(r.Name, Closed.String()).Inc()
		if m.endpointState != nil {
			m.endpointState.WithLabelValues(endpoint, r.Name).Set(float64(Closed))
		}
	}
}

// endpointRemoved takes a forgotten endpoint's breakers out of the counts.
func (m *guardMetrics) endpointRemoved(endpoint string, rules []BreakerRule, states []State) {
	for i, r := range rules {
		m.endpointBreakers.WithLabelValues(r.Name, states[i].String()).Dec()
		if m.endpointState != nil {
			m.endpointState.DeleteLabelValues(endpoint, r.Name)
		}
	}
}
