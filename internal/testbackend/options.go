package testbackend

import (
	"crypto/tls"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/smartroute/smartroute/loadreport"
)

// Option configures an HTTP or gRPC backend.
type Option func(*config)

type config struct {
	name     string
	addr     string
	latency  time.Duration
	tailP    float64
	tailK    float64
	tls      *tls.Config
	status   int
	capacity int
	handler  http.Handler

	loadReport bool
	loadOpts   []loadreport.Option
	middleware func(http.Handler) http.Handler
	serverOpts []grpc.ServerOption
	noCancel   bool
}

func newConfig(opts []Option) config {
	c := config{addr: "127.0.0.1:0"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithName sets the backend's name, echoed in every answer (default: its
// address).
func WithName(name string) Option {
	return func(c *config) { c.name = name }
}

// WithAddr sets the listen address (default "127.0.0.1:0", a free port).
func WithAddr(addr string) Option {
	return func(c *config) { c.addr = addr }
}

// WithLatency delays every answer by d (changeable later with SetLatency).
func WithLatency(d time.Duration) Option {
	return func(c *config) { c.latency = d }
}

// WithHeavyTail delays a fraction p of the answers k times the latency
// instead of once (changeable later with SetHeavyTail).
func WithHeavyTail(p, k float64) Option {
	return func(c *config) { c.tailP, c.tailK = p, k }
}

// WithTLS serves TLS with cfg (HTTPS, or gRPC over TLS).
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg }
}

// WithStatus makes an HTTP backend answer every request with code (e.g.
// 503) instead of 200. Changeable later with SetStatus.
func WithStatus(code int) Option {
	return func(c *config) { c.status = code }
}

// WithCapacity lets at most n requests be worked on at once; further
// requests queue until a worker is free (or the client gives up). Zero
// means no limit.
func WithCapacity(n int) Option {
	return func(c *config) { c.capacity = n }
}

// WithHandler makes an HTTP backend answer with h (after the capacity
// limit and the latency, with X-Backend already set) instead of the
// default answer. A status set with WithStatus or SetStatus still wins: h
// is then not called.
func WithHandler(h http.Handler) Option {
	return func(c *config) { c.handler = h }
}

// LoadReportWindow is the rate window of backends that report load: grpc-go's
// and Envoy's weighted_round_robin recompute their weights every second.
const LoadReportWindow = time.Second

// WithLoadReport makes the backend report its load through a
// loadreport.Reporter: HTTP answers carry the endpoint-load-metrics
// header; gRPC calls (health checks included) carry ORCA reports in their
// trailers and the backend serves the ORCA out-of-band service. A request
// counts as in flight from its arrival, queued for a worker or not, to its
// answer. The capacity of WithCapacity is reported as the capacity hint,
// and with a rate window of LoadReportWindow the reports also carry
// rps_fractional and application_utilization (mean requests in flight over
// capacity), which grpc-go's weighted_round_robin needs. opts apply after
// these defaults; LoadReporter returns the Reporter.
func WithLoadReport(opts ...loadreport.Option) Option {
	return func(c *config) {
		c.loadReport = true
		c.loadOpts = append(c.loadOpts, opts...)
	}
}

// newReporter returns the backend's Reporter, nil without WithLoadReport.
func (c config) newReporter() *loadreport.Reporter {
	if !c.loadReport {
		return nil
	}
	opts := []loadreport.Option{loadreport.WithRateWindow(LoadReportWindow)}
	if c.capacity > 0 {
		opts = append(opts, loadreport.WithCapacity(c.capacity))
	}
	return loadreport.New(append(opts, c.loadOpts...)...)
}

// WithMiddleware wraps an HTTP backend's whole handling in mw, outermost:
// mw sees every request before the capacity limit, the latency and the
// counters (e.g. a load shedder in front of the backend's queue). Requests
// mw answers itself are not counted by Requests.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(c *config) { c.middleware = mw }
}

// WithServerOptions passes opts (e.g. interceptors) to a gRPC backend's
// grpc.NewServer, after the backend's own.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(c *config) { c.serverOpts = append(c.serverOpts, opts...) }
}

// WithoutCancel makes an HTTP backend finish every request it took, in
// its queue and in its work, even after the client has gone: a server
// whose handlers do not watch the request's context, and so work on for
// callers that gave up (the waste that turns overload into collapse).
// Stop still ends them at once.
func WithoutCancel() Option {
	return func(c *config) { c.noCancel = true }
}
