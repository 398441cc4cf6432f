package resolver

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/backoff"
	"github.com/smartroute/smartroute/registry"
)

// Defaults of the etcd resolver's options.
const (
	// DefaultEtcdCheckInterval is how long the etcd resolver lets its watch
	// stay silent before it asks etcd whether it still serves: the status
	// of the member, with clientv3.WithRequireLeader, which the member
	// answers from memory (no raft round, no disk). Together with
	// DefaultEtcdTimeout an outage is reported within about 5 s, well
	// inside the registry's 10 s lease TTL; a client whose watch is busy
	// sends no check at all.
	DefaultEtcdCheckInterval = 2 * time.Second
	// DefaultEtcdTimeout bounds each list (Get), the creation of a watch and
	// the wait for the answer to a check. A healthy etcd answers in milliseconds; 3 s
	// rides out a leader election (etcd's default election timeout is 1 s)
	// without reporting an outage that is not one.
	DefaultEtcdTimeout = 3 * time.Second
)

// Defaults of the DNS resolver's options.
const (
	// DefaultResolvConf is where the DNS resolver reads its name servers
	// unless WithNameservers or a target authority names them.
	DefaultResolvConf = "/etc/resolv.conf"
	// DefaultDNSTimeout bounds one query to one server, over UDP and, after
	// a truncated answer, over TCP. A data-centre resolver answers in
	// milliseconds and a recursive lookup in a few hundred; 2 s leaves
	// room for that while a dead server is skipped quickly (resolv.conf's
	// own default of 5 s is tuned for interactive tools, not for a
	// resolver that keeps its last good answer anyway).
	DefaultDNSTimeout = 2 * time.Second
	// DefaultDNSMinRefresh is the shortest time between two resolutions of
	// one target, whatever the TTL (service discovery often serves TTL 0)
	// and however often ResolveNow is called (gRPC calls it on every
	// connection failure). One second follows fast-changing records
	// closely while holding a client to one query per record type a
	// second.
	DefaultDNSMinRefresh = time.Second
	// DefaultDNSMaxRefresh is the longest time between two resolutions,
	// whatever the TTL. Records with a TTL of hours are still checked
	// every few minutes, so a set that changed behind a long TTL is not
	// followed stale for long (grpc-go waits 30 minutes; five is still a
	// negligible query rate).
	DefaultDNSMaxRefresh = 5 * time.Minute
	// defaultDNSPort is the name server port when none is given.
	defaultDNSPort = "53"
)

// Option configures a resolver. Options that do not apply to a resolver
// are ignored by it, so one list can be passed to New for any target.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	registerer prometheus.Registerer
	backoff    backoff.Exponential

	// etcd
	etcdClient    *clientv3.Client
	prefix        string
	checkInterval time.Duration
	etcdTimeout   time.Duration

	// dns
	nameservers      []string
	resolvConf       string
	resolvConfPort   string // tests only (export_test.go): resolv.conf servers listen on 53
	dnsTimeout       time.Duration
	minRefresh       time.Duration
	maxRefresh       time.Duration
	allSRVPriorities bool
}

