package loadreport

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Reporter.
type Option func(*options)

type options struct {
	capacity int
	format   Format
	exclude  []string
	window   time.Duration
	reg      prometheus.Registerer
	logger   *slog.Logger
}

// WithCapacity sets the capacity hint (see SetCapacity). Default: none;
// values <= 0 are ignored.
func WithCapacity(n int) Option {
	return func(o *options) { o.capacity = n }
}

// WithFormat sets the format of the endpoint-load-metrics header written
// by Middleware and ReportOnly (default FormatText: the cheapest to write
// and the one clients decode without allocating). Unknown formats are
// ignored.
func WithFormat(f Format) Option {
	return func(o *options) {
		if f <= FormatBinary {
			o.format = f
		}
	}
}

// WithExcludedMethods adds gRPC method prefixes ("/pkg.Service/" or a full
// method name) whose calls are not counted as requests in flight; their
// trailers still carry a report. Long-lived streams belong here: they
// would count for their whole life. The health service
// (/grpc.health.v1.Health/, whose Watch is such a stream and whose Check
// is what probes call), the ORCA service (/xds.service.orca.v3.OpenRcaService/)
// and server reflection are always excluded.
func WithExcludedMethods(prefixes ...string) Option {
	return func(o *options) { o.exclude = append(o.exclude, prefixes...) }
}

// WithRateWindow has the Reporter measure, over consecutive windows of
// length d, the requests completed per second, reported as rps_fractional,
// and, when a capacity is set and no application utilization was set
// explicitly, the mean requests in flight divided by the capacity,
// reported as application_utilization. These are the two figures the
// weighted_round_robin policies of grpc-go and Envoy need (they ignore
// reports without them); 1s suits them, as they recompute weights every
// second. Default: off (d <= 0), so that counting a request costs no clock
// read.
func WithRateWindow(d time.Duration) Option {
	return func(o *options) { o.window = d }
}

// WithRegisterer registers the Reporter's metrics on reg (default: none):
// the gauge smartroute_loadreport_requests_in_flight, read when scraped.
// Give each Registerer one Reporter: a second one finds the gauge taken
// and the series keeps reading the first.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// WithLogger sets the logger for set-up problems (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
