package overload

import (
	"context"
	"maps"
	"slices"
)

// Endpoint is the per-endpoint state a guard keeps for a balancer: the
// endpoint breakers (WithEndpointBreakers) and the bound on its requests
// in flight (WithEndpointMaxRequests). Get it with Guard.Endpoint and keep
// it with the balancer's own record of the endpoint: its methods do no map
// lookup.
type Endpoint struct {
	s *scope
}

// Endpoint returns the state kept for addr, creating it on first use.
// Creating copies the guard's endpoint map; looking up does not lock. A
// nil Guard returns nil, whose methods admit everything.
func (g *Guard) Endpoint(addr string) *Endpoint {
	if g == nil {
		return nil
	}
	if e := (*g.endpoints.Load())[addr]; e != nil {
		return e
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.endpoints.Load()
	if e := old[addr]; e != nil {
		return e
	}
	e := &Endpoint{s: g.newScope(addr, g.cfg.endpointBreakers, newLimiter(g.cfg.endpointMaxRequests, 0))}
	next := make(map[string]*Endpoint, len(old)+1)
	maps.Copy(next, old)
	next[addr] = e
	g.endpoints.Store(&next)
	g.m.endpointAdded(addr, g.cfg.endpointBreakers)
	return e
}

// Allow reports whether a request to addr would be admitted now: no open
// endpoint breaker (one whose retry timeout has passed counts as
// admitting, for its probes), and a free slot under the endpoint's limit.
// It takes nothing and creates nothing: an endpoint the guard has not
// seen is allowed. A balancer calls it while picking, then Acquire on the
// endpoint it picked.
func (g *Guard) Allow(addr string) bool {
	if g == nil {
		return true
	}
	e := (*g.endpoints.Load())[addr]
	if e == nil {
		return true
	}
	return e.Allow()
}

// Retain forgets the endpoints not in addrs (call it with the balancer's
// endpoint set when it changes), so that the guard's memory follows the
// set. Requests in flight to a forgotten endpoint end normally.
func (g *Guard) Retain(addrs []string) {
	if g == nil {
		return
	}
	keep := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.endpoints.Load()
	next := make(map[string]*Endpoint, len(addrs))
	for addr, e := range old {
		if keep[addr] {
			next[addr] = e
			continue
		}
		g.forgetLocked(e)
	}
	g.endpoints.Store(&next)
}

// Forget forgets one endpoint.
func (g *Guard) Forget(addr string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.endpoints.Load()
	e := old[addr]
	if e == nil {
		return
	}
	next := maps.Clone(old)
	delete(next, addr)
	g.forgetLocked(e)
	g.endpoints.Store(&next)
}

func (g *Guard) forgetLocked(e *Endpoint) {
	e.s.removed.Store(true)
	states := make([]State, len(e.s.breakers))
	for i, b := range e.s.breakers {
		// Under the breaker's lock, so that no transition is counted
		// after the endpoint's series are gone.
		b.mu.Lock()
		states[i] = b.current()
		b.mu.Unlock()
	}
	g.m.endpointRemoved(e.s.endpoint, g.cfg.endpointBreakers, states)
}

// Addr returns the endpoint's address.
func (e *Endpoint) Addr() string {
	if e == nil {
		return ""
	}
	return e.s.endpoint
}

// Acquire admits a request to the endpoint, or fails fast with a
// *RejectedError (ErrBreakerOpen, ErrConcurrencyLimit) naming it. It
// never waits. Acquire on the endpoint comes in addition to the guard's
// own Acquire for the service; each Ticket gets its own Done.
func (e *Endpoint) Acquire(context.Context) (Ticket, error) {
	if e == nil {
		return Ticket{}, nil
	}
	s := e.s
	now := s.g.tb.now()
	probes, err := s.allowBreakers(now)
	if err != nil {
		return Ticket{}, err
	}
	if !s.limit.tryAcquire() {
		s.releaseProbes(now, probes)
		return Ticket{}, s.reject(ReasonConcurrencyLimit, s.limitDetail(errLimit), 0)
	}
	return Ticket{s: s, start: now, probes: probes}, nil
}

// AcquireLimit admits a request under the endpoint's concurrency limit
// alone, whatever its breakers say, or fails fast with a *RejectedError
// (ErrConcurrencyLimit). It is for a balancer that sends to an endpoint
// whose breaker is open on purpose, as Envoy's panic mode sends to every
// endpoint when too few are healthy. Breakers that are not closed ignore
// the request's outcome (it is no probe); closed ones count it as any.
func (e *Endpoint) AcquireLimit(context.Context) (Ticket, error) {
	if e == nil {
		return Ticket{}, nil
	}
	s := e.s
	if !s.limit.tryAcquire() {
		return Ticket{}, s.reject(ReasonConcurrencyLimit, s.limitDetail(errLimit), 0)
	}
	return Ticket{s: s, start: s.g.tb.now()}, nil
}

// Allow reports whether Acquire would admit a request now, taking nothing.
func (e *Endpoint) Allow() bool { return e == nil || e.s.wouldAllow(e.s.g.tb.now()) }

// MaxRequests returns the bound on the endpoint's requests in flight (0:
// none; WithEndpointMaxRequests).
func (e *Endpoint) MaxRequests() int {
	if e == nil {
		return 0
	}
	return int(e.s.limit.max)
}

// EndpointStatus is an endpoint's state, for diagnosis.
type EndpointStatus struct {
	Addr     string
	InFlight int64
	// MaxRequests is the bound on InFlight (0: none).
	MaxRequests int
	Breakers    []BreakerStatus
}

// Status returns the endpoint's current state.
func (e *Endpoint) Status() EndpointStatus {
	if e == nil {
		return EndpointStatus{}
	}
	return EndpointStatus{Addr: e.s.endpoint, InFlight: e.s.limit.inFlight(), MaxRequests: int(e.s.limit.max), Breakers: e.s.breakerStatus()}
}

// Endpoints returns the state of every endpoint the guard keeps, by
// address.
func (g *Guard) Endpoints() []EndpointStatus {
	if g == nil {
		return nil
	}
	m := *g.endpoints.Load()
	out := make([]EndpointStatus, 0, len(m))
	for _, addr := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[addr].Status())
	}
	return out
}
