package probe

import (
	"strconv"
	"time"

	"github.com/smartroute/smartroute/loadreport"
)

// Health is what the prober concluded about an address.
type Health int32

const (
	// Unknown is the health of an address before rise successes or fall
	// failures in a row decided it.
	Unknown Health = iota
	// Healthy follows rise consecutive successful checks.
	Healthy
	// Unhealthy follows fall consecutive failed checks.
	Unhealthy
)

// String returns "unknown", "healthy" or "unhealthy".
func (h Health) String() string {
	switch h {
	case Unknown:
		return "unknown"
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "Health(" + strconv.Itoa(int(h)) + ")"
}

// Status is what the prober knows about one address.
type Status struct {
	// Addr is the probed host:port.
	Addr string
	// Health is the current verdict.
	Health Health
	// RTT is the smoothed round-trip time of successful checks: an
	// exponentially weighted moving average whose weights decay with time
	// (see WithDecay). Zero until a check succeeded.
	RTT time.Duration
	// LastRTT is the round-trip time of the last successful check.
	LastRTT time.Duration
	// LastErr is the error of the last check, nil if it succeeded.
	LastErr error
	// Successes and Failures count the consecutive successful and failed
	// checks up to now; one of them is always zero.
	Successes, Failures int
	// Checks counts every completed check of this address.
	Checks int64
	// LastCheck is when the last check completed.
	LastCheck time.Time
	// Load is the latest load report the address sent with a check's
	// answer (requests in flight, utilization, capacity; see
	// loadreport.Report), with Load.Received the time it arrived. It is
	// zero (Load.IsZero()) until a report arrived, and is kept when later
	// answers carry none or checks fail: its age says how far to trust
	// it. Only checkers that implement LoadChecker fill it.
	Load loadreport.Report
	// LoadErr is the error about the last check's report (malformed, or
	// the ORCA stream failed); nil when it decoded or none was sent.
	LoadErr error
}

// Event is delivered to subscribers after every completed check.
type Event struct {
	Status
	// HealthChanged reports that this check changed Status.Health.
	HealthChanged bool
}
