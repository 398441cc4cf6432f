package client

import (
	"math/rand/v2"
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
	// stable and canary are the two subsets of a gray release; without
	// WithCanary every endpoint is stable and canary is empty.
	stable, canary *pool
	// all is every endpoint of the table, eligible or not, in address
	// order.
	all []*endpoint
}

// pool is the endpoints one pick chooses among, with what the policy
// precomputed over them.
type pool struct {
	eps []*endpoint
	// spill holds the eligible endpoints of other zones while eps is
	// narrowed to the healthy local zone: where a retry goes once every
	// local endpoint was tried.
	spill []*endpoint
	// panic is set when too few endpoints were healthy and eps holds all
	// of them regardless of health.
	panic bool

	next atomic.Uint64 // round-robin position
	wrr  []int32       // smooth weighted round-robin schedule of indexes into eps
	ring []ringEntry   // consistent-hash ring
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
)

// buildSnapshot arranges eps (in address order) for the configured policy
// at now.
func buildSnapshot(cfg *config, eps []*endpoint, now int64) *snapshot {
	s := &snapshot{cfg: cfg, all: eps}
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
	return s
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
	}
	return eligible
}

func buildPool(cfg *config, members []*endpoint, now int64) *pool {
	p := &pool{}
	var candidates, healthy []*endpoint
	for _, ep := range members {
		switch classify(cfg, ep, now) {
		case eligible:
			healthy = append(healthy, ep)
			candidates = append(candidates, ep)
		case excludedUnhealthy, excludedEjected:
			candidates = append(candidates, ep)
		}
	}
	// Panic threshold, as Envoy: when too few endpoints are healthy, the
	// health signal is more likely wrong than the endpoints, and failing
	// every request is worse than trying them all.
	eps := healthy
	if len(candidates) > 0 && float64(len(healthy)) < cfg.panicThreshold*float64(len(candidates)) {
		eps = candidates
		p.panic = true
	}
	eps, p.spill = zoneView(cfg, eps, candidates, healthy)
	p.eps = eps
	// Start each new pool at a random place, so that frequent rebuilds do
	// not favour the first endpoints.
	p.next.Store(rand.Uint64())
	switch cfg.policy {
	case WeightedRoundRobin:
		p.wrr = smoothWRRSchedule(eps, cfg, now)
	case ConsistentHash:
		p.ring = buildRing(eps, cfg.ringReplicas)
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
