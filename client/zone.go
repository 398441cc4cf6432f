package client

import "fmt"

// Zone is zone preference: requests stay in the local zone while it is
// healthy, and spill over to every zone when it is not: when fewer than
// MinHealthy of its endpoints are eligible (down, ejected by outlier
// detection for failing under load, or draining). A retry whose local
// endpoints were all tried goes to another zone at once.
//
// Spill-over is decided by health, as Envoy's zone-aware routing does, not
// by latency: a latency-weighted cross-zone penalty was tried and, on
// shared machines, latency noise alone sent a third of the requests out
// of a healthy zone.
type Zone struct {
	// Local is this client's zone; empty turns zone preference off.
	Local string `json:"local,omitempty"`
	// MinHealthy is the share of local endpoints that must be eligible for
	// the zone to count as healthy (default 0.7: with more than 30% of a
	// zone down, its survivors would be overloaded taking all of its
	// traffic).
	MinHealthy float64 `json:"minHealthy,omitempty"`
}

// DefaultZoneMinHealthy is the default Zone.MinHealthy.
const DefaultZoneMinHealthy = 0.7

func (z Zone) withDefaults() Zone {
	if z.MinHealthy == 0 {
		z.MinHealthy = DefaultZoneMinHealthy
	}
	return z
}

func (z Zone) validate() error {
	switch {
	case z.MinHealthy < 0 || z.MinHealthy > 1:
		return fmt.Errorf("client: zone: minHealthy %v must be within [0, 1]", z.MinHealthy)
	}
	return nil
}
