package overload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Guard protects one service from overload, and its callers from a
// broken service: adaptive throttling, circuit breakers and concurrency
// limits for the service as a whole, and breakers and limits per endpoint
// for a balancer to consult. Every request asks the guard first and tells
// it how it ended:
//
//	t, err := g.Acquire(ctx)
//	if err != nil {
//		return err // a *RejectedError: fail fast, or fall back
//	}
//	err = call(ctx) // e.g. a gRPC call; for HTTP, pass the Status too
//	t.Done(overload.Outcome{Err: err})
//
// Acquire and Done take no lock (unless a request waits for a slot) and
// allocate nothing per request while every breaker is closed. A Guard is
// safe for concurrent use; a nil *Guard admits everything. It owns no
// goroutine and needs no Close.
type Guard struct {
	service  string
	cfg      config
	tb       timebase
	log      *slog.Logger
	m        *guardMetrics
	svc      *scope
	throttle *throttle // nil: throttling off
	retries  *limiter

	throttling atomic.Bool   // whether the last published probability was above 0
	lastP      atomic.Uint64 // float64 bits of the last published probability

	mu        sync.Mutex // writers of endpoints
	endpoints atomic.Pointer[map[string]*Endpoint]
}

// New returns a Guard for service (its name labels metrics, logs and
// errors). Without options it throttles adaptively with the SRE book's
// defaults and bounds the requests in flight at Envoy's defaults; it has
// no breakers until WithBreakers or WithEndpointBreakers give it some.
func New(service string, opts ...Option) (*Guard, error) {
	if service == "" {
		return nil, errors.New("overload: service name is empty")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for i := range cfg.breakers {
		cfg.breakers[i] = cfg.breakers[i].withDefaults()
	}
	for i := range cfg.endpointBreakers {
		cfg.endpointBreakers[i] = cfg.endpointBreakers[i].withDefaults()
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	g := &Guard{
		service: service,
		cfg:     cfg,
		tb:      newTimebase(cfg.clock),
		log:     cfg.logger.With("service", service),
		retries: newLimiter(cfg.limits.MaxRetries, 0),
	}
	m, err := newGuardMetrics(cfg.registerer, service, cfg.breakers, cfg.endpointBreakers, cfg.perEndpointMetrics)
	if err != nil {
		return nil, fmt.Errorf("overload: %w", err)
	}
	g.m = m
	if !cfg.throttling.Disabled {
		g.throttle = newThrottle(cfg.throttling)
	}
	g.svc = g.newScope("", cfg.breakers, newLimiter(cfg.limits.MaxRequests, cfg.limits.MaxPending))
	empty := map[string]*Endpoint{}
	g.endpoints.Store(&empty)
	return g, nil
}

// Service returns the name of the guarded service ("" for a nil Guard).
func (g *Guard) Service() string {
	if g == nil {
		return ""
	}
	return g.service
}

// Acquire asks whether a request to the service may go out now. It fails
// fast with a *RejectedError when a service breaker is open, when
// throttling rejects the request, or when the requests in flight are at
// their limit (with WithLimits' MaxPending, it first waits for a slot
// while ctx lasts, and then returns ctx's error; a ctx that has already
// ended never waits, so a caller that must not block, such as a gRPC
// picker, passes one). Otherwise the caller must call the Ticket's Done
// exactly once when the request has ended (or Release, if it was never
// sent).
func (g *Guard) Acquire(ctx context.Context) (Ticket, error) { return g.acquire(ctx, false) }

// AcquireRetry is Acquire for a retry (or a hedge) of a request already
// sent: it also counts against the retries in flight (WithLimits'
// MaxRetries), and throttling neither rejects nor counts it. Throttling
// weighs the requests of the application, as the SRE book's does (and
// Envoy's admission control, which sees each request once, before its
// retries): counted per attempt, a service refusing with 503 under
// retrying clients would look refused several times per request, and its
// clients would throttle harder and remember the overload longer. The
// request's first attempt has been throttled already; its retries are
// bounded by MaxRetries and the caller's retry budget.
func (g *Guard) AcquireRetry(ctx context.Context) (Ticket, error) { return g.acquire(ctx, true) }

func (g *Guard) acquire(ctx context.Context, retry bool) (Ticket, error) {
	if g == nil {
		return Ticket{}, nil
	}
	s := g.svc
	now := g.tb.now()
	probes, err := s.allowBreakers(now)
	if err != nil {
		return Ticket{}, err
	}
	if g.throttle != nil && !retry {
		ok, p, requests, accepts := g.throttle.admit(now)
		g.publish(p, requests, accepts)
		if !ok {
			s.releaseProbes(now, probes)
			return Ticket{}, s.reject(ReasonThrottled, g.throttle.detail(p, requests, accepts), 0)
		}
	}
	if retry && !g.retries.tryAcquire() {
		s.releaseProbes(now, probes)
		return Ticket{}, s.reject(ReasonRetryLimit, fmt.Sprintf("%d retries in flight", g.retries.max), 0)
	}
	if err := s.limit.acquire(ctx); err != nil {
		if retry {
			g.retries.release()
		}
		s.releaseProbes(now, probes)
		if errors.Is(err, errLimit) || errors.Is(err, errPending) {
			return Ticket{}, s.reject(ReasonConcurrencyLimit, s.limitDetail(err), 0)
		}
		return Ticket{}, fmt.Errorf("overload: service %q: waiting for a request slot: %w", g.service, err)
	}
	if s.limit.maxPending > 0 {
		now = g.tb.now() // the wait is not part of the request's latency
	}
	return Ticket{s: s, start: now, probes: probes, retry: retry}, nil
}

// publish updates the throttle gauge and logs when throttling starts or
// stops. The gauge moves in steps of at least 0.01 so that requests on
// every core do not all write it.
func (g *Guard) publish(p float64, requests, accepts int64) {
	last := math.Float64frombits(g.lastP.Load())
	if math.Abs(p-last) < 0.01 && (p == 0) == (last == 0) {
		return
	}
	g.lastP.Store(math.Float64bits(p))
	g.m.rejectProbability.Set(p)
	on := p > 0
	if g.throttling.Swap(on) != on {
		if on {
			g.log.Warn("overload: throttling requests locally", "reject_probability", p, "requests", requests, "accepts", accepts, "window", g.cfg.throttling.Window)
		} else {
			g.log.Info("overload: throttling stopped", "requests", requests, "accepts", accepts)
		}
	}
}

// RejectProbability returns the probability that throttling rejects a
// request now (0 with throttling off).
func (g *Guard) RejectProbability() float64 {
	if g == nil || g.throttle == nil {
		return 0
	}
	p, _, _ := g.throttle.probability(g.tb.now())
	return p
}

// Ticket is an admitted request. Its Done must be called exactly once,
// when the request has ended (for a streamed HTTP body: when the body is
// closed). The zero Ticket's Done does nothing. A Ticket is a small
// value: pass it by value.
type Ticket struct {
	s      *scope
	start  int64
	probes *probeSet // nil unless the request is a half-open probe
	retry  bool
}

// Done reports how the request ended. It releases the request's slot and
// feeds throttling and the breakers.
func (t Ticket) Done(o Outcome) {
	if t.s == nil {
		return
	}
	t.done(o, t.s.g.cfg.classify(o))
}

// Release gives back the ticket of a request that was never sent (a
// balancer found no endpoint for it, or an endpoint's own limit refused
// it): Done with the Ignored verdict, whatever the Classifier says. It
// frees the slot and a half-open probe, and counts nothing.
func (t Ticket) Release() {
	if t.s == nil {
		return
	}
	t.done(Outcome{}, Ignored)
}

func (t Ticket) done(o Outcome, v Verdict) {
	s := t.s
	g := s.g
	now := g.tb.now()
	latency := o.Latency
	if latency == 0 {
		latency = time.Duration(now - t.start)
	}
	s.limit.release()
	if s.endpoint == "" {
		if t.retry {
			g.retries.release()
		} else if g.throttle != nil {
			g.throttle.record(now, v)
		}
	}
	for i, b := range s.breakers {
		probe, period := t.probes.get(i)
		b.done(now, v, latency, probe, period)
	}
}

// probeSet lists the breakers a request probes, by index in its scope.
// It is allocated only for probes, a few per retry timeout.
type probeSet struct {
	refs []probeRef
}

type probeRef struct {
	i      int
	period uint32
}

func (p *probeSet) get(i int) (bool, uint32) {
	if p == nil {
		return false, 0
	}
	for _, r := range p.refs {
		if r.i == i {
			return true, r.period
		}
	}
	return false, 0
}

// scope is the breakers and the limit of the service, or of one endpoint.
type scope struct {
	g        *Guard
	endpoint string // "" for the service
	breakers []*breaker
	limit    *limiter
	removed  atomic.Bool // an endpoint forgotten by Retain or Forget
}

func (g *Guard) newScope(endpoint string, rules []BreakerRule, l *limiter) *scope {
	s := &scope{g: g, endpoint: endpoint, limit: l}
	for _, r := range rules {
		s.breakers = append(s.breakers, newBreaker(r, s))
	}
	return s
}

// allowBreakers asks every breaker of s; on refusal it gives back the
// probes it took.
func (s *scope) allowBreakers(now int64) (*probeSet, error) {
	var probes *probeSet
	for i, b := range s.breakers {
		ok, probe, period, retryAfter := b.allow(now)
		if !ok {
			s.releaseProbes(now, probes)
			return nil, s.reject(ReasonBreakerOpen, b.detail(retryAfter), retryAfter)
		}
		if probe {
			if probes == nil {
				probes = &probeSet{}
			}
			probes.refs = append(probes.refs, probeRef{i: i, period: period})
		}
	}
	return probes, nil
}

// releaseProbes gives back probes of a request that will not go out.
func (s *scope) releaseProbes(now int64, probes *probeSet) {
	if probes == nil {
		return
	}
	for _, r := range probes.refs {
		s.breakers[r.i].probeDone(now, Ignored, 0, r.period)
	}
}

// wouldAllow reports whether acquire would admit a request now, taking
// nothing.
func (s *scope) wouldAllow(now int64) bool {
	for _, b := range s.breakers {
		if !b.wouldAllow(now) {
			return false
		}
	}
	return s.limit.max == 0 || s.limit.inFlight() < s.limit.max
}

// reject counts a rejection and returns its error.
func (s *scope) reject(r Reason, detail string, retryAfter time.Duration) error {
	s.g.m.rejected(s.endpoint != "", r)
	return &RejectedError{Service: s.g.service, Endpoint: s.endpoint, Reason: r, Detail: detail, RetryAfter: retryAfter}
}

func (s *scope) limitDetail(err error) string {
	if errors.Is(err, errPending) {
		if s.limit.maxPending == math.MaxInt64 {
			return fmt.Sprintf("%d requests in flight", s.limit.max)
		}
		return fmt.Sprintf("%d requests in flight and %d waiting", s.limit.max, s.limit.maxPending)
	}
	return fmt.Sprintf("%d requests in flight", s.limit.max)
}

// changed reports a breaker's state change: metrics, log, listener. The
// breaker's lock is held.
func (s *scope) changed(b *breaker, from, to State, value float64, now int64) {
	g := s.g
	removed := s.removed.Load()
	if !removed {
		g.m.transition(s.endpoint, b.rule.Name, from, to)
	}
	log := g.log.With("breaker", b.rule.Name, "from", from.String(), "to", to.String())
	if s.endpoint != "" {
		log = log.With("endpoint", s.endpoint)
	}
	switch {
	case to == Open && from == Closed:
		log.Warn("overload: circuit breaker opened", "value", value, "threshold", b.rule.Threshold, "retry_timeout", b.rule.RetryTimeout)
	case to == Open:
		log.Warn("overload: circuit breaker probe failed, open again", "value", value, "retry_timeout", b.rule.RetryTimeout)
	case to == HalfOpen:
		log.Info("overload: circuit breaker half-open, probing", "probes", b.rule.Probes)
	default:
		log.Info("overload: circuit breaker closed")
	}
	if len(g.cfg.listeners) > 0 {
		ev := StateChange{
			Service: g.service, Endpoint: s.endpoint, Breaker: b.rule.Name,
			From: from, To: to, Value: value, At: g.tb.at(now),
		}
		for _, f := range g.cfg.listeners {
			f(ev)
		}
	}
}

// BreakerStatus is one breaker's state, for diagnosis.
type BreakerStatus struct {
	Name     string
	Strategy Strategy
	State    State
	// OpenUntil is when an open breaker lets probes through (zero unless
	// Open).
	OpenUntil time.Time
}

func (s *scope) breakerStatus() []BreakerStatus {
	out := make([]BreakerStatus, len(s.breakers))
	for i, b := range s.breakers {
		out[i] = BreakerStatus{Name: b.rule.Name, Strategy: b.rule.Strategy, State: b.current()}
		if out[i].State == Open {
			out[i].OpenUntil = s.g.tb.at(b.openUntil.Load())
		}
	}
	return out
}

// Status is a guard's state, for diagnosis (lbprobe, dashboards, tests).
type Status struct {
	Service string
	// RejectProbability is the current throttling probability; Requests
	// and Accepts are the counts over the throttling window it comes
	// from.
	RejectProbability float64
	Requests, Accepts int64
	InFlight          int64 // requests holding a slot of the service's limit
	Pending           int64 // requests waiting for a slot (Limits.MaxPending)
	RetriesInFlight   int64
	Breakers          []BreakerStatus // the service's breakers
}

// Status returns the guard's current state (the zero Status for a nil
// Guard).
func (g *Guard) Status() Status {
	if g == nil {
		return Status{}
	}
	st := Status{Service: g.service, InFlight: g.svc.limit.inFlight(), Pending: g.svc.limit.pending.Load(), RetriesInFlight: g.retries.inFlight(), Breakers: g.svc.breakerStatus()}
	if g.throttle != nil {
		st.RejectProbability, st.Requests, st.Accepts = g.throttle.probability(g.tb.now())
	}
	return st
}
