package client

// pickRoundRobin returns the next endpoint in turn that r has not tried.
func pickRoundRobin(p *pool, r *pickRequest) *endpoint {
	n := uint64(len(p.eps))
	start := p.next.Add(1)
	for k := uint64(0); k < n; k++ {
		ep := p.eps[(start+k)%n]
		if !r.excluded(ep) {
			return ep
		}
	}
	return nil
}
