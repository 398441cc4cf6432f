// Package client routes each request of a service to the endpoint that
// will answer it fastest, as an http.RoundTripper and as the gRPC balancer
// "smartroute".
//
// A Client follows a resolver (etcd watch, DNS, static list), probes every
// endpoint for health and RTT (package probe), learns from every real
// request (latency, requests in flight, failures), and picks an endpoint
// per request:
//
//	c, err := client.New("etcd:///api", client.WithEtcdClient(etcd))
//	if err != nil { ... }
//	defer c.Close()
//	hc := &http.Client{Transport: c, Timeout: 5 * time.Second}
//	resp, err := hc.Get("https://api/users/42") // "api" names the service
//
// Only the dial target changes: the URL, the Host header and the TLS server
// name keep naming the service, so certificates are verified against the
// service's identity, not an IP address.
//
// # Picking
//
// The default policy, LeastLatency, sends each request to the endpoint
// expected to answer first. The expected latency joins a log-scale latency
// estimate from real requests (quick to punish, quick to forgive), a
// failure penalty kept apart from it that fades within about a second, the
// load (this client's requests in flight, and every client's when the
// server reports it with package loadreport), and the age of the oldest
// unanswered request as a floor, so that a stalled endpoint loses traffic
// before its first slow answer. A pick compares two candidates: a leader
// near the best and a challenger drawn towards the fastest (the power of two
// choices over a latency-weighted draw); within a 20% tie band the one with
// fewer requests in flight wins, and the endpoint whose latest answer
// showed room keeps the client's next request unless another is clearly
// better, which keeps many clients from herding. New
// endpoints, and endpoints not measured for a while, are explored one
// request at a time, without waiting for probes. A caller's deadline that
// runs out on an endpoint counts against it; a gRPC stream's length never
// counts as latency.
//
// P2C (uniform two choices on the same cost), RoundRobin,
// WeightedRoundRobin (smooth, as nginx), LeastRequest and ConsistentHash
// are the alternatives (WithPolicy).
//
// Picking reads an immutable snapshot of the table, a coarse clock and
// atomics: no lock and no allocation. The candidates' weights and the
// exploration list are refreshed every 10 ms off the request path.
//
// # Failure handling
//
//   - Endpoints the prober finds unhealthy, and endpoints ejected by
//     outlier detection (WithOutlierDetection: 5 consecutive failures eject
//     for 30 s, growing with every ejection, at most 10% of the table), get
//     no requests, unless fewer than half are healthy: then every endpoint
//     is tried (panic mode) rather than every request failed. In panic
//     mode a retry still goes first to a healthy endpoint the request has
//     not tried: the failure it retries confirms the health signal. A server
//     that refuses work to protect itself (429, 503, gRPC
//     ResourceExhausted) is busy, not broken: its answer adds the short
//     failure penalty, so the next requests go elsewhere for a moment, but
//     never counts towards ejection.
//   - Draining endpoints get no new requests.
//   - Requests that are safe to repeat (idempotent methods, an
//     Idempotency-Key header, or a connection that never opened) are retried
//     on another endpoint, within a retry budget (WithRetries). Hedging
//     (WithHedging) sends a second copy of an idempotent request after a
//     delay or a latency percentile; the first answer wins.
//
// # Overload protection
//
// WithOverload (and "overload" in the gRPC service config, GRPCOverload)
// puts a guard of package overload in front of the service: adaptive
// throttling, service circuit breakers and concurrency limits (requests,
// pending, retries in flight) refuse an attempt at once with an
// *overload.RejectedError, or WithOverloadFallback's answer; endpoint
// breakers take an endpoint out of rotation as an ejection would (within
// the panic threshold) until their retry timeout, when the next requests
// probe it; an endpoint at its limit of requests in flight is passed over
// at pick time. Refused requests never count against an endpoint.
// Overload, Endpoints and Pick show the guard's state; over gRPC the
// picker does it all for unary RPCs (OverloadFallbackInterceptor answers
// refused ones).
//
// # Subsets
//
// WithZone keeps traffic in the local zone while it is healthy (at least
// 70% of its endpoints eligible, so endpoints ejected for failing under
// load count against it) and retries in another zone once every local
// endpoint was tried; WithLabelSelector restricts the endpoints; WithCanary sends a
// share of requests, and every marked one (CanaryContext, or a header), to
// the endpoints of a gray release; WithSlowStart ramps up new endpoints.
//
// # Observability
//
// Endpoints returns the table (health, latency estimate, expected latency,
// failure penalty, in-flight, load reports, ejection and why); Pick says
// where the next request would go and why, without sending it.
// WithRegisterer exports smartroute_client_* metrics; per-endpoint series
// are opt-in (WithPerEndpointMetrics) and leave with their endpoint.
//
// # gRPC
//
// RegisterGRPCBalancer registers the same table and policies as the gRPC
// balancer "smartroute", over grpc-go's endpointsharding and pickfirst:
//
//	client.RegisterGRPCBalancer()
//	conn, err := grpc.NewClient("etcd:///api",
//		grpc.WithResolvers(resolver.NewGRPCBuilder(etcd)),
//		grpc.WithDefaultServiceConfig(client.GRPCServiceConfig(client.LeastLatency)),
//		grpc.WithTransportCredentials(creds))
//
// GRPCConfig documents the service-config fields. An endpoint that stops
// costs no failed RPC to wait-for-ready calls when it stops in order
// (GOAWAY), and none to calls under a retry policy when it crashes.
//
// # HTTP/2
//
// The client attempts HTTP/2 over TLS with any transport passed to
// WithTransport, even one with its own TLSClientConfig (for which net/http
// would otherwise stay on HTTP/1.1); WithoutHTTP2 turns it off.
package client
