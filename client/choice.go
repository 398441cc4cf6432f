package client

import (
	"fmt"
	"net/http"
	"time"
)

// Choice is the endpoint a pick chose, and why: what Pick returns, and
// what lbprobe prints.
type Choice struct {
	// Addr is the chosen endpoint's address.
	Addr string
	// Policy is the policy that chose it.
	Policy Policy
	// Canary is set when the endpoint came from the canary subset.
	Canary bool
	// Panic is set when too few endpoints were healthy and the pick was
	// made among all of them (Envoy's panic mode).
	Panic bool
	// Eligible is the number of endpoints the pick chose among.
	Eligible int
	// Cost is the chosen endpoint's expected latency for a new request,
	// for the latency policies (least_latency, p2c): its latency estimate
	// with its failure penalty, the queue its reported load implies, and
	// the age of its oldest unanswered request as a floor; 0 for the
	// others.
	Cost time.Duration
	// Explored is set when least_latency chose the endpoint to measure it
	// (a new endpoint, or one not measured for long), not for its cost.
	Explored bool
	// Skipped lists the endpoints the pick chose first and passed over
	// because their overload protection would refuse the request
	// (WithOverload: a breaker, or their limit of requests in flight).
	Skipped []SkippedEndpoint
	// Reason says in words why this endpoint.
	Reason string
}

// Pick returns the endpoint the client's policy would send req to now,
// and why, without sending anything. With WithOverload it passes over the
// endpoints whose breakers or limits would refuse the request (Skipped),
// and the reason says when the service's own breaker is open. The pick is a real one: round-robin
// positions advance as for a request. req may be nil for policies that do
// not look at the request. Pick waits for nothing: before the resolver's
// first answer, or when no endpoint can take req, it fails with an error
// wrapping ErrNoHealthyEndpoint.
func (c *Client) Pick(req *http.Request) (Choice, error) {
	select {
	case <-c.closed:
		return Choice{}, ErrClosed
	default:
	}
	pr := pickRequest{dry: true}
	pr.now = c.table.clock.Now()
	if req != nil {
		if c.cfg.canary != nil {
			pr.canary = c.cfg.canary.isCanaryRequest(req)
		}
		if c.cfg.policy == ConsistentHash {
			if key := c.cfg.hashKey(req); key != "" {
				pr.hash, pr.hasHash = hashKey(key), true
			}
		}
	}
	s := c.table.snapshot()
	ep, skipped := s.pickAllowed(&pr)
	if ep == nil {
		if len(skipped) > 0 {
			last := skipped[len(skipped)-1]
			return Choice{Skipped: skipped}, fmt.Errorf("client: service %q: %w: every endpoint picked would refuse the request (the last, %s: %s)",
				c.name, ErrNoHealthyEndpoint, last.Addr, last.Why)
		}
		return Choice{}, c.noEndpoint()
	}
	ch := c.table.choiceOf(s, ep, pr.explored, pr.now, skipped)
	if why := c.serviceRefusal(); why != "" {
		ch.Reason += "; but " + why
	}
	return ch, nil
}

// choiceOf describes the pick of ep from s: the pool it came from, its
// cost, and the reason in words. Pick and tracing (trace.go) use it.
func (t *table) choiceOf(s *snapshot, ep *endpoint, explored bool, now int64, skipped []SkippedEndpoint) Choice {
	ch := Choice{Addr: ep.addr, Policy: t.cfg.policy, Skipped: skipped}
	p := s.stable
	for _, e := range s.canary.eps {
		if e == ep {
			p, ch.Canary = s.canary, true
			break
		}
	}
	ch.Panic, ch.Eligible, ch.Explored = p.panic, len(p.eps), explored
	for _, q := range []*pool{p, p.spill} {
		if q == nil {
			continue
		}
		for i, e := range q.eps {
			if e == ep && (ch.Policy == LeastLatency || ch.Policy == P2C) {
				cost, _ := q.expected(i, t.cfg, now)
				ch.Cost = time.Duration(cost)
			}
		}
	}
	ch.Reason = ch.reason(t.cfg, ep)
	return ch
}

func (ch Choice) reason(cfg *config, ep *endpoint) string {
	var why string
	switch ch.Policy {
	case LeastLatency:
		if ch.Explored {
			why = fmt.Sprintf("exploration: not measured for long, or never (expected latency %v) among %s",
				ch.Cost.Round(time.Microsecond), endpoints(ch.Eligible))
			break
		}
		why = fmt.Sprintf("better expected latency %v of two candidates drawn towards the fastest among %s (within %.0f%%, fewer in flight wins)",
			ch.Cost.Round(time.Microsecond), endpoints(ch.Eligible), 100*cfg.tieBand)
	case P2C:
		why = fmt.Sprintf("better expected latency %v of two chosen at random among %s", ch.Cost.Round(time.Microsecond), endpoints(ch.Eligible))
	case LeastRequest:
		why = fmt.Sprintf("fewer requests in flight (%d) of two chosen at random among %s", ep.hot.load(), endpoints(ch.Eligible))
	case RoundRobin:
		why = fmt.Sprintf("next in turn among %s", endpoints(ch.Eligible))
	case WeightedRoundRobin:
		why = fmt.Sprintf("next in smooth weighted turn (weight %d) among %s", ep.weight(), endpoints(ch.Eligible))
	case ConsistentHash:
		why = fmt.Sprintf("owner of the request's hash key on the ring of %s", endpoints(ch.Eligible))
	}
	if ch.Canary {
		why += "; canary subset"
	}
	if ch.Panic {
		why += fmt.Sprintf("; panic mode: under %.0f%% of endpoints healthy, picking among all", 100*cfg.panicThreshold)
	}
	for _, sk := range ch.Skipped {
		why += fmt.Sprintf("; passed over %s (%s)", sk.Addr, sk.Why)
	}
	return why
}

// endpoints is "1 endpoint" or "n endpoints".
func endpoints(n int) string {
	if n == 1 {
		return "1 endpoint"
	}
	return fmt.Sprintf("%d endpoints", n)
}
