package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/smartroute/smartroute/overload"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// Errors callers branch on.
var (
	// ErrNoHealthyEndpoint is wrapped by the error of a request that no
	// endpoint can take: the set is empty, or every endpoint is draining
	// or filtered out by the label selector. (Unhealthy and ejected ones
	// are still tried in panic mode.)
	ErrNoHealthyEndpoint = errors.New("no healthy endpoint")
	// ErrClosed is returned for requests made after Close.
	ErrClosed = errors.New("client: closed")
)

// Client routes requests to the endpoints of one service. It is an
// http.RoundTripper: use it as the Transport of an http.Client whose
// request URLs name the service (https://api/users). It joins the
// resolver's endpoint set, the prober's health and RTT and the figures of
// real requests into one table, and picks an endpoint for every request
// with the configured policy.
//
// A Client is safe for concurrent use. Close it to stop its resolver
// watch, prober and background work.
type Client struct {
	cfg    *config
	name   string
	table  *table
	prober *probe.Prober
	base   *http.Transport
	budget *retryBudget
	lat    *latencyWindow
	m      *clientMetrics

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// drains are the goroutines that close the losing attempts of hedged
	// requests. Requests start them while Close may be waiting, so they
	// have their own WaitGroup, added to only before closing is set.
	drainMu   sync.Mutex
	closing   bool
	drains    sync.WaitGroup
	closed    chan struct{}
	closeOnce sync.Once
}

// New returns a Client for target, one of
//
//	etcd:///api                            (needs WithEtcdClient)
//	dns:///api.example.com:443
//	dns+srv:///_api._tcp.example.com
//	static:///10.0.0.1:443,10.0.0.2:443
//
// The service name used in errors, logs and metrics is the etcd service,
// the DNS name, or the static target's first address.
func New(target string, opts ...Option) (*Client, error) {
	t, err := resolver.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	ropts := append([]resolver.Option(nil), cfg.resolverOpts...)
	if cfg.etcd != nil {
		ropts = append(ropts, resolver.WithEtcdClient(cfg.etcd))
	}
	if cfg.logger != nil {
		ropts = append(ropts, resolver.WithLogger(cfg.logger))
	}
	if cfg.registerer != nil {
		ropts = append(ropts, resolver.WithRegisterer(cfg.registerer))
	}
	r, err := t.Build(ropts...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return NewFromResolver(serviceName(t), r, opts...)
}

// baseTransport returns the transport every endpoint's is cloned from:
// the caller's (or http.DefaultTransport), with HTTP/2 attempted over TLS
// unless the caller chose protocols itself or asked for HTTP/1.1 only.
func baseTransport(cfg *config) *http.Transport {
	var t *http.Transport
	if cfg.base != nil {
		t = cfg.base.Clone()
	} else {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	switch {
	case cfg.noHTTP2:
		t.ForceAttemptHTTP2 = false
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
	case t.Protocols == nil && t.TLSNextProto == nil:
		t.ForceAttemptHTTP2 = true
	}
	return t
}

// serviceName names the service a target resolves.
func serviceName(t resolver.Target) string {
	switch t.Scheme {
	case resolver.SchemeDNS:
		if host, _, err := net.SplitHostPort(t.Endpoint); err == nil {
			return host
		}
	case resolver.SchemeStatic:
		first, _, _ := strings.Cut(t.Endpoint, ",")
		return first
	}
	return t.Endpoint
}

// NewFromResolver returns a Client for service whose endpoints come from r.
// The service name is used in errors, logs and metrics.
func NewFromResolver(service string, r resolver.Resolver, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.derive()
	if cfg.policy == ConsistentHash && cfg.hashKey == nil {
		return nil, fmt.Errorf("client: policy %s needs WithHashKey", ConsistentHash)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	m, err := newClientMetrics(cfg.registerer, service, cfg.policy, cfg.perEndpointMetrics)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	base := baseTransport(&cfg)
	c := &Client{
		cfg:    &cfg,
		name:   service,
		base:   base,
		budget: newRetryBudget(cfg.retry.Budget),
		m:      m,
		closed: make(chan struct{}),
	}
	if cfg.hedging != nil {
		c.lat = newLatencyWindow(cfg.retry.Budget.TTL)
	}
	c.table = newTable(c.cfg, m)
	if err := c.table.setGuard(service); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if !cfg.noProbe {
		checker := cfg.checker
		if checker == nil {
			checker = probe.TCP{}
		}
		c.prober = probe.New(checker, append([]probe.Option{probe.WithLogger(cfg.logger)}, cfg.probeOpts...)...)
		c.prober.Subscribe(c.table.onProbe)
		c.table.onMembership = c.prober.SetAddrs
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		c.table.run(ctx)
	}()
	go func() {
		defer c.wg.Done()
		c.table.clock.run(ctx)
	}()
	go func() {
		defer c.wg.Done()
		c.watch(ctx, r)
	}()
	return c, nil
}

// watch feeds the resolver's states into the table until ctx ends.
func (c *Client) watch(ctx context.Context, r resolver.Resolver) {
	err := r.Watch(ctx, c.table.update)
	if ctx.Err() != nil {
		return
	}
	// The resolver stopped for good; keep routing on the last set.
	c.cfg.logger.Error("client: resolver stopped; keeping the last endpoint set", "service", c.name, "err", err)
	if err == nil {
		err = errors.New("resolver stopped")
	}
	c.table.update(resolver.State{Err: fmt.Errorf("client: resolver stopped: %w", err)})
}

// goDrain runs f, which must end by itself, on its own goroutine; Close
// waits for the ones started before it.
func (c *Client) goDrain(f func()) {
	c.drainMu.Lock()
	tracked := !c.closing
	if tracked {
		c.drains.Add(1)
	}
	c.drainMu.Unlock()
	go func() {
		if tracked {
			defer c.drains.Done()
		}
		f()
	}()
}

// Service returns the service name.
func (c *Client) Service() string { return c.name }

// Close stops the resolver watch, the prober and background work, and
// closes idle connections. Requests in flight finish; new ones fail with
// ErrClosed. Close waits for the goroutines it owns and is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.cancel()
		c.wg.Wait()
		c.drainMu.Lock()
		c.closing = true
		c.drainMu.Unlock()
		c.drains.Wait()
		if c.prober != nil {
			c.prober.Close()
		}
		for _, ep := range c.table.snapshot().all {
			if t := ep.transport.Load(); t != nil {
				t.CloseIdleConnections()
			}
		}
	})
	return nil
}

