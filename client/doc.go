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
// The default policy, LeastLatency, keeps for every endpoint a peak EWMA of
// its latency as Finagle and Linkerd do (a slower answer replaces the
// estimate at once, faster ones pull it down with a 10 s time constant, and
// an idle endpoint's estimate decays so that it is tried again now and
// then), multiplies it by the requests in flight + 1, and picks the lowest
// cost, at random among costs within a 20% tie band so that many clients
// do not herd. A new endpoint starts from its probe RTT, or DefaultRTT;
// while its first request is in flight it counts as slow (Finagle's
// penalty), so a slow newcomer cannot take a burst of requests before it
// is measured.
// P2C, RoundRobin, WeightedRoundRobin (smooth, as nginx), LeastRequest and
// ConsistentHash are the alternatives (WithPolicy).
//
// Picking reads an immutable snapshot of the table and atomics: no lock and
// no allocation.
//
// # Failure handling
//
//   - Endpoints the prober finds unhealthy, and endpoints ejected by
//     outlier detection (WithOutlierDetection: 5 consecutive failures eject
//     for 30 s, growing with every ejection, at most 10% of the table), get
//     no requests, unless fewer than half are healthy: then every endpoint
//     is tried (panic mode) rather than every request failed.
//   - Draining endpoints get no new requests.
//   - Requests that are safe to repeat (idempotent methods, an
//     Idempotency-Key header, or a connection that never opened) are retried
//     on another endpoint, within a retry budget (WithRetries). Hedging
//     (WithHedging) sends a second copy of an idempotent request after a
//     delay or a latency percentile; the first answer wins.
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
// Endpoints returns the table (health, RTT, in-flight, ejection and why);
// Pick says where the next request would go and why, without sending it.
// WithRegisterer exports smartroute_client_* metrics; per-endpoint series
// are opt-in (WithPerEndpointMetrics).
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
package client
