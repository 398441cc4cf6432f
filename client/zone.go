package client

import "fmt"

// Zone is zone preference: requests stay in the local zone while it is
// healthy, and spill over to the other zones when it is not (fewer than
// MinHealthy of its endpoints eligible) or, for the cost-ranking policies
// (least_latency, p2c, least_request), when it is overloaded: a remote
// endpoint is picked when its cost × CrossZonePenalty is below the best
// local cost.
type Zone struct {
	// Local is this client's zone; empty turns zone preference off.
	Local string `json:"local,omitempty"`
	// MinHealthy is the share of local endpoints that must be eligible for
	// the zone to count as healthy (default 0.7: with more than 30% of a
	// zone down, its survivors would be overloaded taking all of its
	// traffic).
	MinHealthy float64 `json:"minHealthy,omitempty"`
	// CrossZonePenalty multiplies the cost of remote endpoints (default 2:
	// a remote endpoint wins once local ones have about one more request
	// in flight each than it does).
	CrossZonePenalty float64 `json:"crossZonePenalty,omitempty"`
}

// Defaults of Zone.
const (
	DefaultZoneMinHealthy       = 0.7
	DefaultZoneCrossZonePenalty = 2.0
)

func (z Zone) withDefaults() Zone {
	if z.MinHealthy == 0 {
		z.MinHealthy = DefaultZoneMinHealthy
	}
	if z.CrossZonePenalty == 0 {
		z.CrossZonePenalty = DefaultZoneCrossZonePenalty
	}
	return z
}

func (z Zone) validate() error {
	switch {
	case z.MinHealthy < 0 || z.MinHealthy > 1:
		return fmt.Errorf("client: zone: minHealthy %v must be within [0, 1]", z.MinHealthy)
	case z.CrossZonePenalty < 1:
		return fmt.Errorf("client: zone: crossZonePenalty %v must be at least 1", z.CrossZonePenalty)
	}
	return nil
}
