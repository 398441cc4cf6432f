package client

import (
	"fmt"
	"strings"
)

// Policy names how the client picks an endpoint for each request.
type Policy string

// The policies. Each picks among the endpoints that are eligible: not
// draining, matching the label selector, not ejected, not reported
// unhealthy by the prober (all of them in panic mode), in the local zone
// when it is healthy.
const (
	// LeastLatency sends each request to the endpoint expected to answer
	// first: the better of a leader (within the tie band of the best at
	// the last refresh) and a challenger drawn towards the fastest, by
	// expected latency (latency estimate, failure penalty, reported load,
	// age of the oldest unanswered request); within the tie band, fewer
	// requests in flight wins. The endpoint whose latest answer showed
	// room keeps the client's next request unless another is better by
	// more than the tie band. New and long-unmeasured endpoints are
	// explored one request at a time. The cost of a pick does not grow
	// with the table. The default.
	LeastLatency Policy = "least_latency"
	// P2C picks two distinct endpoints uniformly at random and takes the
	// one with the lower expected latency (power of two choices, as
	// Finagle's P2C balancer), without least_latency's weighting and
	// exploration.
	P2C Policy = "p2c"
	// RoundRobin cycles through the endpoints.
	RoundRobin Policy = "round_robin"
	// WeightedRoundRobin cycles in proportion to the endpoints' weights,
	// interleaved smoothly as nginx does (weights 5,1,1 give a a b a c a a,
	// not a a a a a b c).
	WeightedRoundRobin Policy = "weighted_round_robin"
	// LeastRequest picks two distinct endpoints at random and takes the one
	// with fewer requests in flight (Envoy's and gRPC's least_request).
	LeastRequest Policy = "least_request"
	// ConsistentHash maps a key taken from each request (WithHashKey) onto
	// a hash ring, so that a key keeps going to the same endpoint while it
	// is eligible; adding one endpoint to N moves about 1/N of the keys.
	// Requests without a key are spread at random.
	ConsistentHash Policy = "consistent_hash"
)

// Policies lists every policy, default first.
var policies = []Policy{LeastLatency, P2C, RoundRobin, WeightedRoundRobin, LeastRequest, ConsistentHash}

// Policies returns every policy name, the default first.
func Policies() []Policy { return append([]Policy(nil), policies...) }

// ParsePolicy returns the policy named s, or an error listing the valid
// names.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range policies {
		if string(p) == s {
			return p, nil
		}
	}
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = string(p)
	}
	return "", fmt.Errorf("client: unknown policy %q (want one of %s)", s, strings.Join(names, ", "))
}

// policyKind numbers the policies for the pick path's switch, which
// compares integers where a switch on Policy compares strings.
type policyKind uint8

const (
	policyUnknown policyKind = iota
	policyLeastLatency
	policyP2C
	policyLeastRequest
	policyRoundRobin
	policyWeightedRoundRobin
	policyConsistentHash
)

// kindOf returns p's policyKind (policyUnknown for an unknown policy,
// which validation rejects before any table is built).
func kindOf(p Policy) policyKind {
	switch p {
	case LeastLatency:
		return policyLeastLatency
	case P2C:
		return policyP2C
	case LeastRequest:
		return policyLeastRequest
	case RoundRobin:
		return policyRoundRobin
	case WeightedRoundRobin:
		return policyWeightedRoundRobin
	case ConsistentHash:
		return policyConsistentHash
	}
	return policyUnknown
}
