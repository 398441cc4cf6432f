// Package benchmarks measures what smartroute claims: that routing a request
// costs almost nothing, and that it routes better than the alternatives.
// It holds only benchmarks (and a few fast tests of their helpers); nothing
// here is imported.
//
// Every figure comes from real servers on loopback, side by side with its
// baseline in the same run, so that benchstat can compare them:
//
//   - BenchmarkTransport: the smartroute client against a bare
//     http.Transport to one backend (req/s, p50 and p99 latency).
//   - BenchmarkRouting: HTTP routing quality for every policy and an oracle
//     that always picks the truly fastest backend, in four scenarios (one
//     slow backend, a heavy tail, capacity-limited backends under many
//     clients, a latency shift half-way).
//   - BenchmarkGRPCOverhead, BenchmarkGRPCRouting, BenchmarkGRPCPicker and
//     BenchmarkGRPCPickerSerial: the smartroute gRPC balancer against
//     grpc-go's round_robin, least_request and (built with -tags grpcwrr,
//     which needs github.com/cncf/xds/go in the module graph)
//     weighted_round_robin.
//   - BenchmarkDiscovery: registration, deregistration and crash, through a
//     real etcd, to the first or last request that sees them.
//   - BenchmarkOverload: three times the capacity of two backends from four
//     clients with retries, without protection and with package
//     overload's shedder and guard (goodput, p99, backlog, recovery).
//
// The pick itself is measured in package client (BenchmarkPick).
//
// Scenario benchmarks run a fixed number of requests per iteration, so
// their figures do not depend on b.N; run them with -benchtime=1x (one
// scenario per count) as scripts/bench does:
//
//	go test -run '^$' -bench '^Benchmark(Routing|GRPCRouting|Discovery)$' -benchmem -benchtime=1x -count 6 ./benchmarks
//
// scripts/bench runs everything and writes BENCHMARKS.md.
//
// Custom figures are reported with b.ReportMetric: ms-mean, ms-p50, ms-p99
// (request latency), worst-share (share of requests sent to the worst
// backend), max-share (share of the busiest backend), req/s, ms-follow (time
// until traffic leaves a backend that became slow), errors/op; and for
// BenchmarkOverload goodput-ratio, p99-ratio, queued-at-end, s-recover and
// local-reject-share (see its doc comment).
package benchmarks
