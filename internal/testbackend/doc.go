// Package testbackend runs real servers on loopback for tests, benchmarks
// and examples: an HTTP(S) backend and a gRPC backend with injectable,
// runtime-adjustable latency (including a heavy tail), a status or error
// override, a capacity limit and request counters, both of which can be
// stopped and restarted on the same address, that report their load in
// the ORCA formats with WithLoadReport, optionally behind a middleware
// (WithMiddleware, WithServerOptions) or finishing work for clients that
// left (WithoutCancel); a Blackhole that accepts TCP
// connections and never answers; and Proxy, an in-process toxiproxy for
// network faults (latency, blackhole, resets, slow close, slicing,
// bandwidth, disable/enable).
//
// Constructors (NewHTTP, NewGRPC, NewBlackhole, NewProxy) return errors and
// need no *testing.T; the MustXxx variants fail the test instead and
// register the cleanup with t.Cleanup. Every server stops its goroutines
// when closed, so tests using them can check for leaks (internal/leakcheck).
package testbackend
