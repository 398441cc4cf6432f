package probe

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults, after nginx's upstream health checks.
const (
	DefaultInterval    = 5 * time.Second
	DefaultTimeout     = time.Second
	DefaultJitter      = 0.1
	DefaultRise        = 2
	DefaultFall        = 3
	DefaultDecay       = 10 * time.Second
	DefaultConcurrency = 64
)

// Option configures a Prober.
type Option func(*options)

type options struct {
	interval    time.Duration
	timeout     time.Duration
	jitter      float64
	rise, fall  int
	decay       time.Duration
	concurrency int
	logger      *slog.Logger
	reg         prometheus.Registerer
	perEndpoint bool
}

func defaultOptions() options {
	return options{
		interval:    DefaultInterval,
		timeout:     DefaultTimeout,
		jitter:      DefaultJitter,
		rise:        DefaultRise,
		fall:        DefaultFall,
		decay:       DefaultDecay,
		concurrency: DefaultConcurrency,
	}
}

// WithInterval sets the time between the checks of one address (default
// 5s). Non-positive values are ignored.
func WithInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.interval = d
		}
	}
}

// WithTimeout bounds each check (default 1s). Non-positive values are
// ignored.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithJitter spreads the checks: each wait is the interval times a random
// factor in [1-frac, 1+frac] (default 0.1). frac is clamped to [0, 1].
func WithJitter(frac float64) Option {
	return func(o *options) {
		o.jitter = min(max(frac, 0), 1)
	}
}

// WithRise sets how many consecutive successes make an address healthy
// (default 2). Values below 1 are ignored.
func WithRise(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.rise = n
		}
	}
}

// WithFall sets how many consecutive failures make an address unhealthy
// (default 3). Values below 1 are ignored.
func WithFall(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.fall = n
		}
	}
}

// WithDecay sets the time constant of the smoothed RTT (default 10s): a
// sample taken dt after the previous one gets the weight 1-exp(-dt/decay).
// Non-positive values are ignored.
func WithDecay(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.decay = d
		}
	}
}

// WithConcurrency bounds how many checks run at once across all addresses
// (default 64). Values below 1 are ignored.
func WithConcurrency(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.concurrency = n
		}
	}
}

// WithLogger sets the logger for health changes (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		o.logger = l
	}
}

// WithRegisterer registers the prober's metrics on r (default: none).
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) {
		o.reg = r
	}
}

// WithPerEndpointMetrics adds an addr label to the metrics (default off:
// the number of series would grow with the number of endpoints).
func WithPerEndpointMetrics(on bool) Option {
	return func(o *options) {
		o.perEndpoint = on
	}
}
