package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/balancer"

	"github.com/smartroute/smartroute/probe"
)

// Tracing. When the caller's context carries a recording OpenTelemetry
// span (an otelhttp or otelgrpc client span, or the caller's own), the
// client writes on it what it decided for the request: the span's
// attributes say where the request finally went and why, and one event
// per attempt (HTTP) or pick (gRPC) says where each try went, why, and how
// it ended. Only the OpenTelemetry API is used (go.opentelemetry.io/otel/
// trace and attribute): a program that does not trace links no SDK, and a
// span that does not record costs one context lookup per request.
//
// The attribute keys, stable:
const (
	// TraceService is the service the client routes for.
	TraceService = attribute.Key("smartroute.service")
	// TracePolicy is the picking policy.
	TracePolicy = attribute.Key("smartroute.policy")
	// TraceEndpoint is the endpoint picked (host:port): on the span, the
	// last attempt's.
	TraceEndpoint = attribute.Key("smartroute.endpoint")
	// TracePickReason says in words why the policy picked it
	// (Choice.Reason).
	TracePickReason = attribute.Key("smartroute.pick.reason")
	// TracePickExplored is true when least_latency picked the endpoint to
	// measure it rather than for its cost.
	TracePickExplored = attribute.Key("smartroute.pick.explored")
	// TracePickPanic is true when the pick was made in panic mode (too few
	// healthy endpoints: among all of them).
	TracePickPanic = attribute.Key("smartroute.pick.panic")
	// TracePickCanary is true when the endpoint came from the canary
	// subset.
	TracePickCanary = attribute.Key("smartroute.pick.canary")
	// TraceAttempt numbers the attempts of a request from 1 (HTTP).
	TraceAttempt = attribute.Key("smartroute.attempt")
	// TraceAttemptKind is "first", "retry" (after a failed attempt) or
	// "hedge" (sent while another attempt is still waiting) (HTTP).
	TraceAttemptKind = attribute.Key("smartroute.attempt.kind")
	// TraceAttempts, TraceRetries and TraceHedges count a request's
	// attempts, retries and hedges, on the span when it ends (HTTP).
	TraceAttempts = attribute.Key("smartroute.attempts")
	TraceRetries  = attribute.Key("smartroute.retries")
	TraceHedges   = attribute.Key("smartroute.hedges")
	// TraceEndpointHealth is the endpoint's probe verdict at the pick:
	// unknown, healthy or unhealthy.
	TraceEndpointHealth = attribute.Key("smartroute.endpoint.health")
	// TraceEndpointBreakerOpen is true when the endpoint's circuit breaker
	// (WithOverload) was open at the pick: the endpoint was taken in
	// panic mode, or the pick passed it over for another.
	TraceEndpointBreakerOpen = attribute.Key("smartroute.endpoint.breaker_open")
	// TraceEndpointEjected is true when outlier detection had ejected the
	// endpoint at the pick (a panic-mode or last-resort pick).
	TraceEndpointEjected = attribute.Key("smartroute.endpoint.ejected")
	// TraceEndpointFailures is the endpoint's consecutive failures at the
	// pick, which eject it when they reach the outlier detection's limit.
	TraceEndpointFailures = attribute.Key("smartroute.endpoint.consecutive_failures")
	// TraceEndpointInFlight is the client's requests to the endpoint not
	// finished at the pick.
	TraceEndpointInFlight = attribute.Key("smartroute.endpoint.in_flight")
	// TraceOutcome is how an attempt ended, as the client's metrics'
	// outcome label says it (ok, http_4xx, http_5xx, error,
	// deadline_exceeded, canceled), or no_endpoint for a request no
	// endpoint could take; for gRPC ok, error, canceled or
	// application_error.
	TraceOutcome = attribute.Key("smartroute.outcome")
	// TraceLatency is an attempt's time to its answer, in seconds.
	TraceLatency = attribute.Key("smartroute.latency_s")
)

// The event names.
const (
	// TraceEventAttempt is added once per HTTP attempt, when it ends.
	TraceEventAttempt = "smartroute.attempt"
	// TraceEventPick is added once per gRPC pick, when its RPC ends.
	TraceEventPick = "smartroute.pick"
)

// Attempt kinds.
const (
	attemptFirst = "first"
	attemptRetry = "retry"
	attemptHedge = "hedge"
)

// requestTrace is one HTTP request's tracing state, in its context while
// the caller's span records.
type requestTrace struct {
	span     trace.Span
	attempts atomic.Int32
	retries  atomic.Int32
	hedges   atomic.Int32
	// waiting counts the request's attempts not answered yet: an attempt
	// that starts while another waits is a hedge.
	waiting atomic.Int32
}

type requestTraceKey struct{}

// traceRequest returns req with its tracing state when the caller's span
// records, and req itself otherwise (no allocation). RoundTrip calls it
// once per request.
func (c *Client) traceRequest(req *http.Request) *http.Request {
	span := trace.SpanFromContext(req.Context())
	if !span.IsRecording() {
		return req
	}
	span.SetAttributes(TraceService.String(c.name), TracePolicy.String(string(c.cfg.policy)))
	rt := &requestTrace{span: span}
	return req.WithContext(context.WithValue(req.Context(), requestTraceKey{}, rt))
}

