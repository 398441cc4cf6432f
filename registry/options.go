package registry

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/backoff"
)

// Defaults of Register's options.
const (
	// DefaultTTL is the lease TTL. 10 s lets a crashed instance leave the
	// table within seconds while riding out etcd leader elections (which
	// take a few election timeouts) without losing the lease.
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest TTL accepted: etcd grants leases in whole
	// seconds, and the keepalive runs every TTL/3.
	MinTTL = time.Second
)

// Option configures Register.
type Option func(*options)

type options struct {
	ttl        time.Duration
	prefix     string
	logger     *slog.Logger
	registerer prometheus.Registerer
	backoff    backoff.Exponential
}

func defaultOptions() options {
	return options{ttl: DefaultTTL, prefix: DefaultPrefix}
}

func (o *options) validate() error {
	if o.ttl < MinTTL {
		return fmt.Errorf("registry: ttl %v is under the %v minimum", o.ttl, MinTTL)
	}
	if o.backoff.Max > 0 && o.backoff.Initial > o.backoff.Max {
		return fmt.Errorf("registry: backoff initial %v is above max %v", o.backoff.Initial, o.backoff.Max)
	}
	return nil
}

// ttlSeconds returns the TTL in whole seconds, rounded up, as etcd takes it.
func (o *options) ttlSeconds() int64 {
	return int64((o.ttl + time.Second - 1) / time.Second)
}

// WithTTL sets the lease TTL (default DefaultTTL, at least MinTTL; rounded
// up to whole seconds). A crashed instance disappears within the TTL.
func WithTTL(ttl time.Duration) Option {
	return func(o *options) { o.ttl = ttl }
}

// WithPrefix sets the etcd prefix of the key schema (default DefaultPrefix).
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = normPrefix(prefix) }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRegisterer registers the registry's metrics on r. Registrations of
// one process may share r; they then share the series.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) { o.registerer = r }
}

// WithBackoff sets the capped exponential backoff between attempts to
// register again after the lease was lost (default 100 ms growing to 5 s,
// with jitter). Re-registration never gives up until Close.
func WithBackoff(initial, max time.Duration) Option {
	return func(o *options) {
		o.backoff.Initial = initial
		o.backoff.Max = max
	}
}
