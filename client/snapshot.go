package client

import (
	"sync/atomic"

	"google.golang.org/grpc/connectivity"

	"github.com/smartroute/smartroute/probe"
)

// snapshot is the immutable view the pick path reads: the eligible
// endpoints arranged for the policy. The table builds a new one whenever
// membership, health, ejection or attributes change, and publishes it with
// an atomic pointer; a pick never takes a lock.
type snapshot struct {
	cfg *config
	// policy is cfg.policy, and gray whether cfg has a canary: read by
	// every pick, copied here so that a pick reads them with the pools.
	policy policyKind
	gray   bool
	// stable and canary are the two subsets of a gray release; without
	// WithCanary every endpoint is stable and canary is empty.
	stable, canary *pool
	// all is every endpoint of the table, eligible or not, in address
	// order.
	all []*endpoint
	// ring is the consistent-hash ring over all (consistent_hash only). It
	// changes with membership and weights alone: health and ejection
	// changes only change the pools' members, so they cost no ring
	// rebuild.
	ring []ringEntry
}

// pool is the endpoints one pick chooses among, with what the policy
// precomputed over them.
type pool struct {
	eps []*endpoint
	// hot holds eps[i].hot at i: the pick path reads these blocks without
	// going through the endpoints.
	hot []*hotState
	// spill is the eligible endpoints of other zones while eps is narrowed
	// to the healthy local zone: where a retry goes once every local
	// endpoint was tried, picked by the same policy.
	spill *pool
	// panic is set when too few endpoints were healthy and eps holds all
	// of them regardless of health.
	panic bool
	// healthy is, in panic mode, the endpoints that are healthy after all:
	// where a retry goes first. A failed attempt is fresh evidence that
	// the health signal was right, so the retry does not bet on another
	// endpoint the signal condemns while one it trusts is untried.
	healthy *pool

	next atomic.Uint64 // round-robin position
	wrr  []int32       // smooth weighted round-robin schedule of indexes into eps
	// member marks, by index into snapshot.all, the endpoints of this pool
	// on the snapshot's ring; a pool much smaller than the table has a ring
	// of its own instead, over eps (consistent_hash only).
	member []bool
	ring   []ringEntry

	// sampler draws least_latency's leaders and challengers; explore holds
	// the endpoints due for an exploratory request. Both are refreshed off
	// the request path (table.refresh).
	sampler atomic.Pointer[sampler]
	explore atomic.Pointer[exploreBatch]
	// vacancy is the latest answer whose server reported room for more
	// (requests in flight below its capacity): the endpoint and when,
	// packed by packVacancy; 0 when none, or once a pick took it. The
	// freshest load a client knows is the one its last answer carried, so
	// least_latency's next pick weighs that endpoint as a third candidate
	// (Prequal reuses its probes' answers the same way): a client that
	// found room keeps it, rather than trading it for an endpoint whose
	// load it knows only from older reports, which is how independent
	// clients herd.
	vacancy atomic.Uint64
}

// eligibility of one endpoint for a pool.
type eligibility int

const (
	eligible eligibility = iota
	excludedDraining
	excludedNotConnected
	excludedSelector
	excludedUnhealthy
	excludedEjected
	excludedBreakerOpen // an endpoint circuit breaker is open (overload.go)
)

// buildSnapshot arranges eps (in address order) for the configured policy
// at now. ring is the consistent-hash ring over eps, when the policy uses
// one.
func buildSnapshot(cfg *config, eps []*endpoint, ring []ringEntry, now int64) *snapshot {
	s := &snapshot{cfg: cfg, policy: kindOf(cfg.policy), gray: cfg.canary != nil, all: eps, ring: ring}
	var stable, canary []*endpoint
	for _, ep := range eps {
		if cfg.canary != nil && matches(ep.attrs.Load().Labels, cfg.canary.Labels) {
			canary = append(canary, ep)
		} else {
			stable = append(stable, ep)
		}
	}
	s.stable = buildPool(cfg, stable, now)
	if cfg.canary != nil {
		s.canary = buildPool(cfg, canary, now)
	} else {
		s.canary = &pool{}
	}
	if cfg.policy == ConsistentHash {
		for _, p := range s.pools() {
			if len(p.eps)*ownRingFactor < len(eps) {
				p.ring = buildRing(p.eps, cfg.ringReplicas)
				continue
			}
			p.member = make([]bool, len(eps))
			for _, ep := range p.eps {
				p.member[ep.pos] = true
			}
		}
	}
	return s
}