func newOptions(opts []Option) (options, error) {
	o := options{
		prefix:         registry.DefaultPrefix,
		checkInterval:  DefaultEtcdCheckInterval,
		etcdTimeout:    DefaultEtcdTimeout,
		resolvConf:     DefaultResolvConf,
		resolvConfPort: defaultDNSPort,
		dnsTimeout:     DefaultDNSTimeout,
		minRefresh:     DefaultDNSMinRefresh,
		maxRefresh:     DefaultDNSMaxRefresh,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o, o.validate()
}

func (o *options) validate() error {
	switch {
	case o.backoff.Initial < 0 || o.backoff.Max < 0:
		return fmt.Errorf("resolver: negative backoff %v..%v", o.backoff.Initial, o.backoff.Max)
	case o.backoff.Max > 0 && o.backoff.Initial > o.backoff.Max:
		return fmt.Errorf("resolver: backoff initial %v is above max %v", o.backoff.Initial, o.backoff.Max)
	case o.checkInterval <= 0 || o.etcdTimeout <= 0:
		return fmt.Errorf("resolver: etcd check interval %v and timeout %v must be positive", o.checkInterval, o.etcdTimeout)
	case o.dnsTimeout <= 0:
		return fmt.Errorf("resolver: dns timeout %v must be positive", o.dnsTimeout)
	case o.minRefresh <= 0 || o.maxRefresh < o.minRefresh:
		return fmt.Errorf("resolver: dns refresh interval %v..%v: want 0 < min <= max", o.minRefresh, o.maxRefresh)
	}
	for i, ns := range o.nameservers {
		hp, err := nameserverAddr(ns)
		if err != nil {
			return err
		}
		o.nameservers[i] = hp
	}
	return nil
}

// nameserverAddr returns host:port for a name server given as an IP
// address, with or without a port (53 by default).
func nameserverAddr(ns string) (string, error) {
	host, port := ns, defaultDNSPort
	if h, p, err := net.SplitHostPort(ns); err == nil {
		host, port = h, p
	}
	if net.ParseIP(host) == nil {
		return "", fmt.Errorf("resolver: name server %q is not an IP address with an optional port: %w", ns, ErrInvalidAddress)
	}
	if _, err := parsePort(port); err != nil {
		return "", fmt.Errorf("resolver: name server %q: %w", ns, err)
	}
	return net.JoinHostPort(host, port), nil
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRegisterer registers the resolver's metrics on r (default: none).
// Resolvers of one process may share r; resolvers of the same target then
// share the series.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) { o.registerer = r }
}

// WithBackoff sets the capped exponential backoff between attempts after a
// failure: etcd lists and watches, and DNS resolutions (which never retry
// sooner than the minimum refresh interval). The default grows from 100 ms
// to 5 s with jitter. Resolvers never give up until their context ends.
func WithBackoff(initial, max time.Duration) Option {
	return func(o *options) {
		o.backoff.Initial = initial
		o.backoff.Max = max
	}
}

// WithEtcdClient sets the etcd client that New and Target.Build use for
// etcd:/// targets, and NewGRPCBuilderForScheme for the etcd scheme. The
// caller keeps ownership: resolvers never close it.
func WithEtcdClient(cli *clientv3.Client) Option {
	return func(o *options) { o.etcdClient = cli }
}

// WithPrefix sets the etcd prefix of the registry's key schema (default
// registry.DefaultPrefix, "/services").
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithEtcdHealthCheck sets how long the etcd watch may stay silent before
// the resolver asks etcd whether it still serves, and how long it then
// waits for the answer (and for a new watch to be created) before it
// reports etcd unreachable and starts over with a list. timeout also
// bounds each list. Defaults: DefaultEtcdCheckInterval and
// DefaultEtcdTimeout.
//
// The question is the status of the member the client reaches (through
// etcd's gRPC proxy, of a member behind it), which must have a leader. It
// is right on a quiet cluster and through the proxy, where a progress
// request is not: etcd leaves one unanswered while a watch starts beyond
// the current revision, and the proxy never answers one.
func WithEtcdHealthCheck(interval, timeout time.Duration) Option {
	return func(o *options) {
		o.checkInterval = interval
		o.etcdTimeout = timeout
	}
}

// WithNameservers sets the DNS servers to ask, as IP addresses with an
// optional port (default 53). They are tried in order: a server that times
// out, fails (SERVFAIL, REFUSED…), sends a message that does not parse or
// answers another question is skipped for the next. By default the
// servers come from DefaultResolvConf.
func WithNameservers(addrs ...string) Option {
	return func(o *options) { o.nameservers = append([]string(nil), addrs...) }
}

// WithResolvConf reads the name servers from a resolv.conf(5) file other
// than DefaultResolvConf. Only its nameserver lines are used: names are
// always looked up as given, fully qualified, without search domains. The
// file must be usable when the resolver is built; it is read again
// whenever it changes (replaced, rewritten), and a version that is not
// usable keeps the previous servers.
func WithResolvConf(path string) Option {
	return func(o *options) { o.resolvConf = path }
}

// WithDNSTimeout bounds one DNS query to one server (default
// DefaultDNSTimeout).
func WithDNSTimeout(d time.Duration) Option {
	return func(o *options) { o.dnsTimeout = d }
}

// WithRefreshInterval clamps the time between DNS resolutions: records are
// resolved again when their TTL runs out, but never sooner than min (also
// the floor for ResolveNow and for retries after a failure) and never later
// than max. Defaults: DefaultDNSMinRefresh and DefaultDNSMaxRefresh.
func WithRefreshInterval(min, max time.Duration) Option {
	return func(o *options) {
		o.minRefresh = min
		o.maxRefresh = max
	}
}

// WithAllSRVPriorities makes the SRV resolver deliver the targets of every
// priority, each with its Origin.Priority, for a client that fails over
// between priority groups itself. By default only the most preferred
// (lowest-numbered) priority group that has addresses is delivered, as
// RFC 2782 asks.
func WithAllSRVPriorities() Option {
	return func(o *options) { o.allSRVPriorities = true }
}
