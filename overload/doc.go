// Package overload protects services from overload, and their callers from
// broken services, on the client side: adaptive throttling, circuit
// breakers and concurrency limits, composed in a Guard; and on the server
// side, a Shedder that refuses work past a concurrency limit. It stands
// alone (any http.RoundTripper, any gRPC connection) and package client
// builds on it.
//
// # Adaptive throttling
//
// The Google SRE book's client-side throttling ("Handling Overload"): over
// a sliding window (2 minutes by default) the guard counts the requests it
// was asked to send and the ones the service accepted, and rejects a new
// request locally with probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// with K = 2 by default, capped at 0.9 so that some requests always find out
// that the service has recovered. A service that refuses requests it cannot
// serve (429, 503, gRPC ResourceExhausted), that cannot be reached, or that
// answers too late, sees its clients back off in proportion, before their
// retries bury it. The requests are the application's: retries and hedges
// (AcquireRetry) are neither throttled nor counted, as they are bounded by
// MaxRetries and a retry budget. See Throttling.
//
// # Circuit breakers
//
// Sentinel's three kinds (BreakerRule): slow-call ratio (a call slower
// than MaxRT is slow; open when the slow share over the stat window
// reaches a threshold), error ratio and error count, each with a minimum
// number of calls. Closed → Open (every call fails fast for RetryTimeout)
// → HalfOpen (a few probe calls) → Closed, or Open again on a failed probe.
// State changes go to a callback (WithStateListener), to the log and to
// metrics. Service breakers (WithBreakers) refuse the service's calls;
// endpoint breakers (WithEndpointBreakers) are kept per endpoint for a
// balancer, which consults Guard.Allow or Endpoint.Allow and takes an
// endpoint whose breaker is open out of rotation as an ejection would.
// Package client does all of it for its HTTP client and gRPC balancer
// (client.WithOverload, and "overload" in the balancer's service config).
//
// # Concurrency limits
//
// Envoy's cluster circuit breakers (Limits): at most MaxRequests in flight
// (1024), MaxPending waiting for a slot (none), MaxRetries retries in flight
// (3); and optionally a bound per endpoint (WithEndpointMaxRequests). The
// bounds are exact under any concurrency.
//
// # Using a Guard
//
// Every request asks the guard, then tells it how it ended:
//
//	g, err := overload.New("payments", overload.WithBreakers(overload.BreakerRule{
//		Strategy: overload.SlowCallRatio, MaxRT: 800 * time.Millisecond,
//	}))
//	...
//	t, err := g.Acquire(ctx)
//	if err != nil {
//		return err // *RejectedError: ErrThrottled, ErrBreakerOpen or ErrConcurrencyLimit
//	}
//	err = call(ctx) // e.g. a gRPC call; for HTTP, pass the Status too
//	t.Done(overload.Outcome{Err: err})
//
// or lets a wrapper do it: Transport for HTTP (over an http.Transport or a
// smartroute client.Client), UnaryClientInterceptor for gRPC, which refuses
// with codes.Unavailable and a message that says throttled, breaker open
// or concurrency limit, and why. Both take a fallback for refused requests.
//
// A balancer of its own also has Ticket.Release (for a ticket whose
// request was never sent), Endpoint.AcquireLimit (send past an open
// breaker, within the limit, as in panic mode), IsRetryContext, and
// Acquire with a context that has already ended, which never waits.
//
// A Classifier decides what an Outcome means (Verdict): accepted or not for
// throttling, an error or not for breakers. Requests the guard refused, and
// requests whose caller gave up, never count against the service; a
// balancer must not count them against an endpoint either (they are
// *RejectedError or context.Canceled).
//
// # Server side
//
// A Shedder bounds the requests a server handles at once and refuses the
// rest with 503 and Retry-After (HTTP middleware) or ResourceExhausted with
// a retry pushback (gRPC interceptors): cheap refusals that the clients'
// throttling reads as "not accepted".
//
// # Metrics and logs
//
// With WithRegisterer: smartroute_overload_throttle_reject_probability
// (gauge), smartroute_overload_rejections_total (by scope and reason),
// smartroute_overload_breaker_state (service breakers: 0 closed, 1
// half-open, 2 open), smartroute_overload_endpoint_breakers (endpoints per
// breaker state), smartroute_overload_breaker_transitions_total, and
// smartroute_overload_endpoint_breaker_state per endpoint with
// WithPerEndpointMetrics. A Shedder exports
// smartroute_overload_server_shed_total and
// smartroute_overload_server_in_flight. Breakers log their changes and
// throttling logs when it starts and stops; nothing is logged per request.
package overload
