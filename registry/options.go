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
	// DefaultEtcdCheckInterval is how long the key's watch may stay
	// silent before the registration asks etcd whether it still serves
	// (a member status, answered from memory: see WithEtcdHealthCheck).
	// The same as the resolver's: a stuck watch would miss an
	// out-of-band delete, and 2 s finds one well inside the lease TTL.
	DefaultEtcdCheckInterval = 2 * time.Second
	// DefaultEtcdTimeout bounds each check and the creation of the key's
	// watch. A healthy etcd answers in milliseconds; 3 s rides out a
	// leader election (etcd's default election timeout is 1 s).
	DefaultEtcdTimeout = 3 * time.Second
)

// Option configures Register.
type Option func(*options)

type options struct {
	ttl           time.Duration
	prefix        string
	logger        *slog.Logger
	registerer    prometheus.Registerer
	backoff       backoff.Exponential
	checkInterval time.Duration
	etcdTimeout   time.Duration
	hook          func(hookPoint) // tests only; see export_test.go
}

func defaultOptions() options {
	return options{
		ttl:           DefaultTTL,
		prefix:        DefaultPrefix,
		checkInterval: DefaultEtcdCheckInterval,
		etcdTimeout:   DefaultEtcdTimeout,
	}
}

func (o *options) validate() error {
	if o.ttl < MinTTL {
		return fmt.Errorf("registry: ttl %v is under the %v minimum", o.ttl, MinTTL)
	}
	if o.backoff.Initial < 0 || o.backoff.Max < 0 {
		return fmt.Errorf("registry: negative backoff %v..%v", o.backoff.Initial, o.backoff.Max)
	}
	if o.backoff.Max > 0 && o.backoff.Initial > o.backoff.Max {
		return fmt.Errorf("registry: backoff initial %v is above max %v", o.backoff.Initial, o.backoff.Max)
	}
	if o.checkInterval <= 0 || o.etcdTimeout <= 0 {
		return fmt.Errorf("registry: etcd check interval %v and timeout %v must be positive", o.checkInterval, o.etcdTimeout)
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
// Trailing slashes are ignored, as by Key and by the resolver's WithPrefix,
// so that writer and reader given the same prefix agree; "/" puts
// instances at /<service>/<id>.
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

// WithBackoff sets the capped exponential backoff, with jitter, of every
// retry loop of the registration: registering again after the lease was
// lost, checking and re-writing the key, and watching it again after the
// watch ended (default 100 ms growing to 5 s). It restarts from initial
// once a watch has stayed up for a check interval. Nothing gives up until
// Close.
func WithBackoff(initial, max time.Duration) Option {
	return func(o *options) {
		o.backoff.Initial = initial
		o.backoff.Max = max
	}
}

// WithEtcdHealthCheck sets how long the watch of the registration's key may
// stay silent before the registration asks etcd whether it still serves,
// and how long it waits for that answer and for the watch's creation
// before it watches again (checking the key first). Defaults:
// DefaultEtcdCheckInterval and DefaultEtcdTimeout.
//
// The question is the status of the member the client reaches, with
// clientv3.WithRequireLeader: answered from memory, correct on a quiet
// cluster and through etcd's gRPC proxy (progress requests are neither).
// The lease itself is judged by its keepalives: the registration turns
// Lost when no keepalive was answered for the TTL.
func WithEtcdHealthCheck(interval, timeout time.Duration) Option {
	return func(o *options) {
		o.checkInterval = interval
		o.etcdTimeout = timeout
	}
}