// traceRequestEnd writes the request's counts and, for a request no
// endpoint could take, the outcome.
func (c *Client) traceRequestEnd(req *http.Request, err error) {
	rt, _ := req.Context().Value(requestTraceKey{}).(*requestTrace)
	if rt == nil {
		return
	}
	rt.span.SetAttributes(
		TraceAttempts.Int(int(rt.attempts.Load())),
		TraceRetries.Int(int(rt.retries.Load())),
		TraceHedges.Int(int(rt.hedges.Load())),
	)
	if errors.Is(err, ErrNoHealthyEndpoint) {
		rt.span.SetAttributes(TraceOutcome.String("no_endpoint"))
		rt.span.SetStatus(codes.Error, err.Error())
	}
}

// attemptTrace is one attempt's record, begun before it is sent.
type attemptTrace struct {
	rt    *requestTrace
	attrs []attribute.KeyValue
	start time.Time
}

// traceAttempt records on the request's span that an attempt goes to ep,
// and why; nil when the request is not traced. attempt calls it before
// sending, and end after the answer.
func (c *Client) traceAttempt(req *http.Request, ep *endpoint) *attemptTrace {
	rt, _ := req.Context().Value(requestTraceKey{}).(*requestTrace)
	if rt == nil {
		return nil
	}
	n := rt.attempts.Add(1)
	kind := attemptFirst
	switch {
	case n == 1:
	case rt.waiting.Load() > 0:
		kind = attemptHedge
		rt.hedges.Add(1)
	default:
		kind = attemptRetry
		rt.retries.Add(1)
	}
	rt.waiting.Add(1)
	attrs := append(endpointAttrs(c.table, ep), TraceAttempt.Int(int(n)), TraceAttemptKind.String(kind))
	// The span says where the request went: the latest attempt's.
	rt.span.SetAttributes(attrs...)
	return &attemptTrace{rt: rt, attrs: attrs, start: time.Now()}
}

// end adds the attempt's event with its outcome (a metrics outcome
// label). It is nil-safe.
func (a *attemptTrace) end(outcome string) {
	if a == nil {
		return
	}
	a.rt.waiting.Add(-1)
	attrs := append(a.attrs, TraceOutcome.String(outcome), TraceLatency.Float64(time.Since(a.start).Seconds()))
	a.rt.span.AddEvent(TraceEventAttempt, trace.WithAttributes(attrs...))
	a.rt.span.SetAttributes(TraceOutcome.String(outcome))
}

// tracePick records a gRPC pick of ep on the RPC's span, which records,
// and wraps res's Done to add the event with the RPC's outcome. The picker
// calls it only for a span that records: one that does not costs the
// span's lookup, and the pick allocates nothing.
func (t *table) tracePick(span trace.Span, ep *endpoint, explored bool, method string, res *balancer.PickResult) {
	attrs := append(endpointAttrs(t, ep),
		TraceService.String(grpcService(method)), TracePolicy.String(string(t.cfg.policy)), TracePickExplored.Bool(explored))
	span.SetAttributes(attrs...)
	start := time.Now()
	next := res.Done
	res.Done = func(di balancer.DoneInfo) {
		if next != nil {
			next(di)
		}
		outcome := "ok"
		switch grpcOutcome(di) {
		case outcomeFailure:
			outcome = "error"
		case outcomeNeutral:
			outcome = "canceled"
		}
		if di.Err != nil && outcome == "ok" {
			outcome = "application_error"
		}
		span.AddEvent(TraceEventPick, trace.WithAttributes(append(attrs,
			TraceOutcome.String(outcome), TraceLatency.Float64(time.Since(start).Seconds()))...))
	}
}

// grpcService is the service of a full method name: "/pkg.Svc/Method"
// gives "pkg.Svc".
func grpcService(method string) string {
	s := strings.TrimPrefix(method, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// endpointAttrs describes ep and the pick that chose it, from the table's
// current snapshot.
func endpointAttrs(t *table, ep *endpoint) []attribute.KeyValue {
	now := t.clock.Now()
	ch := t.choiceOf(t.snapshot(), ep, ep.hot.exploring.Load(), now, nil)
	return []attribute.KeyValue{
		TraceEndpoint.String(ep.addr),
		TracePickReason.String(ch.Reason),
		TracePickExplored.Bool(ch.Explored),
		TracePickPanic.Bool(ch.Panic),
		TracePickCanary.Bool(ch.Canary),
		TraceEndpointHealth.String(probe.Health(ep.health.Load()).String()),
		TraceEndpointEjected.Bool(ep.ejected(now)),
		TraceEndpointBreakerOpen.Bool(ep.breakerOpen(now)),
		TraceEndpointFailures.Int(int(ep.consecutiveFailures.Load())),
		TraceEndpointInFlight.Int64(ep.hot.load()),
	}
}
