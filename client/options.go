package client

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/overload"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// Defaults of the table and the policies.
const (
	// DefaultPolicy is LeastLatency.
	DefaultPolicy = LeastLatency
	// DefaultDecay is the longest an endpoint goes without a request
	// measuring it: least_latency explores an endpoint as fast as the best
	// every 100 ms, a slower one less often (see WithLatencyDecay), and
	// never less often than this.
	DefaultDecay = 10 * time.Second
	// DefaultRTT is the latency assumed for a new endpoint before the
	// prober or a request has measured it: a LAN round trip plus a little
	// work, neither zero (a newcomer would take every request) nor a
	// penalty (it would take none).
	DefaultRTT = 10 * time.Millisecond
	// DefaultFailurePenalty is about how long one failure keeps an
	// endpoint out of the running: a failure multiplies its cost by 5 and
	// the penalty fades within this time, so one bad answer costs about a
	// second of traffic while failure after failure keeps the endpoint out
	// (Finagle's and Envoy's answers to the same problem are compared in
	// the README). An endpoint no request has measured counts as this
	// latency while its first request is out.
	DefaultFailurePenalty = time.Second
	// DefaultTieBand treats expected latencies within 20% of each other as
	// equal: estimates on shared machines jitter by that much, and among
	// near-equals the candidate with fewer requests in flight is the
	// better bet, which is also what stops many clients herding onto one
	// endpoint.
	DefaultTieBand = 0.2
	// DefaultLoadReportMaxAge is how long a server's load report counts
	// (WithLoadReportMaxAge): fully when fresh, half after a tenth of it,
	// not at all once it is older. Requests in flight change within a
	// service time; a report a second old says little.
	DefaultLoadReportMaxAge = 500 * time.Millisecond
	// DefaultPanicThreshold is Envoy's: below 50% healthy, pick among all.
	DefaultPanicThreshold = 0.5
	// DefaultRingReplicas is the number of points per endpoint on the
	// consistent-hash ring (at weight 1): with 100, load is within a few
	// percent of even and a ring of 10,000 endpoints still builds fast.
	DefaultRingReplicas = 100
	// DefaultEmptySetGrace is how long a client keeps routing on its last
	// endpoints when the resolver suddenly delivers an empty set: the
	// default lease TTL, time for instances whose leases expired during an
	// etcd outage to register again.
	DefaultEmptySetGrace = 10 * time.Second
	// DefaultSlowStartMinShare is the share of traffic a starting endpoint
	// gets at the beginning of its slow-start window.
	DefaultSlowStartMinShare = 0.1
)

// Option configures a Client.
type Option func(*config)

// config is the resolved configuration, immutable once built.
type config struct {
	policy         Policy
	decay          time.Duration
	defaultRTT     time.Duration
	failurePenalty time.Duration
	tieBand        float64
	panicThreshold float64
	ringReplicas   int
	slowStart      time.Duration
	emptyGrace     time.Duration
	maxConnAge     time.Duration
	slowStartMin   float64
	maxReportAge   time.Duration

	// Derived by derive: the failure penalty's time constant (ns) and
	// the load report's.
	penaltyTau    float64
	loadReportTau time.Duration

	outlier  OutlierDetection
	zone     Zone
	selector map[string]string
	canary   *Canary
	hashKey  func(*http.Request) string

	checker   probe.Checker
	probeOpts []probe.Option
	noProbe   bool

	retry   RetryPolicy
	hedging *Hedging

	// Overload protection (overload.go).
	overloadOn       bool
	overloadOpts     []overload.Option
	overloadFallback func(*http.Request, error) (*http.Response, error)

	base    *http.Transport
	noHTTP2 bool

	etcd         *clientv3.Client
	resolverOpts []resolver.Option

	logger             *slog.Logger
	registerer         prometheus.Registerer
	perEndpointMetrics bool

	// requireConnected (the gRPC balancer) picks only endpoints whose
	// child connection is READY.
	requireConnected bool
	// hashHeader is the gRPC metadata key of the consistent_hash key.
	hashHeader string

	now func() int64 // monotonic nanoseconds; tests may replace it

	// rand is the picks' random source, one per client.
	rand *randSource
	// salt is a random number of this client's (see exploreJitter).
	salt uint64
}

func defaultConfig() config {
	epoch := time.Now()
	return config{
		policy:         DefaultPolicy,
		decay:          DefaultDecay,
		defaultRTT:     DefaultRTT,
		failurePenalty: DefaultFailurePenalty,
		tieBand:        DefaultTieBand,
		panicThreshold: DefaultPanicThreshold,
		ringReplicas:   DefaultRingReplicas,
		slowStartMin:   DefaultSlowStartMinShare,
		emptyGrace:     DefaultEmptySetGrace,
		maxReportAge:   DefaultLoadReportMaxAge,
		outlier:        OutlierDetection{}.withDefaults(),
		zone:           Zone{}.withDefaults(),
		retry:          RetryPolicy{}.withDefaults(),
		now:            func() int64 { return int64(time.Since(epoch)) },
		rand:           newRandSource(),
		salt:           rand.Uint64(),
	}
}

