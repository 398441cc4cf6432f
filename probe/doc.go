// Package probe checks endpoints actively: it measures their round-trip time
// and decides whether they are healthy.
//
// A Checker performs one check of one address and returns its round-trip
// time: TCP connects, HTTP issues a GET and judges the status, GRPCHealth
// calls grpc.health.v1 Health/Check, TLSHandshake completes a verified
// handshake and reports the peer certificate's expiry.
//
// A Prober runs one loop per address (SetAddrs adds and removes them
// without disturbing the others). Each loop checks its address every
// interval (5s by default, with jitter), bounded by a timeout (1s), and
// keeps a Status: the health verdict, a smoothed RTT, the last RTT and
// error, and the consecutive successes and failures. An address starts
// Unknown, becomes Healthy after rise (2) successes in a row and Unhealthy
// after fall (3) failures in a row, as in nginx's upstream health checks.
//
// The smoothed RTT is an exponentially weighted moving average whose
// weights decay with time rather than with the number of samples: a sample
// taken dt after the previous one counts for 1-exp(-dt/decay), so the
// estimate follows a change within a few decay windows (10s by default)
// whatever the interval.
//
// Checkers that implement LoadChecker (HTTP, GRPCHealth) also read the
// load report the endpoint sends with its answer: the endpoint-load-metrics
// header of the HTTP response, the ORCA report in the trailer of the gRPC
// health call or, with GRPCHealth.OOB, the first report of the ORCA
// out-of-band stream. The Prober keeps the latest one in Status.Load, with
// the time it arrived, so that a client knows an endpoint's requests in
// flight before its first request and between requests, as Prequal's
// asynchronous probes do. Servers send these reports with package
// loadreport; a report that cannot be decoded is Status.LoadErr and never
// fails the check.
//
// Subscribers hear of every completed check (Event.HealthChanged marks the
// ones that changed the verdict). Close stops every loop and waits for
// them.
package probe