// empty reports whether no endpoint is eligible.
func (s *snapshot) empty() bool {
	return len(s.stable.eps) == 0 && len(s.canary.eps) == 0
}

// pools returns every pool of the snapshot: the subsets, their spill-over
// pools and, in panic mode, their healthy pools.
func (s *snapshot) pools() []*pool {
	out := make([]*pool, 0, 6)
	for _, p := range []*pool{s.stable, s.canary} {
		out = append(out, p)
		if p.spill != nil {
			out = append(out, p.spill)
		}
		if p.healthy != nil {
			out = append(out, p.healthy)
		}
	}
	return out
}

// classify says whether ep may take new requests at now, and if not why.
func classify(cfg *config, ep *endpoint, now int64) eligibility {
	a := ep.attrs.Load()
	switch {
	case a.Draining:
		return excludedDraining
	case cfg.requireConnected && !connected(ep):
		return excludedNotConnected
	case !matches(a.Labels, cfg.selector):
		return excludedSelector
	case probe.Health(ep.health.Load()) == probe.Unhealthy:
		return excludedUnhealthy
	case ep.ejected(now):
		return excludedEjected
	case ep.breakerOpen(now):
		return excludedBreakerOpen
	}
	return eligible
}

func buildPool(cfg *config, members []*endpoint, now int64) *pool {
	var candidates, healthy []*endpoint
	for _, ep := range members {
		switch classify(cfg, ep, now) {
		case eligible:
			healthy = append(healthy, ep)
			candidates = append(candidates, ep)
		case excludedUnhealthy, excludedEjected, excludedBreakerOpen:
			candidates = append(candidates, ep)
		}
	}
	// Panic threshold, as Envoy: when too few endpoints are healthy, the
	// health signal is more likely wrong than the endpoints, and failing
	// every request is worse than trying them all.
	eps, panicking := healthy, false
	if len(candidates) > 0 && float64(len(healthy)) < cfg.panicThreshold*float64(len(candidates)) {
		eps, panicking = candidates, true
	}
	local, spill := zoneView(cfg, eps, candidates, healthy)
	p := newPool(cfg, local, now)
	for i, ep := range p.eps {
		ep.poolIdx.Store(int32(i))
	}
	p.panic = panicking
	if len(spill) > 0 {
		p.spill = newPool(cfg, spill, now)
	}
	if panicking && len(healthy) > 0 {
		p.healthy = newPool(cfg, healthy, now)
	}
	return p
}

// newPool arranges eps for the policy.
func newPool(cfg *config, eps []*endpoint, now int64) *pool {
	p := &pool{eps: eps, hot: make([]*hotState, len(eps))}
	for i, ep := range eps {
		p.hot[i] = ep.hot
	}
	// Start each new pool at a random place, so that frequent rebuilds do
	// not favour the first endpoints.
	p.next.Store(cfg.rand.uint64())
	switch cfg.policy {
	case WeightedRoundRobin:
		p.wrr = smoothWRRSchedule(eps, cfg, now)
	case LeastLatency:
		var none float64
		p.refresh(cfg, now, &none)
	}
	return p
}

// zoneView applies zone preference. While the local zone is healthy (at
// least MinHealthy of its endpoints eligible, and at least one), picks use
// its eligible endpoints only and the other zones' eligible endpoints are
// kept aside for retries; otherwise every zone is used alike.
func zoneView(cfg *config, eps, candidates, healthy []*endpoint) (out, spill []*endpoint) {
	if cfg.zone.Local == "" {
		return eps, nil
	}
	var localAll, localHealthy int
	for _, ep := range candidates {
		if ep.attrs.Load().Zone == cfg.zone.Local {
			localAll++
		}
	}
	for _, ep := range healthy {
		if ep.attrs.Load().Zone == cfg.zone.Local {
			localHealthy++
		}
	}
	if localHealthy == 0 || float64(localHealthy) < cfg.zone.MinHealthy*float64(localAll) {
		return eps, nil
	}
	out = make([]*endpoint, 0, localHealthy)
	for _, ep := range healthy {
		if ep.attrs.Load().Zone == cfg.zone.Local {
			out = append(out, ep)
		} else {
			spill = append(spill, ep)
		}
	}
	return out, spill
}

// connected reports whether the endpoint's gRPC child is READY.
func connected(ep *endpoint) bool {
	ch := ep.child.Load()
	return ch != nil && ch.state == connectivity.Ready
}

// matches reports whether labels hold every key=value of sel.
func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