func (c *config) validate() error {
	if _, err := ParsePolicy(string(c.policy)); err != nil {
		return err
	}
	switch {
	case c.decay <= 0:
		return fmt.Errorf("client: latency decay %v must be positive", c.decay)
	case c.defaultRTT <= 0:
		return fmt.Errorf("client: default RTT %v must be positive", c.defaultRTT)
	case c.failurePenalty <= 0:
		return fmt.Errorf("client: failure penalty %v must be positive", c.failurePenalty)
	case c.tieBand < 0 || c.tieBand > 1:
		return fmt.Errorf("client: tie band %v must be within [0, 1]", c.tieBand)
	case c.panicThreshold < 0 || c.panicThreshold > 1:
		return fmt.Errorf("client: panic threshold %v must be within [0, 1]", c.panicThreshold)
	case c.slowStart < 0:
		return fmt.Errorf("client: slow start window %v must not be negative", c.slowStart)
	case c.ringReplicas < 1:
		return fmt.Errorf("client: ring replicas %d must be at least 1", c.ringReplicas)
	}
	if c.maxReportAge <= 0 {
		return fmt.Errorf("client: load report max age %v must be positive", c.maxReportAge)
	}
	if err := c.outlier.validate(); err != nil {
		return err
	}
	if err := c.zone.validate(); err != nil {
		return err
	}
	if c.canary != nil {
		if err := c.canary.validate(); err != nil {
			return err
		}
	}
	if err := c.retry.validate(); err != nil {
		return err
	}
	if c.hedging != nil {
		if err := c.hedging.validate(); err != nil {
			return err
		}
	}
	return nil
}

// derive computes the fields that follow from the others; every
// constructor calls it once the options are applied.
func (c *config) derive() {
	c.penaltyTau = float64(c.failurePenalty) / failureDecays
	c.loadReportTau = c.maxReportAge / 10
}

// WithPolicy sets the picking policy (default LeastLatency).
func WithPolicy(p Policy) Option { return func(c *config) { c.policy = p } }

// WithLatencyDecay sets the longest an eligible endpoint goes without a
// request measuring its latency (default DefaultDecay). least_latency
// sends an exploratory request to an endpoint whose estimate is older than
// 100 ms × (its expected latency / the best's)², capped by d.
func WithLatencyDecay(d time.Duration) Option { return func(c *config) { c.decay = d } }

// WithDefaultRTT sets the latency assumed for an endpoint nothing has
// measured yet (default DefaultRTT).
func WithDefaultRTT(d time.Duration) Option { return func(c *config) { c.defaultRTT = d } }

// WithFailurePenalty sets about how long one failure keeps an endpoint
// out of the running, and the latency an unmeasured endpoint counts as
// while its first request is out (default DefaultFailurePenalty).
func WithFailurePenalty(d time.Duration) Option { return func(c *config) { c.failurePenalty = d } }

// WithTieBand sets the share within which expected latencies count as
// equal for least_latency and p2c, which then prefer the candidate with
// fewer requests in flight (default DefaultTieBand; 0 compares latencies
// only).
func WithTieBand(share float64) Option { return func(c *config) { c.tieBand = share } }

// WithPanicThreshold sets the healthy share below which the client picks
// among all endpoints regardless of health (default DefaultPanicThreshold;
// 0 disables panic mode).
func WithPanicThreshold(share float64) Option { return func(c *config) { c.panicThreshold = share } }

// WithSlowStart gives a newly added endpoint, or one back from ejection or
// ill health, a share of traffic that grows linearly from
// DefaultSlowStartMinShare to all of it over window, as Envoy's slow start
// does. It acts on least_latency, p2c and least_request (through the cost)
// and weighted_round_robin (through the weight). Default 0: off.
func WithSlowStart(window time.Duration) Option { return func(c *config) { c.slowStart = window } }

// WithHashKey sets how consistent_hash takes its key from a request, e.g.
// HashByHeader("X-User") or HashByClientIP. A request whose key is empty is
// spread at random.
func WithHashKey(f func(*http.Request) string) Option { return func(c *config) { c.hashKey = f } }

// WithRingReplicas sets the consistent-hash ring points per endpoint
// (default DefaultRingReplicas).
func WithRingReplicas(n int) Option { return func(c *config) { c.ringReplicas = n } }

// WithOutlierDetection configures passive outlier detection; zero fields
// take their defaults.
func WithOutlierDetection(o OutlierDetection) Option {
	return func(c *config) { c.outlier = o.withDefaults() }
}

// WithZone turns on zone preference; zero fields take their defaults.
func WithZone(z Zone) Option { return func(c *config) { c.zone = z.withDefaults() } }

