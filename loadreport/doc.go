// Package loadreport lets servers tell clients and probes how loaded they
// are, in the formats of ORCA (Open Request Cost Aggregation) that Envoy and
// gRPC read, and decodes those reports on the client side.
//
// # Server side
//
// A Reporter counts the requests in flight: Middleware wraps an
// http.Handler, ServerOptions installs gRPC interceptors beside grpc-go's
// orca.CallMetricsServerOption, and RegisterORCA registers grpc-go's ORCA
// out-of-band service. Every HTTP response then carries the
// endpoint-load-metrics header, every gRPC call a load report in its
// trailer, and the OOB stream the same figures:
//
//	endpoint-load-metrics: TEXT named_metrics.rif=3,named_metrics.capacity=8
//
// It is optional and independent of any balancer: a server that does not
// use it simply sends no reports, and a client that reads none routes on
// latency alone.
//
// # What is reported
//
// Requests in flight (RIF) are what the client-side routing needs most: the
// number of requests the server is working on or queueing, besides the one
// being answered. Google's Prequal (NSDI 2024) routes on exactly this,
// learned from probes. ORCA has no standard field for it, so it travels as
// the named metric "rif" (named_metrics.rif); the capacity hint, how many
// requests the server works on at once, as "capacity". cpu_utilization,
// mem_utilization and application_utilization are sent when set on the
// Reporter; with WithRateWindow it also measures rps_fractional and derives
// application_utilization from RIF and capacity, which is what the
// weighted_round_robin policies of grpc-go and Envoy consume.
//
// Health checks are reported on but not counted: wrap a probe endpoint
// with ReportOnly, and gRPC health, ORCA and reflection calls are never
// counted (WithExcludedMethods adds more, such as long-lived streams).
//
// # Client side
//
// ParseHeader and FromHeader decode the header in its three formats (TEXT,
// JSON, BIN) into a Report, a small value whose RIF is read without
// allocation; a TEXT header of known fields decodes without allocating.
// FromMetadata decodes a gRPC trailer and FromProto the OrcaLoadReport that
// grpc-go hands balancers (balancer.DoneInfo.ServerLoad, OOB listeners).
// Every report carries the time it was received: how old it is tells how
// far to trust it. Malformed reports are refused with an error wrapping
// ErrMalformed that names the fault; a missing one is ErrNoReport.
//
// Importing this package imports grpc-go's orca package, whose init makes
// gRPC clients parse load reports from trailers into
// balancer.DoneInfo.ServerLoad.
package loadreport
