package client

import (
	"math"
	"math/rand/v2"
)

// maxAttempts bounds the attempts of one request (first try, retries and
// hedges) that a pick must avoid repeating.
const maxAttempts = 8

// pickRequest is what one pick needs to know. It lives on the caller's
// stack: picking allocates nothing.
type pickRequest struct {
	now     int64
	hash    uint64
	hasHash bool
	canary  bool
	// tried are endpoints this request already used; picks avoid them
	// while another endpoint is eligible.
	tried  [maxAttempts]*endpoint
	ntried int
}

func (r *pickRequest) excluded(ep *endpoint) bool {
	for i := 0; i < r.ntried; i++ {
		if r.tried[i] == ep {
			return true
		}
	}
	return false
}

func (r *pickRequest) addTried(ep *endpoint) {
	if r.ntried < maxAttempts {
		r.tried[r.ntried] = ep
		r.ntried++
	}
}

// pick chooses an endpoint for r, or returns nil when none is eligible.
// It takes no lock and allocates nothing.
func (s *snapshot) pick(r *pickRequest) *endpoint {
	first, second := s.stable, s.canary
	if c := s.cfg.canary; c != nil && (r.canary || (c.Share > 0 && rand.Float64() < c.Share)) {
		first, second = second, first
	}
	if ep := s.pickFrom(first, r); ep != nil {
		return ep
	}
	return s.pickFrom(second, r)
}

func (s *snapshot) pickFrom(p *pool, r *pickRequest) *endpoint {
	if len(p.eps) == 0 {
		return nil
	}
	var ep *endpoint
	switch s.cfg.policy {
	case LeastLatency:
		ep = pickLeastCost(p, s.cfg, r, true)
	case P2C:
		ep = pickTwoChoices(p, s.cfg, r, true)
	case LeastRequest:
		ep = pickTwoChoices(p, s.cfg, r, false)
	case RoundRobin:
		ep = pickRoundRobin(p, r)
	case WeightedRoundRobin:
		ep = pickWeightedRoundRobin(p, r)
	case ConsistentHash:
		ep = pickConsistentHash(p, r)
	}
	if ep == nil && r.ntried > 0 {
		// Every local endpoint was tried: another zone's before a repeat.
		for _, sp := range p.spill {
			if !r.excluded(sp) {
				ep = sp
				break
			}
		}
	}
	if ep == nil && r.ntried > 0 {
		// Every eligible endpoint was tried already: a repeat beats no
		// answer.
		saved := r.ntried
		r.ntried = 0
		ep = s.pickFrom(p, r)
		r.ntried = saved
	}
	return ep
}

// cost ranks endpoint i of a pool; lower is better. byLatency selects the
// latency cost (peak-EWMA latency × (in-flight + 1), least_latency and
// p2c) over the request cost (in-flight + 1, least_request). Both are
// weighed up for slow start.
func (p *pool) cost(i int, cfg *config, now int64, byLatency bool) float64 {
	ep := p.eps[i]
	inflight := ep.inflight.Load()
	c := float64(inflight + 1)
	if byLatency {
		lat := ep.latency.value(now, cfg.decay)
		if inflight > 0 && ep.latency.samples.Load() == 0 {
			// Not measured yet and already busy: its estimate is a guess,
			// so count it as slow until the first answer (Finagle's
			// penalty), lest a slow newcomer take every request while its
			// first is in flight.
			lat = max(lat, float64(cfg.failurePenalty))
		}
		c *= lat
	}
	if cfg.slowStart > 0 {
		c /= ep.slowStartFactor(now, cfg.slowStart, cfg.slowStartMin)
	}
	return c
}

// pickLeastCost returns an endpoint of lowest cost, chosen at random among
// those within the tie band of the lowest. It scans the whole pool, or a
// window of MaxScan endpoints at a random place in a larger one; costs are
// kept on the stack between the two passes.
func pickLeastCost(p *pool, cfg *config, r *pickRequest, byLatency bool) *endpoint {
	n := len(p.eps)
	start, count := 0, n
	if n > MaxScan {
		start, count = randN(n), MaxScan
	}
	var costs [MaxScan]float64
	best, bestK := math.Inf(1), -1
	i := start
	for k := 0; k < count; k++ {
		var c float64
		if r.ntried > 0 && r.excluded(p.eps[i]) {
			c = math.Inf(1)
		} else {
			c = p.cost(i, cfg, r.now, byLatency)
			if c < best {
				best, bestK = c, k
			}
		}
		costs[k] = c
		if i++; i == n {
			i = 0
		}
	}
	if bestK < 0 {
		return nil
	}
	limit := best * (1 + cfg.tieBand)
	chosen, seen := bestK, 0
	for k := 0; k < count; k++ {
		if costs[k] <= limit {
			seen++
			// Reservoir sampling: uniform within the band.
			if seen == 1 || randN(seen) == 0 {
				chosen = k
			}
		}
	}
	i = start + chosen
	if i >= n {
		i -= n
	}
	return p.eps[i]
}

// twoChoiceTries bounds the random draws that p2c spends looking for
// endpoints not tried yet before it scans.
const twoChoiceTries = 4

// pickTwoChoices draws two distinct endpoints at random and returns the
// cheaper: the power of two choices.
func pickTwoChoices(p *pool, cfg *config, r *pickRequest, byLatency bool) *endpoint {
	n := len(p.eps)
	if n == 1 {
		if r.excluded(p.eps[0]) {
			return nil
		}
		return p.eps[0]
	}
	for try := 0; try < twoChoiceTries; try++ {
		i := randN(n)
		j := randN(n - 1)
		if j >= i {
			j++
		}
		ei, ej := r.excluded(p.eps[i]), r.excluded(p.eps[j])
		switch {
		case ei && ej:
			continue
		case ei:
			return p.eps[j]
		case ej:
			return p.eps[i]
		}
		if p.cost(j, cfg, r.now, byLatency) < p.cost(i, cfg, r.now, byLatency) {
			return p.eps[j]
		}
		return p.eps[i]
	}
	// Most endpoints were tried already: take the cheapest of the rest.
	return pickLeastCost(p, cfg, r, byLatency)
}