// WithLabelSelector sends requests only to endpoints whose labels hold every
// key=value of sel.
func WithLabelSelector(sel map[string]string) Option {
	return func(c *config) { c.selector = cloneLabels(sel) }
}

// WithCanary sets up a gray release: endpoints matching can.Labels form the
// canary subset and receive can.Share of requests, plus every marked
// request (WithCanaryRequest, or the can.Header header set to "true").
// When the canary subset has no eligible endpoint, its requests go to the
// stable subset, and the reverse.
func WithCanary(can Canary) Option {
	return func(c *config) {
		can.Labels = cloneLabels(can.Labels)
		c.canary = &can
	}
}

// WithLoadReportMaxAge sets how long a server's load report (requests in
// flight, capacity; package loadreport) counts in the cost (default
// DefaultLoadReportMaxAge): fully when fresh, half after d/10, not at all
// after d.
func WithLoadReportMaxAge(d time.Duration) Option { return func(c *config) { c.maxReportAge = d } }

// WithProbe sets the active health check run against every endpoint
// (default probe.TCP{} with the probe package's defaults).
func WithProbe(checker probe.Checker, opts ...probe.Option) Option {
	return func(c *config) {
		c.checker = checker
		c.probeOpts = opts
		c.noProbe = false
	}
}

// WithEmptySetGrace sets how long the client keeps routing on its last
// endpoints when the resolver delivers an empty set where it had
// endpoints (default DefaultEmptySetGrace; 0 applies empty sets at once).
// A whole service vanishing at once is more often etcd returning from an
// outage with the leases expired, moments before the instances register
// again, than a service really gone; stale beats empty, as Eureka's self
// preservation says. Endpoints held this way are still probed, so dead
// ones are still avoided.
func WithEmptySetGrace(d time.Duration) Option { return func(c *config) { c.emptyGrace = max(d, 0) } }

// WithMaxConnectionAge makes connections to an endpoint end once they are
// older than d (default 0: no limit): an endpoint's connections are
// replaced after d, each old one closing as soon as its request in flight
// is done. Long-lived connections thus re-handshake and pick up rotated
// certificates, and traffic spreads to endpoints added since. For gRPC,
// set the server's keepalive.ServerParameters.MaxConnectionAge instead.
func WithMaxConnectionAge(d time.Duration) Option {
	return func(c *config) { c.maxConnAge = max(d, 0) }
}

// WithoutProbe turns active health checks off: only passive figures and
// the resolver decide.
func WithoutProbe() Option { return func(c *config) { c.noProbe = true } }

// WithRetries configures retries; zero fields take their defaults.
func WithRetries(r RetryPolicy) Option { return func(c *config) { c.retry = r.withDefaults() } }

// WithHedging turns hedging on for idempotent requests; zero fields take
// their defaults.
func WithHedging(h Hedging) Option {
	return func(c *config) {
		h = h.withDefaults()
		c.hedging = &h
	}
}

// WithTransport sets the HTTP transport the client clones for every
// endpoint, keeping its timeouts, TLS configuration and connection limits
// (default: a clone of http.DefaultTransport). Its Proxy is ignored: the
// client dials endpoints directly. Its DialContext, if set, is used to
// reach the picked endpoint's address.
//
// HTTP/2 is attempted over TLS whatever t says: net/http turns it off for
// a transport with its own TLSClientConfig or dialers unless
// ForceAttemptHTTP2 is set, and an mTLS set-up
// (&http.Transport{TLSClientConfig: store.ClientConfig(...)}) would
// silently fall back to a pool of HTTP/1.1 connections. A transport whose
// Protocols or TLSNextProto the caller set is left as it is; WithoutHTTP2
// turns HTTP/2 off.
func WithTransport(t *http.Transport) Option { return func(c *config) { c.base = t } }

// WithoutHTTP2 keeps the client on HTTP/1.1, even with backends that offer
// HTTP/2 over TLS.
func WithoutHTTP2() Option { return func(c *config) { c.noHTTP2 = true } }

// WithEtcdClient sets the etcd client that New uses for etcd:/// targets.
func WithEtcdClient(cli *clientv3.Client) Option { return func(c *config) { c.etcd = cli } }

// WithResolverOptions passes options to the resolver New builds (prefix,
// DNS servers, refresh bounds).
func WithResolverOptions(opts ...resolver.Option) Option {
	return func(c *config) { c.resolverOpts = append(c.resolverOpts, opts...) }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRegisterer registers the client's metrics on r.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.registerer = r } }

// WithPerEndpointMetrics adds per-endpoint series (label "endpoint") to
// the request metrics. Off by default: the label's cardinality is the
// table's size.
func WithPerEndpointMetrics(on bool) Option { return func(c *config) { c.perEndpointMetrics = on } }

func cloneLabels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
