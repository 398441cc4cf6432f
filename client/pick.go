package client

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
	// explored is set by least_latency when it chose an endpoint to
	// measure it.
	explored bool
	// dry marks a pick that sends nothing (Client.Pick): it neither
	// explores nor claims an unmeasured endpoint.
	dry bool
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
	if r.ntried == 0 && !s.gray {
		// A first attempt without a gray release, as most are: the
		// stable pool is every eligible endpoint (the canary pool is
		// empty), and what pickFrom adds is for retries. The default
		// policy is called from here, not through pickIn: a call fewer.
		if s.policy == policyLeastLatency && len(s.stable.eps) > 0 {
			return pickLeastLatency(s.stable, s.cfg, r)
		}
		return s.pickIn(s.stable, r)
	}
	first, second := s.stable, s.canary
	if c := s.cfg.canary; c != nil && (r.canary || (c.Share > 0 && s.cfg.rand.float64() < c.Share)) {
		first, second = second, first
	}
	if ep := s.pickFrom(first, r); ep != nil {
		return ep
	}
	return s.pickFrom(second, r)
}

func (s *snapshot) pickFrom(p *pool, r *pickRequest) *endpoint {
	var ep *endpoint
	if r.ntried > 0 && p.healthy != nil {
		// A retry in panic mode: a healthy endpoint not yet tried first.
		ep = s.pickIn(p.healthy, r)
	}
	if ep == nil {
		ep = s.pickIn(p, r)
	}
	if ep == nil && r.ntried > 0 && p.spill != nil {
		// Every local endpoint was tried: another zone's, by the same
		// policy, before a repeat.
		ep = s.pickIn(p.spill, r)
	}
	if ep == nil && r.ntried > 0 {
		// Every eligible endpoint was tried already: a repeat beats no
		// answer.
		saved := r.ntried
		r.ntried = 0
		ep = s.pickIn(p, r)
		r.ntried = saved
	}
	return ep
}

// pickIn picks from p by the policy, avoiding what r tried; nil when
// nothing is left.
func (s *snapshot) pickIn(p *pool, r *pickRequest) *endpoint {
	if len(p.eps) == 0 {
		return nil
	}
	switch s.policy {
	case policyLeastLatency:
		return pickLeastLatency(p, s.cfg, r)
	case policyP2C:
		return pickP2C(p, s.cfg, r)
	case policyLeastRequest:
		return pickLeastRequest(p, s.cfg, r)
	case policyRoundRobin:
		return pickRoundRobin(p, r)
	case policyWeightedRoundRobin:
		return pickWeightedRoundRobin(p, r)
	case policyConsistentHash:
		return pickConsistentHash(s, p, r)
	}
	return nil
}