// WaitReady waits until the resolver delivered its first endpoint set (or
// error), or ctx ends. Requests wait for it on their own; WaitReady is for
// programs that want to fail fast at start.
func (c *Client) WaitReady(ctx context.Context) error {
	select {
	case <-c.table.ready:
		c.table.mu.Lock()
		defer c.table.mu.Unlock()
		if len(c.table.sorted) == 0 && c.table.lastErr != nil {
			return fmt.Errorf("client: service %q: %w", c.name, c.table.lastErr)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return ErrClosed
	}
}

// EndpointInfo describes one endpoint of the table, as Endpoints returns
// it.
type EndpointInfo struct {
	Addr     string
	Zone     string
	Weight   uint32
	Labels   map[string]string
	Draining bool
	// Health is what the prober says (Unknown until it decided, or when
	// probing is off).
	Health probe.Health
	// RTT is the latency estimate from real requests (seeded by the probe
	// RTT or the default RTT until a request measured it).
	RTT time.Duration
	// Measured reports whether a request measured RTT, and MeasuredAt
	// how long ago the latest did.
	Measured   bool
	MeasuredAt time.Duration
	// Expected is what least_latency expects a new request to take now:
	// RTT with the failure penalty, the queue a reported load implies,
	// and the age of the oldest unanswered request as a floor.
	Expected time.Duration
	// Penalty is the failure penalty now: the cost is multiplied by
	// 1 + Penalty. One failure adds 4; it fades within the failure
	// penalty time (WithFailurePenalty).
	Penalty float64
	// ReportedInFlight and ReportedCapacity are the server's latest load
	// report (package loadreport), ReportAge its age; all 0 without one.
	ReportedInFlight float64
	ReportedCapacity float64
	ReportAge        time.Duration
	// ProbeRTT is the prober's smoothed RTT.
	ProbeRTT time.Duration
	InFlight int64
	Requests uint64
	Failures uint64
	// Busy counts the answers that refused work to protect the server
	// (429, 503, gRPC ResourceExhausted): busy, not broken, they are not
	// Failures and never eject.
	Busy uint64
	// Ejected is set while outlier detection holds the endpoint out, until
	// EjectedUntil.
	Ejected      bool
	EjectedUntil time.Time
	// Breaker is the state of the endpoint's circuit breakers
	// (WithOverload with overload.WithEndpointBreakers), the worst of
	// Breakers: an open one holds the endpoint out, as an ejection does,
	// until its retry timeout. MaxRequests is the bound on its requests in
	// flight (overload.WithEndpointMaxRequests; 0: none). All zero without
	// WithOverload.
	Breaker     overload.State
	Breakers    []overload.BreakerStatus
	MaxRequests int
	// Eligible reports whether the endpoint may take new requests; Why
	// says why not, or notes panic mode.
	Eligible bool
	Why      string
	Origin   resolver.Origin
}

// Endpoints returns a snapshot of the table in address order.
func (c *Client) Endpoints() []EndpointInfo {
	s := c.table.snapshot()
	now := c.cfg.now()
	wall := time.Now()
	inPanic := s.stable.panic || s.canary.panic
	out := make([]EndpointInfo, 0, len(s.all))
	for _, ep := range s.all {
		a := ep.attrs.Load()
		info := EndpointInfo{
			Addr:     ep.addr,
			Zone:     a.Zone,
			Weight:   ep.weight(),
			Labels:   cloneLabels(a.Labels),
			Draining: a.Draining,
			Health:   probe.Health(ep.health.Load()),
			RTT:      time.Duration(loadFloat(&ep.hot.est)),
			Measured: ep.hot.measured(),
			Penalty:  ep.hot.penaltyNow(now, c.cfg.penaltyTau),
			ProbeRTT: time.Duration(ep.probeRTT.Load()),
			InFlight: ep.hot.load(),
			Requests: ep.requests.Load(),
			Failures: ep.failures.Load(),
			Busy:     ep.busy.Load(),
			Origin:   a.Origin,
		}
		if info.Measured {
			info.MeasuredAt = time.Duration(now - ep.hot.estAt.Load())
		}
		if at := ep.hot.rifAt.Load(); at != 0 {
			info.ReportedInFlight = loadFloat(&ep.hot.rif)
			_, info.ReportedCapacity = ep.hot.loadStats()
			info.ReportAge = time.Duration(now - at)
		}
		info.Expected = time.Duration(expectedOf(c.cfg, ep, now))
		if ep.ejected(now) {
			info.Ejected = true
			info.EjectedUntil = wall.Add(time.Duration(ep.ejectedUntil.Load() - now))
		}
		switch classify(c.cfg, ep, now) {
		case eligible:
			info.Eligible = true
		case excludedDraining:
			info.Why = "draining"
		case excludedNotConnected:
			info.Why = "not connected"
		case excludedSelector:
			info.Why = "labels do not match the selector"
		case excludedUnhealthy:
			info.Why = "unhealthy"
			if msg := ep.probeErr.Load(); msg != nil {
				info.Why += ": " + *msg
			}
		case excludedEjected:
			info.Why = "ejected"
			if r := ep.ejectReason.Load(); r != nil {
				info.Why += ": " + *r
			}
		case excludedBreakerOpen:
			info.Why = ep.breakerWhy(now)
		}
		ep.breakerInfo(&info)
		if inPanic && !info.Eligible && !info.Draining && info.Why != "" {
			info.Why += " (panic mode: still picked)"
		}
		out = append(out, info)
	}
	return out
}
